"""A small ONNX model zoo: export each model, check it, run it with another batch size, print a table.

    .venv/bin/python -m export.zoo            # table to stdout
    .venv/bin/python -m export.zoo --out DIR  # also keep the .onnx files

Each model is exported at batch 3 with a dynamic batch axis, checked by onnx.checker (full check)
and strict shape inference, then run at batch 5 in onnxruntime and in onnx's reference evaluator
(`onnx.reference.ReferenceEvaluator`, a second, independent client) and compared with dualgraph's
eager outputs at batch 5.
"""
import argparse
import os
import sys
import tempfile

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import dualgraph as dg  # noqa: E402
import dualgraph.nn as nn  # noqa: E402
import dualgraph.nn.functional as F  # noqa: E402

TRACE_BATCH, RUN_BATCH = 3, 5


class MLP(nn.Module):
    def __init__(self, sizes=(784, 256, 256, 10)):
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:])])

    def forward(self, x):
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = dg.relu(x)
        return x


class CNN(nn.Module):
    """conv-BN-relu-pool twice, then a linear head (BatchNorm in eval mode)."""

    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.conv2, self.bn2 = nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16)
        self.head = nn.Linear(16 * 7 * 7, 10)

    def forward(self, x):
        x = F.max_pool2d(dg.relu(self.bn1(self.conv1(x))), 2)
        x = F.max_pool2d(dg.relu(self.bn2(self.conv2(x))), 2)
        return self.head(x.reshape(x.shape[0], -1))


class TransformerBlock(nn.Module):
    """Pre-norm block: LayerNorm, softmax self-attention (written out), LayerNorm, GELU MLP."""

    def __init__(self, d=32, heads=4):
        super().__init__()
        self.d, self.heads = d, heads
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.fc1, self.fc2 = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

    def forward(self, x):
        b, t, d = x.shape
        h = self.heads
        q, k, v = dg.split(self.qkv(self.ln1(x)), d, axis=-1)

        def heads(z):
            return z.reshape(b, t, h, d // h).permute(0, 2, 1, 3)
        q, k, v = heads(q), heads(k), heads(v)
        att = F.softmax(q @ k.transpose(-2, -1) * (1.0 / np.sqrt(d // h)), axis=-1)
        y = (att @ v).permute(0, 2, 1, 3).reshape(b, t, d)
        x = x + self.proj(y)
        return x + self.fc2(dg.gelu(self.fc1(self.ln2(x))))


class LoopModel(nn.Module):
    """A recurrent refinement: a while_loop applies a shared layer until a step budget runs out."""

    def __init__(self, d=16):
        super().__init__()
        self.inp, self.cell, self.out = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, 4)

    def forward(self, x, steps):
        h0 = dg.tanh(self.inp(x))

        def body(state):
            i, h = state
            return i + 1, dg.tanh(self.cell(h) + h)
        _, h = dg.while_loop(lambda s: s[0] < steps, body, (dg.tensor(0), h0))
        return self.out(h)


def _models():
    dg.manual_seed(0)
    rng = np.random.default_rng(0)

    def arr(*shape):
        return rng.standard_normal(shape).astype(np.float32)
    cnn = CNN()
    for bn in (cnn.bn1, cnn.bn2):   # non-trivial running statistics, then eval mode
        bn.running_mean.copy_(dg.tensor(arr(bn.running_mean.shape[0]) * 0.1))
        bn.running_var.copy_(dg.tensor(np.abs(arr(bn.running_var.shape[0])) + 0.5))
    cnn.eval()
    steps = dg.tensor(np.int64(3))
    return [
        ("mlp 784-256-256-10", MLP(), lambda n: (dg.tensor(arr(n, 784)),), ["x"]),
        ("cnn + batchnorm (eval)", cnn, lambda n: (dg.tensor(arr(n, 1, 28, 28)),), ["x"]),
        ("transformer block", TransformerBlock(), lambda n: (dg.tensor(arr(n, 10, 32)),), ["x"]),
        ("loop (while_loop)", LoopModel(), lambda n: (dg.tensor(arr(n, 16)), steps), ["x", "steps"]),
    ]


def _max_err(got, want):
    return max(float(np.max(np.abs(np.asarray(g, np.float64) - np.asarray(w, np.float64)))) if np.size(w) else 0.0
               for g, w in zip(got, want))


def run_zoo(out_dir=None):
    """Export, check and run every model; returns rows of the table."""
    import onnx
    from onnx.reference import ReferenceEvaluator
    rows = []
    tmp = tempfile.mkdtemp(prefix="dg_zoo_") if out_dir is None else out_dir
    os.makedirs(tmp, exist_ok=True)
    for name, model, make, in_names in _models():
        path = os.path.join(tmp, name.split()[0] + ".onnx")
        example = make(TRACE_BATCH)
        dg.onnx.export(model, example, path, input_names=in_names, output_names=["y"],
                       dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}}, verify=True)
        m = onnx.load(path)
        onnx.checker.check_model(m, full_check=True)
        onnx.shape_inference.infer_shapes(m, check_type=True, strict_mode=True)
        args = make(RUN_BATCH)
        feeds = {n: a.numpy() if isinstance(a, dg.Tensor) else np.asarray(a) for n, a in zip(in_names, args)}
        with dg.no_grad():
            want = [model(*args).numpy()]
        got = dg.onnx.session(m).run(None, feeds)
        ref = ReferenceEvaluator(m).run(None, feeds)
        rows.append({"model": name, "nodes": len(m.graph.node), "opset": m.opset_import[0].version,
                     "params": sum(int(np.prod(t.dims)) for t in m.graph.initializer),
                     "ort_err": _max_err(got, want), "ref_err": _max_err(ref, want), "path": path})
    return rows


def format_table(rows):
    lines = [f"| model | nodes | opset | parameters | max abs error, onnxruntime (batch {RUN_BATCH}, traced at "
             f"{TRACE_BATCH}) | max abs error, onnx.reference |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['nodes']} | {r['opset']} | {r['params']} | {r['ort_err']:.2e} | "
                     f"{r['ref_err']:.2e} |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", help="keep the exported models in this folder")
    a = p.parse_args(argv)
    rows = run_zoo(a.out)
    print(format_table(rows))
    bad = [r["model"] for r in rows if r["ort_err"] > 1e-3 or r["ref_err"] > 1e-3]
    if bad:
        print("FAILED:", ", ".join(bad))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
