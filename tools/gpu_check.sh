#!/usr/bin/env bash
# The GPU check on real hardware, one command: bash tools/gpu_check.sh
# Uses python3 (or $PYTHON) where it already has cupy; else makes .venv-gpu (seeing the system's packages)
# and installs cupy for this machine's CUDA (cupy-cuda12x or cupy-cuda13x, from nvidia-smi's driver CUDA
# version or nvcc's), and PyTorch with CUDA as the peer where missing. Offline: WHEELS=folder installs
# from a folder of wheels only. dualgraph runs from this checkout (PYTHONPATH), so nothing is built.
# Then: the GPU test subset (tests/gpu) against real cupy, and the GPU benchmarks with PyTorch CUDA as the
# peer. Output also goes to gpu_check.log.
set -uo pipefail
cd "$(dirname "$0")/.."
exec > >(tee gpu_check.log) 2>&1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || { echo "no nvidia-smi"; exit 1; }
cuda=$(nvidia-smi | sed -n 's/.*CUDA Version: \([0-9]*\)\..*/\1/p' | head -1)
[ -n "$cuda" ] || cuda=$(nvcc --version 2>/dev/null | sed -n 's/.*release \([0-9]*\)\..*/\1/p')
py=${PYTHON:-python3}
pip_args=(-q)
[ -n "${WHEELS:-}" ] && pip_args+=(--no-index --find-links "$WHEELS")
if ! $py -c "import cupy" 2>/dev/null; then
  [ -n "$cuda" ] || { echo "no CUDA driver found (nvidia-smi/nvcc)"; exit 1; }
  python3 -m venv --system-site-packages .venv-gpu && py=.venv-gpu/bin/python
  echo "installing cupy-cuda${cuda}x"
  $py -m pip install "${pip_args[@]}" "cupy-cuda${cuda}x" || { echo "cupy could not be installed"; exit 1; }
fi
if ! $py -c "import torch, sys; sys.exit(not torch.cuda.is_available())" 2>/dev/null; then
  $py -m pip install "${pip_args[@]}" torch || echo "no PyTorch with CUDA: the benchmarks run without their peer"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
unset DUALGRAPH_EMULATE_GPU
$py -c "import cupy, dualgraph as dg; print('cupy', cupy.__version__, '| GPUs:', dg.cuda.device_count(), '|', dg.cuda.get_device_name())" \
  || { echo "dualgraph does not see the GPU"; exit 1; }
status=0
$py -m pytest -q -p no:cacheprovider tests/gpu || status=1
$py tools/gpu_bench.py --rounds=20 || status=1
$py benchmarks/bench_cnn_step.py --device=gpu --batch=64 --rounds=10 || status=1
$py benchmarks/bench_gpt_step.py --device=gpu --rounds=20 || status=1
$py benchmarks/bench_lstm.py --device=gpu --rounds=10 || status=1
echo "gpu_check: exit ${status} (log: gpu_check.log)"
exit $status
