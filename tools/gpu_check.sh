#!/usr/bin/env bash
# The GPU check on real hardware, one command: bash tools/gpu_check.sh
# Makes a venv (.venv-gpu, seeing the system's packages), installs cupy for this machine's CUDA
# (cupy-cuda12x or cupy-cuda13x, from nvidia-smi's driver CUDA version or nvcc's) and PyTorch with CUDA
# as the peer where they are missing, runs the GPU test subset (tests/gpu) against real cupy, then the
# GPU benchmarks with PyTorch CUDA as the peer. Offline machines: put the wheels in a folder and set
# WHEELS=that/folder (pip then installs from there only). Output also goes to gpu_check.log.
set -euo pipefail
cd "$(dirname "$0")/.."
exec > >(tee gpu_check.log) 2>&1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
cuda=$(nvidia-smi | sed -n 's/.*CUDA Version: \([0-9]*\)\..*/\1/p' | head -1)
[ -n "$cuda" ] || cuda=$(nvcc --version 2>/dev/null | sed -n 's/.*release \([0-9]*\)\..*/\1/p')
[ -n "$cuda" ] || { echo "no CUDA driver found (nvidia-smi/nvcc)"; exit 1; }
cupy_pkg="cupy-cuda${cuda}x"
echo "CUDA ${cuda}: ${cupy_pkg}"
python3 -m venv --system-site-packages .venv-gpu
py=.venv-gpu/bin/python
pip_args=(-q)
[ -n "${WHEELS:-}" ] && pip_args+=(--no-index --find-links "$WHEELS")
$py -m pip install "${pip_args[@]}" -e ".[test]" || $py -m pip install "${pip_args[@]}" --no-deps -e .
$py -c "import cupy" 2>/dev/null || $py -m pip install "${pip_args[@]}" "$cupy_pkg"
$py -c "import torch, sys; sys.exit(not torch.cuda.is_available())" 2>/dev/null \
  || $py -m pip install "${pip_args[@]}" torch || echo "no PyTorch CUDA: benchmarks run without the peer"
$py -c "import cupy; print('cupy', cupy.__version__, cupy.cuda.runtime.getDeviceCount(), 'device(s)')"
unset DUALGRAPH_EMULATE_GPU
status=0
$py -m pytest -q tests/gpu -x -p no:cacheprovider || status=$?
$py tools/gpu_bench.py --rounds=20 || status=$?
$py benchmarks/bench_cnn_step.py --device=gpu --batch=64 --rounds=10 || status=$?
if grep -q -- "--device" benchmarks/bench_gpt_step.py; then
  $py benchmarks/bench_gpt_step.py --device=gpu || status=$?
fi
echo "gpu_check: exit ${status} (log: gpu_check.log)"
exit $status
