"""Grad mode, recording and training state are per thread; graphs are freed by reference counting
alone (no cycles) once backward is done or the output is dropped."""
import gc
import threading
import weakref

import numpy as np
import pytest

import dualgraph as dg
from dualgraph import autograd


@pytest.fixture
def no_gc():
    """Reference counting only: anything still alive afterwards is held by a reference (or a cycle)."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def run_in_thread(fn):
    out = {}

    def target():
        try:
            out["value"] = fn()
        except BaseException as e:  # surface failures in the main thread
            out["error"] = e

    t = threading.Thread(target=target)
    t.start()
    t.join(timeout=30)
    assert not t.is_alive()
    if "error" in out:
        raise out["error"]
    return out.get("value")


# ---- thread-local modes ---------------------------------------------------------------------------

def test_grad_mode_is_per_thread():
    x = dg.tensor([1.0], requires_grad=True)
    with dg.no_grad():
        assert not dg.is_grad_enabled()
        seen = run_in_thread(lambda: (dg.is_grad_enabled(), (x * 2).requires_grad))
        assert seen == (True, True)
        assert not (x * 2).requires_grad
    # and the other way round: a thread's no_grad does not leak into this one

    def other():
        with dg.no_grad():
            return dg.is_grad_enabled(), (x * 2).requires_grad

    assert run_in_thread(other) == (False, False)
    assert dg.is_grad_enabled() and (x * 2).requires_grad


def test_recording_and_training_are_per_thread():
    with autograd.record(train_mode=True):
        seen = run_in_thread(lambda: (autograd.is_recording(), autograd.is_training()))
        assert seen == (False, False)
        assert autograd.is_recording() and autograd.is_training()
    with autograd.train_mode():
        assert run_in_thread(autograd.is_training) is False


def test_concurrent_scopes_interleave_without_interference():
    """Two threads enter opposite modes at the same time and check them while the other is inside."""
    barrier = threading.Barrier(2, timeout=10)
    results = {}

    def worker(name, grad, train):
        x = dg.tensor([2.0], requires_grad=True)
        mode = dg.enable_grad() if grad else dg.no_grad()
        scope = autograd.train_mode() if train else autograd.predict_mode()
        with mode, scope:
            barrier.wait()              # both are inside their scopes now
            obs = []
            for _ in range(50):
                obs.append((dg.is_grad_enabled(), autograd.is_training(), (x * x).requires_grad))
            barrier.wait()
        results[name] = set(obs)

    threads = [threading.Thread(target=worker, args=("a", True, False)),
               threading.Thread(target=worker, args=("b", False, True))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert results == {"a": {(True, False, True)}, "b": {(False, True, False)}}


def test_tapes_are_per_thread():
    x = dg.tensor([1.0], requires_grad=True)
    inside = threading.Event()
    done = threading.Event()

    def other():
        inside.wait(timeout=10)
        for _ in range(5):
            x.exp()                     # recorded in this thread's graph, not on the main thread's tape
        done.set()

    t = threading.Thread(target=other)
    t.start()
    with autograd.record() as tape:
        inside.set()
        done.wait(timeout=10)
        y = x * 3
    t.join(timeout=10)
    assert [n.name() for n in tape] == ["MulBackward0"] and tape.nodes[0] is y.grad_fn


def test_parallel_backward_on_independent_graphs():
    def train(seed):
        rng = np.random.default_rng(seed)
        xn = rng.standard_normal(5)
        x = dg.tensor(xn, dtype="float64", requires_grad=True)
        for _ in range(30):
            ((x * x).sum() * 0.5).backward()      # grad = x each time: accumulates to 30x
        return xn, x.grad.numpy()

    outs = {}
    threads = [threading.Thread(target=lambda s=s: outs.__setitem__(s, train(s))) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sorted(outs) == [0, 1, 2, 3]
    for xn, g in outs.values():
        np.testing.assert_allclose(g, 30 * xn)


# ---- memory -----------------------------------------------------------------------------------------

def test_dropping_the_output_frees_the_graph(no_gc):
    x = dg.tensor(np.ones(1000), requires_grad=True)
    h = x * 2
    y = (h.exp() * h).sum()
    refs = [weakref.ref(h), weakref.ref(y), weakref.ref(y.grad_fn), weakref.ref(h.grad_fn),
            weakref.ref(h._data)]
    del h, y
    assert [r() for r in refs] == [None] * len(refs)
    assert x.grad is None


def test_backward_frees_saved_tensors(no_gc):
    x = dg.tensor(np.ones(1000), requires_grad=True)
    h = x * 2
    e = h.exp()                                    # ExpBackward0 keeps its output array
    y = (e * h).sum()
    h_ref, e_ref, earr_ref = weakref.ref(h), weakref.ref(e), weakref.ref(e._data)
    del h, e
    assert h_ref() is not None                     # the graph holds h until backward
    y.backward()
    assert h_ref() is None and e_ref() is None and earr_ref() is None
    assert y.grad_fn is not None                   # the structure remains, like PyTorch
    assert x.grad is not None and x.grad.grad_fn is None


def test_retain_graph_keeps_saved_tensors_until_the_last_backward(no_gc):
    x = dg.tensor([1.0, 2.0], requires_grad=True)
    h = x * 2
    y = (h * h).sum()
    h_ref = weakref.ref(h)
    del h
    y.backward(retain_graph=True)
    assert h_ref() is not None
    y.backward()
    assert h_ref() is None
    assert x.grad.tolist() == [16.0, 32.0]


def test_retain_grad_does_not_keep_the_tensor_alive(no_gc):
    x = dg.tensor([1.0], requires_grad=True)
    h = x * 2
    h.retain_grad()
    y = h * 3
    ref = weakref.ref(h)
    del h
    del y
    assert ref() is None


def test_custom_function_saving_its_output_makes_no_cycle(no_gc):
    class Exp(autograd.Function):
        @staticmethod
        def forward(ctx, x):
            r = x.exp()
            ctx.save_for_backward(r)
            return r

        @staticmethod
        def backward(ctx, g):
            (r,) = ctx.saved_tensors
            return g * r

    x = dg.tensor([0.0, 1.0], requires_grad=True)
    y = Exp.apply(x)
    refs = [weakref.ref(y), weakref.ref(y.grad_fn)]
    del y
    assert [r() for r in refs] == [None, None]
    # and its saved tensors are dropped by backward
    y = Exp.apply(x)
    node = y.grad_fn
    data_ref = weakref.ref(y._data)
    y.sum().backward()
    del y
    assert data_ref() is None and node is not None


def test_tape_keeps_nodes_but_backward_still_frees_their_tensors(no_gc):
    x = dg.ones(100)
    x.attach_grad()
    with autograd.record() as tape:
        h = x * 2
        y = (h * h).sum()
    h_ref = weakref.ref(h)
    del h
    y.backward()
    assert h_ref() is None and len(tape) == 3
    del y
    tape_ref = weakref.ref(tape)
    del tape
    assert tape_ref() is None


def test_no_grad_builds_no_graph(no_gc):
    x = dg.tensor([1.0], requires_grad=True)
    with dg.no_grad():
        h = x * 2
        y = h * h
    assert y.grad_fn is None and h.grad_fn is None
    ref = weakref.ref(h)
    del h
    assert ref() is None                           # y does not hold h


def test_create_graph_grad_cycle_is_broken_by_clearing_grad(no_gc):
    # as in PyTorch, backward(create_graph=True) makes x.grad hold a graph that holds x;
    # clearing x.grad (what optimizers' zero_grad(set_to_none=True) does) breaks the cycle
    x = dg.tensor([1.0, 2.0], requires_grad=True)
    (x * x * x).sum().backward(create_graph=True)
    node_ref = weakref.ref(x.grad.grad_fn)
    assert node_ref() is not None
    x.grad = None
    assert node_ref() is None
