"""Handwritten digits, end to end: train eagerly, train again as one compiled step, export to ONNX.

    python examples/digits.py               # MLP: ~97-98% test accuracy in a few seconds
    python examples/digits.py --model cnn   # a small CNN
    python examples/digits.py --quick       # a few epochs (what the test suite runs)

Uses scikit-learn's bundled 8x8 digits (1797 images, no download). Writes a loss/accuracy plot
(examples/digits_training.png by default) and the exported model (digits_<model>.onnx).
"""
import argparse
import os
import sys
import time

# The matrices here are tiny (64 x 256): one BLAS thread is faster than a pool, and on a busy machine
# a spinning pool is several times slower. Set before numpy loads; your own setting wins.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import dualgraph as dg  # noqa: E402
from dualgraph import nn  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def load_data(seed):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=seed, stratify=y)
    mean, std = X_train.mean(axis=0), X_train.std(axis=0)  # statistics of the training set only
    std[std == 0] = 1.0  # pixels that are always blank in training (as sklearn's StandardScaler does)
    scale = lambda a: ((a - mean) / std).astype(np.float32)  # noqa: E731
    return scale(X_train), scale(X_test), y_train.astype(np.int64), y_test.astype(np.int64)


class MLP(nn.Module):
    def __init__(self, hidden=256):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Dropout(0.2), nn.Linear(hidden, 10))

    def forward(self, x):
        return self.net(x)


class CNN(nn.Module):
    """Two 3x3 conv blocks on the 1x8x8 image, then a linear classifier."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),   # 16x4x4
            nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),  # 32x2x2
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Dropout(0.2), nn.Linear(32 * 2 * 2, 10))

    def forward(self, x):
        return self.classifier(self.features(x.reshape(-1, 1, 8, 8)))


def build(args):
    dg.manual_seed(args.seed)  # same seed, same initial weights for the eager and the compiled run
    model = MLP() if args.model == "mlp" else CNN()
    opt = dg.optim.Adam(model.parameters(), lr=args.lr)
    sched = dg.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=args.epochs)
    return model, opt, sched


def evaluate(model, X, y):
    model.eval()
    with dg.no_grad():
        logits = model(dg.tensor(X))
    model.train()
    return float((logits.argmax(1).numpy() == y).mean())


def train(name, step, model, sched, loader, X_test, y_test, epochs):
    """Run `step(xb, yb) -> (loss, n_correct)` over the loader; returns the history and seconds per epoch."""
    from tqdm import tqdm
    history = {"loss": [], "train_acc": [], "test_acc": []}
    epoch_times = []
    bar = tqdm(total=epochs * len(loader), desc=f"{name:>8}", unit="step", leave=True, mininterval=0.2,
               dynamic_ncols=True)
    for epoch in range(epochs):
        t0, total_loss, correct, seen = time.perf_counter(), 0.0, 0, 0
        for xb, yb in loader:
            loss, n_correct = step(xb, yb)
            total_loss += float(loss) * len(yb)
            correct += int(n_correct)
            seen += len(yb)
            bar.update(1)
            bar.set_postfix(epoch=epoch + 1, loss=f"{total_loss / seen:.4f}", acc=f"{correct / seen:.3f}",
                            refresh=False)
        epoch_times.append(time.perf_counter() - t0)
        sched.step()
        history["loss"].append(total_loss / seen)
        history["train_acc"].append(correct / seen)
        history["test_acc"].append(evaluate(model, X_test, y_test))
    bar.close()
    return history, epoch_times


def make_step(model, opt):
    loss_fn = nn.CrossEntropyLoss()

    def train_step(xb, yb):
        logits = model(xb)
        loss = loss_fn(logits, yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss, (logits.argmax(1) == yb).sum()
    return train_step


def steady(times):
    """Seconds per epoch, leaving out the first (warm-up, and tracing for the compiled step)."""
    return float(np.median(times[1:])) if len(times) > 1 else times[0]


def plot(histories, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    for k, (name, h) in enumerate(histories.items()):
        epochs = range(1, len(h["loss"]) + 1)
        style = dict(lw=2.5, alpha=0.6) if k == 0 else dict(lw=1, linestyle=":")  # the runs may coincide
        ax_loss.plot(epochs, h["loss"], label=f"{name}", **style)
        ax_acc.plot(epochs, h["train_acc"], label=f"{name} train", **style)
        ax_acc.plot(epochs, h["test_acc"], label=f"{name} test", **style)
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy", title="Training loss", yscale="log")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="Accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def export_onnx(model, X_test, path):
    try:
        import dualgraph.onnx  # noqa: F401  (a subpackage: import it if this build has it)
    except ImportError:
        pass
    if not (hasattr(dg, "onnx") and hasattr(dg.onnx, "export")):
        print("onnx: skipped (dg.onnx.export is not available in this build)")
        return
    import onnxruntime as ort
    model.eval()
    # a batch axis of any size; verify=True checks the model with onnx.checker and onnxruntime
    dg.onnx.export(model, (dg.tensor(X_test[:8]),), path, input_names=["images"], output_names=["logits"],
                   dynamic_axes={"images": {0: "batch"}}, verify=True)
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    onnx_logits = sess.run(None, {"images": X_test})[0]
    with dg.no_grad():
        eager_logits = model(dg.tensor(X_test)).numpy()
    agree = float((onnx_logits.argmax(1) == eager_logits.argmax(1)).mean())
    print(f"onnx: exported to {os.path.relpath(path)}; onnxruntime agrees with eager on {agree:.1%} of the "
          f"{len(X_test)} test predictions (max |logit difference| {np.abs(onnx_logits - eager_logits).max():.1e})")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", choices=["mlp", "cnn"], default="mlp")
    p.add_argument("--epochs", type=int, default=None, help="default: 30 (mlp), 20 (cnn); 4 with --quick")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="a few epochs, for smoke tests")
    p.add_argument("--out", default=HERE, help="directory for the plot and the ONNX file")
    args = p.parse_args(argv)
    if args.epochs is None:
        args.epochs = 4 if args.quick else (30 if args.model == "mlp" else 20)
    os.makedirs(args.out, exist_ok=True)
    start = time.perf_counter()

    X_train, X_test, y_train, y_test = load_data(args.seed)
    print(f"digits: {len(X_train)} training and {len(X_test)} test images of 8x8 pixels; model: {args.model}")
    # drop_last: every batch has the same shape, so the compiled step is traced once
    loader = dg.data.DataLoader((X_train, y_train), batch_size=args.batch_size, shuffle=True,
                                generator=args.seed, drop_last=True)

    model, opt, sched = build(args)
    print(f"{type(model).__name__} with {model.num_parameters():,} parameters")
    histories = {}
    histories["eager"], eager_times = train("eager", make_step(model, opt), model, sched, loader, X_test, y_test,
                                            args.epochs)
    acc = histories["eager"]["test_acc"][-1]
    print(f"eager: test accuracy {acc:.2%} after {args.epochs} epochs ({steady(eager_times):.3f} s/epoch)")

    if hasattr(dg, "function"):
        c_model, c_opt, c_sched = build(args)
        c_loader = dg.data.DataLoader((X_train, y_train), batch_size=args.batch_size, shuffle=True,
                                      generator=args.seed, drop_last=True)
        step = dg.function(make_step(c_model, c_opt))
        histories["compiled"], c_times = train("compiled", step, c_model, c_sched, c_loader, X_test, y_test,
                                               args.epochs)
        c_acc = histories["compiled"]["test_acc"][-1]
        print(f"compiled: test accuracy {c_acc:.2%}; one compiled training step (forward, backward, Adam "
              f"update) runs {steady(eager_times) / steady(c_times):.2f}x the speed of the eager one "
              f"({steady(c_times):.3f} vs {steady(eager_times):.3f} s/epoch; the first epoch, with tracing, "
              f"took {c_times[0]:.2f} s)")
    else:
        print("compiled: skipped (dg.function is not available in this build)")

    png = os.path.join(args.out, "digits_training.png")
    plot(histories, png)
    print(f"plot: {os.path.relpath(png)}")
    export_onnx(model, X_test, os.path.join(args.out, f"digits_{args.model}.onnx"))
    print(f"test accuracy: {acc:.2%} ({args.model}); total time {time.perf_counter() - start:.1f} s")
    return acc


if __name__ == "__main__":
    main()
