"""Threads (issue #7): two threads training two models at once, eagerly and compiled, get exactly what
they get one after the other; grad mode, recording and tracing state never leak across threads.

(tests/test_threads_and_memory.py covers the per-thread modes on single ops.)
"""
import threading

import numpy as np
import pytest

import dualgraph as dg
import dualgraph.nn as nn
from dualgraph import autograd, optim
from dualgraph._state import STATE
from dualgraph.dispatch import EAGER

STEPS = 60


def make_job(seed, compiled, record=False):
    """A model, its optimizer and data, built up front (the global RNG is not used while training)."""
    dg.manual_seed(seed)
    rng = np.random.default_rng(seed)
    x = dg.tensor(rng.standard_normal((24, 6)).astype(np.float32))
    y = dg.tensor(rng.integers(0, 3, 24))
    model = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3))
    opt = optim.Adam(model.parameters(), lr=0.01) if seed % 2 else optim.SGD(model.parameters(), lr=0.1,
                                                                               momentum=0.9)

    def step(xb, yb):
        if record:
            with autograd.record():
                loss = nn.functional.cross_entropy(model(xb), yb)
        else:
            loss = nn.functional.cross_entropy(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss

    if compiled:
        step = dg.function(step)

    def run(barrier=None):
        losses = []
        for i in range(STEPS):
            if barrier is not None and i % 10 == 0:
                barrier.wait()          # keep the two threads interleaved, step for step
            losses.append(float(step(x, y)))
        return np.array(losses), [p.numpy().copy() for p in model.parameters()]
    return run


def run_threads(fns):
    barrier = threading.Barrier(len(fns), timeout=60)
    out, errors = {}, []

    def target(k, fn):
        try:
            out[k] = fn(barrier)
        except BaseException as e:   # pragma: no cover - surfaced below
            errors.append(e)
            barrier.abort()

    threads = [threading.Thread(target=target, args=(k, fn)) for k, fn in enumerate(fns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    if errors:
        raise errors[0]
    return [out[k] for k in range(len(fns))]


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
@pytest.mark.parametrize("record", [False, True], ids=["backward", "record"])
def test_two_models_trained_at_once_match_one_after_the_other(compiled, record):
    if compiled and record:
        pytest.skip("autograd.record inside @dg.function is the same trace as without it")
    sequential = [make_job(s, compiled, record)() for s in (1, 2)]
    concurrent = run_threads([make_job(s, compiled, record) for s in (1, 2)])
    for (l_seq, p_seq), (l_con, p_con) in zip(sequential, concurrent):
        np.testing.assert_array_equal(l_con, l_seq)
        for a, b in zip(p_con, p_seq):
            np.testing.assert_array_equal(a, b)
        assert l_seq[-1] < l_seq[0] * 0.5          # they did train


def test_one_compiled_function_called_from_two_threads():
    """A shared pure compiled function: concurrent calls with different inputs get their own results."""
    @dg.function
    def f(x, w):
        return dg.tanh(x @ w).sum(axis=1) * 2.0

    rng = np.random.default_rng(0)
    w = dg.tensor(rng.standard_normal((5, 3)).astype(np.float32))
    xs = [dg.tensor(rng.standard_normal((4, 5)).astype(np.float32)) for _ in range(2)]
    expected = [np.tanh(x.numpy() @ w.numpy()).sum(axis=1) * 2.0 for x in xs]
    f(xs[0], w)                               # traced once, up front

    def worker(k):
        def run(barrier):
            barrier.wait()
            return [f(xs[k], w).numpy() for _ in range(200)]
        return run
    results = run_threads([worker(0), worker(1)])
    for k in range(2):
        for r in results[k]:
            np.testing.assert_allclose(r, expected[k], rtol=1e-6)
    assert f.trace_count == 1


def test_tracing_in_one_thread_leaves_the_other_eager():
    """Thread A pauses inside a trace; thread B meanwhile runs eager ops, no_grad and record."""
    inside, release = threading.Event(), threading.Event()
    seen = {}

    @dg.function
    def traced(x):
        seen["tracer_in_a"] = STATE.mode is not EAGER
        inside.set()
        release.wait(timeout=30)
        with dg.no_grad():
            pass
        return x * 2.0

    def a():
        seen["a"] = traced(dg.tensor([1.0, 2.0], requires_grad=True))
        seen["a_grad_enabled_after"] = dg.is_grad_enabled()

    def b():
        inside.wait(timeout=30)
        x = dg.tensor([3.0], requires_grad=True)
        seen["tracer_in_b"] = STATE.mode is not EAGER
        y = x * x
        seen["b_concrete"] = y.numpy().tolist()
        seen["b_requires_grad"] = y.requires_grad
        with dg.no_grad(), autograd.record():
            seen["b_recording"] = autograd.is_recording()
        release.set()

    ta, tb = threading.Thread(target=a), threading.Thread(target=b)
    ta.start()
    tb.start()
    ta.join(timeout=60)
    tb.join(timeout=60)
    assert seen["tracer_in_a"] and not seen["tracer_in_b"]
    assert seen["b_concrete"] == [9.0] and seen["b_requires_grad"] and seen["b_recording"]
    assert seen["a"].numpy().tolist() == [2.0, 4.0] and seen["a"].requires_grad
    assert seen["a_grad_enabled_after"]
    assert STATE.mode is EAGER and dg.is_grad_enabled() and not autograd.is_recording()


def test_a_thread_that_dies_inside_a_trace_or_no_grad_leaves_nothing_behind():
    def bad():
        @dg.function
        def f(x):
            with dg.no_grad():
                raise RuntimeError("boom")
        with autograd.record():
            f(dg.ones(2))

    err = []
    t = threading.Thread(target=lambda: err.append(pytest.raises(RuntimeError, bad)))
    t.start()
    t.join(timeout=30)
    assert err
    # this thread: untouched; a new thread: defaults
    assert STATE.mode is EAGER and dg.is_grad_enabled() and not autograd.is_recording()
    out = {}
    t = threading.Thread(target=lambda: out.update(eager=STATE.mode is EAGER, grad=dg.is_grad_enabled(),
                                                   rec=autograd.is_recording()))
    t.start()
    t.join(timeout=30)
    assert out == {"eager": True, "grad": True, "rec": False}


def test_state_restored_in_the_thread_after_a_failed_trace():
    @dg.function
    def f(x):
        with dg.no_grad():
            with autograd.record():
                raise ValueError("inside")

    with pytest.raises(ValueError):
        f(dg.ones(2))
    assert STATE.mode is EAGER and dg.is_grad_enabled() and not autograd.is_recording()
