"""Handwritten digits on N processes: data-parallel training with DistributedDataParallel over MPI.

    pip install "dualgraph[distributed]"                       # mpi4py and MPICH, mpiexec included
    mpiexec -n 2 python examples/distributed_digits.py         # MLP, eager step
    mpiexec -n 4 python examples/distributed_digits.py --model cnn --compiled
    mpiexec -n 2 python examples/distributed_digits.py --quick # a few epochs (what the test suite runs)

Every process loads the same data (scikit-learn's bundled 8x8 digits) and reads its own share of each
epoch through DistributedSampler; DistributedDataParallel copies rank 0's initial weights everywhere
and averages the gradients in backward, so every replica takes the same Adam step. The global batch
is --batch-size; each process takes batch_size / N of it. Rank 0 evaluates and reports.
"""
import argparse
import os
import sys
import time

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # one process per core: each process computes on one thread

import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, HERE)
import dualgraph as dg  # noqa: E402
import dualgraph.distributed as dist  # noqa: E402
from dualgraph import nn  # noqa: E402
from digits import CNN, MLP, evaluate, load_data  # noqa: E402  (the single-process example's model and data)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", choices=["mlp", "cnn"], default="mlp")
    p.add_argument("--epochs", type=int, default=None, help="default: 30 (mlp), 20 (cnn); 4 with --quick")
    p.add_argument("--batch-size", type=int, default=64, help="the global batch, split over the processes")
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--compiled", action="store_true", help="one @dg.function step, all-reduce included")
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    if args.epochs is None:
        args.epochs = 4 if args.quick else (30 if args.model == "mlp" else 20)

    dist.init_process_group(backend="mpi")
    rank, world = dist.get_rank(), dist.get_world_size()
    if args.batch_size % world:
        raise SystemExit(f"--batch-size {args.batch_size} does not split over {world} processes")
    X_train, X_test, y_train, y_test = load_data(args.seed)
    dataset = dg.utils.data.TensorDataset(dg.tensor(X_train), dg.tensor(y_train))
    sampler = dg.utils.data.DistributedSampler(dataset, shuffle=True, seed=args.seed)
    loader = dg.utils.data.DataLoader(dataset, batch_size=args.batch_size // world, sampler=sampler, drop_last=True)

    dg.manual_seed(args.seed + rank)  # differs per rank: DDP copies rank 0's weights, dropout masks differ
    model = MLP() if args.model == "mlp" else CNN()
    ddp = nn.parallel.DistributedDataParallel(model)
    opt = dg.optim.Adam(ddp.parameters(), lr=args.lr)
    sched = dg.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=args.epochs)
    loss_fn = nn.CrossEntropyLoss()

    def train_step(xb, yb):
        logits = ddp(xb)
        loss = loss_fn(logits, yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss
    step = dg.function(train_step) if args.compiled else train_step

    if rank == 0:
        print(f"{world} processes; {type(model).__name__} with {model.num_parameters():,} parameters; global "
              f"batch {args.batch_size} ({args.batch_size // world} per process), {len(loader)} steps per epoch; "
              f"{'compiled' if args.compiled else 'eager'} step")
    start = time.perf_counter()
    for epoch in range(args.epochs):
        sampler.set_epoch(epoch)  # a new shuffle each epoch, the same on every process
        total = dg.zeros(2, dtype=dg.float64)  # (sum of losses, batches) on this process
        for xb, yb in loader:
            loss = step(xb, yb)
            total += dg.tensor([float(loss), 1.0], dtype=dg.float64)
        sched.step()
        dist.all_reduce(total)  # every process's batches: the epoch's mean loss
        if rank == 0:
            mean_loss = float(total[0] / total[1])
            print(f"epoch {epoch + 1:3d}: loss {mean_loss:.4f}, test accuracy {evaluate(model, X_test, y_test):.2%}")
    acc = evaluate(model, X_test, y_test)
    # every replica holds the same weights: check it (one all_reduce of their max and min)
    flat = dg.cat([p.detach().reshape(-1) for p in model.parameters()])
    hi, lo = flat.clone(), flat.clone()
    dist.all_reduce(hi, op=dist.ReduceOp.MAX)
    dist.all_reduce(lo, op=dist.ReduceOp.MIN)
    same = bool((hi == lo).all())
    if rank == 0:
        stats = ddp.comm_stats
        print(f"test accuracy: {acc:.2%} ({args.model}, {world} processes); replicas identical: {same}; "
              f"{time.perf_counter() - start:.1f} s; waited {stats['wait_s']:.2f} s in all at the ends of backward")
    dist.destroy_process_group()
    return acc


if __name__ == "__main__":
    main()
