"""MXNet-style autograd: record/pause scopes, attach_grad with grad_req, training state, the Tape.

References are hand-derived derivatives.
"""
import numpy as np
import pytest

import dualgraph as dg
from dualgraph import autograd


def test_mxnet_seed_example():
    a = dg.ones((2, 1))
    b = dg.ones((2, 1))
    a.attach_grad()
    b.attach_grad()
    with autograd.record():
        c = 2 * a + b
    c.backward()                      # non-scalar head inside record(): MXNet's head gradient of ones
    assert a.grad.tolist() == [[2.0], [2.0]]
    assert b.grad.tolist() == [[1.0], [1.0]]
    assert c.shape == (2, 1) and c.tolist() == [[3.0], [3.0]]


def test_mxnet_docs_example_2x_squared():
    x = dg.tensor([[1.0, 2.0], [3.0, 4.0]])
    x.attach_grad()
    with autograd.record():
        y = 2 * x * x
    y.backward()
    assert x.grad.tolist() == [[4.0, 8.0], [12.0, 16.0]]     # dy/dx = 4x


def test_head_gradient_can_be_given():
    x = dg.tensor([1.0, 2.0])
    x.attach_grad()
    with autograd.record():
        y = x * x
    y.backward(dg.tensor([10.0, 1.0]))
    assert x.grad.tolist() == [20.0, 4.0]
    autograd.backward([x * 3], [dg.tensor([1.0, 2.0])])      # heads and head grads, MXNet's signature
    assert x.grad.tolist() == [3.0, 6.0]                     # grad_req='write' overwrote


def test_attach_grad_allocates_zeros_and_makes_a_leaf():
    x = dg.tensor([1.0, 2.0], requires_grad=True)
    h = x * 3
    assert h.grad_fn is not None
    h.attach_grad()                   # a new leaf: its history is cut
    assert h.is_leaf and h.requires_grad and h.grad_fn is None
    assert h.grad.tolist() == [0.0, 0.0] and h.grad.dtype == h.dtype
    with autograd.record():
        z = (h * h).sum()
    z.backward()
    assert h.grad.tolist() == [6.0, 12.0] and x.grad is None
    with pytest.raises(ValueError, match="grad_req"):
        h.attach_grad("sometimes")


def test_grad_req_write_overwrites_each_backward():
    x = dg.tensor([1.0, 2.0])
    x.attach_grad()                   # default grad_req="write"
    for scale in (1.0, 3.0):
        with autograd.record():
            y = (x * x * scale).sum()
        y.backward()
        assert x.grad.tolist() == [2.0 * scale, 4.0 * scale]


def test_grad_req_write_still_sums_within_one_backward():
    x = dg.tensor(3.0)
    x.attach_grad("write")
    with autograd.record():
        y = x * x + x * 2            # two paths into x in one backward
    y.backward()
    assert x.grad.item() == 8.0


def test_grad_req_add_accumulates():
    x = dg.tensor([1.0, 2.0])
    x.attach_grad(grad_req="add")
    for _ in range(3):
        with autograd.record():
            y = (x * x).sum()
        y.backward()
    assert x.grad.tolist() == [6.0, 12.0]
    x.grad[:] = 0                     # MXNet idiom to reset an 'add' buffer
    with autograd.record():
        y = (x * 5).sum()
    y.backward()
    assert x.grad.tolist() == [5.0, 5.0]


def test_grad_req_null_gets_no_gradient():
    w = dg.tensor([1.0, 2.0])
    x = dg.tensor([3.0, 4.0])
    w.attach_grad()
    x.attach_grad("null")
    assert x.grad is None and not x.requires_grad
    with autograd.record():
        y = (w * x).sum()
    y.backward()
    assert w.grad.tolist() == [3.0, 4.0] and x.grad is None


def test_record_pause_and_state_flags():
    assert not autograd.is_recording() and not autograd.is_training()
    x = dg.tensor([1.0])
    x.attach_grad()
    with autograd.record() as tape:
        assert autograd.is_recording() and autograd.is_training()   # train_mode=True by default
        y = x * 2
        with autograd.pause():
            assert not autograd.is_recording() and not autograd.is_training()
            z = y * 3                  # not recorded
        with autograd.pause(train_mode=True):
            assert autograd.is_training() and not autograd.is_recording()
        assert autograd.is_recording() and autograd.is_training()
    assert not autograd.is_recording() and not autograd.is_training()
    assert y.requires_grad and not z.requires_grad and z.grad_fn is None
    assert [n.name() for n in tape] == ["MulBackward0"]
    with autograd.record(train_mode=False):
        assert autograd.is_recording() and not autograd.is_training()


def test_train_mode_and_predict_mode_scopes():
    with autograd.train_mode():
        assert autograd.is_training() and not autograd.is_recording()
        with autograd.predict_mode():
            assert not autograd.is_training()
        assert autograd.is_training()
    assert not autograd.is_training()
    with autograd.record(train_mode=False):
        with autograd.train_mode():
            assert autograd.is_training() and autograd.is_recording()
    prev = autograd.set_training(True)
    try:
        assert prev is False and autograd.is_training()
    finally:
        autograd.set_training(prev)
    assert not autograd.is_training()


def test_scopes_restore_state_after_exceptions():
    with pytest.raises(KeyError):
        with autograd.record():
            with autograd.pause():
                raise KeyError("boom")
    assert not autograd.is_recording() and not autograd.is_training() and dg.is_grad_enabled()


def test_dropout_follows_training_state():
    x = dg.ones(1000)
    dg.manual_seed(0)
    with autograd.record(train_mode=True):
        d = dg.dropout(x, p=0.5)
    kept = d.numpy()
    assert set(np.unique(kept).tolist()) == {0.0, 2.0}          # survivors scaled by 1/(1-p)
    assert 400 < (kept == 0).sum() < 600
    with autograd.record(train_mode=False):
        assert dg.dropout(x, p=0.5).tolist() == x.tolist()
    with autograd.predict_mode():
        assert dg.dropout(x, p=0.5).tolist() == x.tolist()
    assert dg.dropout(x, p=0.5).tolist() == x.tolist()          # outside any scope: not training


def test_tape_lists_nodes_in_order_and_prints():
    a = dg.ones((2, 3))
    w = dg.ones((3, 1))
    a.attach_grad()
    w.attach_grad()
    with autograd.record() as tape:
        h = a @ w
        r = h.relu()
        loss = (r * r).sum()
    names = [n.name() for n in tape.nodes]
    assert names == ["MatmulBackward0", "ReluBackward0", "MulBackward0", "SumBackward0"]
    assert len(tape) == 4 and list(tape) == tape.nodes
    assert tape.nodes[-1] is loss.grad_fn and tape.nodes[0] is h.grad_fn
    text = repr(tape)
    assert text.splitlines()[0] == "Tape(4 nodes)"
    assert "0: MatmulBackward0(float32[2, 3], float32[3, 1])" in text
    assert "3: SumBackward0(float32[2, 1])" in text
    loss.backward()
    assert repr(tape) == text                      # still printable after backward frees the nodes
    assert w.grad.tolist() == [[12.0], [12.0], [12.0]]   # d/dw sum((a@w)^2) = a^T 2(a@w) = 2*2*3
    dot = tape.to_dot()
    assert dot.startswith("digraph") and "MatmulBackward0" in dot and "SumBackward0" in dot


def test_nested_record_scopes_share_nodes_with_the_outer_tape():
    x = dg.tensor(2.0)
    x.attach_grad()
    with autograd.record() as outer:
        y = x * 3
        with autograd.record() as inner:
            z = y + 1
        w = z.exp()
    assert [n.name() for n in outer] == ["MulBackward0", "AddBackward0", "ExpBackward0"]
    assert [n.name() for n in inner] == ["AddBackward0"]
    w.backward()
    assert x.grad.item() == pytest.approx(3 * np.exp(7.0), rel=1e-6)


def test_backward_twice_needs_retain_graph():
    x = dg.tensor([1.0, 2.0])
    x.attach_grad("add")
    with autograd.record():
        y = (x * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    assert x.grad.tolist() == [4.0, 8.0]
    with pytest.raises(dg.AutogradError, match="retain_graph=True"):
        y.backward()


def test_output_without_attached_inputs_is_a_clear_error():
    with autograd.record():
        a = dg.ones((2, 1))
        b = dg.ones((2, 1))
        c = 2 * a + b
    with pytest.raises(dg.AutogradError, match="attach_grad"):
        c.backward()


def test_training_loop_with_attach_grad_converges():
    # a tiny linear regression, MXNet style: record the forward, backward, update under pause()
    rng = np.random.default_rng(0)
    X = dg.tensor(rng.standard_normal((64, 2)))
    true_w = np.array([[2.0], [-3.0]], dtype=np.float32)
    Y = X @ dg.tensor(true_w) + 0.5
    w, b = dg.zeros((2, 1)), dg.zeros(1)
    w.attach_grad()
    b.attach_grad()
    for _ in range(150):
        with autograd.record():
            loss = ((X @ w + b - Y) ** 2).mean()
        loss.backward()
        with autograd.pause():
            w -= 0.1 * w.grad
            b -= 0.1 * b.grad
    np.testing.assert_allclose(w.numpy(), true_w, atol=1e-3)
    np.testing.assert_allclose(b.numpy(), [0.5], atol=1e-3)


def test_backward_with_inputs_respects_grad_req():
    a, b = dg.tensor([1.0]), dg.tensor([2.0])
    a.attach_grad("write")
    b.attach_grad("add")
    for _ in range(2):
        with autograd.record():
            y = (a * b).sum()
        y.backward(inputs=[a, b])
    assert a.grad.tolist() == [2.0] and b.grad.tolist() == [2.0]


def test_custom_function_under_record():
    class Cube(autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x * x * x

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return 3 * g * x * x

    x = dg.tensor([1.0, 2.0])
    x.attach_grad()
    with autograd.record() as tape:
        y = Cube.apply(x) + 1
    y.backward()                                  # non-scalar head under record: ones
    assert x.grad.tolist() == [3.0, 12.0]
    assert [n.name() for n in tape] == ["CubeBackward", "AddBackward0"]
    assert "CubeBackward" in tape.to_dot()


@pytest.mark.parametrize("compiled", [False, True])
def test_d2l_sgd_loop_updates_attached_parameters_in_place_outside_record(compiled):
    # the MXNet tutorials' loop: record, backward (grad_req='write' overwrites), then
    # `param[:] = param - lr * param.grad` outside record(), with no zero_grad anywhere
    rng = np.random.default_rng(0)
    X = rng.standard_normal((16, 3)).astype(np.float32)
    Y = X @ np.array([[1.0], [-2.0], [0.5]], np.float32) + 0.25
    w, b = dg.zeros((3, 1)), dg.zeros((1,))
    w.attach_grad()
    b.attach_grad()

    def step(x, y):
        with dg.autograd.record():
            loss = ((dg.matmul(x, w) + b - y) ** 2).mean()
        loss.backward()
        for p in (w, b):
            p[:] = p - 0.1 * p.grad
        return loss

    step = dg.function(step) if compiled else step
    w_ref, b_ref = np.zeros((3, 1)), np.zeros(1)
    for _ in range(5):
        step(dg.tensor(X), dg.tensor(Y))
        err = X @ w_ref + b_ref - Y   # the same steps by hand, in float64
        w_ref, b_ref = w_ref - 0.1 * 2 * X.T @ err / err.size, b_ref - 0.1 * 2 * err.mean(axis=0)
    np.testing.assert_allclose(w.numpy(), w_ref, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(b.numpy(), b_ref, rtol=1e-4, atol=1e-6)


def test_in_place_update_of_a_pytorch_style_leaf_still_raises():
    w = dg.zeros(3, requires_grad=True)
    with pytest.raises(dg.AutogradError, match="leaf tensor that requires grad"):
        w[:] = w - 1.0
    a = dg.zeros(3)
    a.attach_grad()
    with dg.autograd.record():
        with pytest.raises(dg.AutogradError, match="leaf tensor that requires grad"):
            a[:] = a - 1.0   # inside record() the write would be recorded: MXNet refuses it too
