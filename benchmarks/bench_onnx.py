"""Exported MLP (784-256-256-10) in onnxruntime against dualgraph's compiled function (issue 5).

Inference only (no grad), batch 1 and 128, float32, CPU; numpy (three matmuls, the floor for any
framework on top of it) and PyTorch eager (when installed) as references. Best time per call over
interleaved rounds, in one process; ratios are against onnxruntime. Run:

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python benchmarks/bench_onnx.py
"""
import os
import platform
import sys
import timeit

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import dualgraph as dg  # noqa: E402
from export.zoo import MLP  # noqa: E402

try:
    import torch
except ImportError:
    torch = None


def best_us_interleaved(fns, number, rounds=9):
    """Best time per call (us) of each fn, measuring them in turn in every round: on a shared machine
    a burst of load then hits every runner alike instead of whichever happened to run then."""
    best = {name: float("inf") for name in fns}
    for fn in fns.values():
        fn()
    for _ in range(rounds):
        for name, fn in fns.items():
            best[name] = min(best[name], timeit.timeit(fn, number=number) / number * 1e6)
    return best


def main():
    import onnxruntime as ort
    dg.manual_seed(0)
    model = MLP()
    model.eval()
    rng = np.random.default_rng(0)
    onx = dg.onnx.export(model, (dg.tensor(rng.standard_normal((2, 784)).astype(np.float32)),), None,
                         input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "batch"}}, verify=True)
    sess = ort.InferenceSession(onx.SerializeToString(), providers=["CPUExecutionProvider"])
    one = ort.SessionOptions()
    one.intra_op_num_threads = 1
    sess1 = ort.InferenceSession(onx.SerializeToString(), one, providers=["CPUExecutionProvider"])
    compiled = dg.function(model)
    weights = [(layer.weight.numpy().T.copy(), layer.bias.numpy()) for layer in model.layers]

    def np_mlp(x):
        for i, (w, b) in enumerate(weights):
            x = x @ w + b
            if i < len(weights) - 1:
                np.maximum(x, 0, out=x)
        return x

    if torch is not None:
        tmodel = torch.nn.Sequential(torch.nn.Linear(784, 256), torch.nn.ReLU(), torch.nn.Linear(256, 256),
                                     torch.nn.ReLU(), torch.nn.Linear(256, 10))
        with torch.no_grad():
            for tl, layer in zip([tmodel[0], tmodel[2], tmodel[4]], model.layers):
                tl.weight.copy_(torch.from_numpy(layer.weight.numpy()))
                tl.bias.copy_(torch.from_numpy(layer.bias.numpy()))

    print(f"# MLP 784-256-256-10 inference, float32, CPU ({platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores), onnxruntime {ort.__version__}, opset {onx.opset_import[0].version}")
    print("| batch | runner | us / call | x onnxruntime |")
    print("| ---: | --- | ---: | ---: |")
    for batch in (1, 128):
        x = rng.standard_normal((batch, 784)).astype(np.float32)
        xt = dg.tensor(x)
        with dg.no_grad():
            want = model(xt).numpy()
            np.testing.assert_allclose(compiled(xt).numpy(), want, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(sess.run(None, {"x": x})[0], want, rtol=1e-4, atol=1e-5)
        number = 300 if batch == 1 else 30

        def run_compiled():
            with dg.no_grad():
                return compiled(xt)

        def run_eager():
            with dg.no_grad():
                return model(xt)
        fns = {"onnxruntime (exported)": lambda: sess.run(None, {"x": x}),
               "onnxruntime, 1 thread": lambda: sess1.run(None, {"x": x}),
               "dualgraph @dg.function": run_compiled,
               "dualgraph eager": run_eager,
               "numpy (3 matmuls)": lambda: np_mlp(x)}
        if torch is not None:
            tx = torch.from_numpy(x)

            def run_torch():
                with torch.no_grad():
                    return tmodel(tx)
            fns["torch eager"] = run_torch
        rows = best_us_interleaved(fns, number)
        base = rows["onnxruntime (exported)"]
        for name, us in rows.items():
            print(f"| {batch} | {name} | {us:.1f} | {us / base:.2f} |")


if __name__ == "__main__":
    main()
