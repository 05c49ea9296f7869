"""Errors users see: a dualgraph exception that subclasses the builtin they would catch anyway,
naming the op, both shapes / dtypes / devices, the offending index, and the user's own source line."""
import os

import numpy as np
import pytest

import dualgraph as dg
from dualgraph.backend import Device

THIS_FILE = os.path.basename(__file__)


@pytest.mark.parametrize("cls,builtin", [
    (dg.ShapeError, ValueError), (dg.DTypeError, TypeError), (dg.IndexOutOfRange, IndexError),
    (dg.DeviceError, RuntimeError), (dg.AutogradError, RuntimeError),
])
def test_error_hierarchy(cls, builtin):
    assert issubclass(cls, dg.DualgraphError) and issubclass(cls, builtin)


def raises(cls, fn):
    with pytest.raises(cls) as e:
        fn()
    assert isinstance(e.value, dg.DualgraphError), f"{type(e.value).__name__} is not a dualgraph error"
    return str(e.value)


# ---- shapes ------------------------------------------------------------------------------------------

def test_broadcast_mismatch_names_op_both_shapes_and_user_line():
    msg = raises(dg.ShapeError, lambda: dg.ones(2, 3) + dg.ones(4))
    assert "add" in msg and "[2, 3]" in msg and "[4]" in msg
    assert THIS_FILE in msg                           # points at the user's line, not inside dualgraph
    msg = raises(ValueError, lambda: dg.ones(2, 3) * dg.ones(3, 2))
    assert "mul" in msg and "[2, 3]" in msg and "[3, 2]" in msg


@pytest.mark.parametrize("fn,op,shapes", [
    (lambda: dg.ones(2, 3) @ dg.ones(4, 2), "matmul", ["(2, 3)", "(4, 2)"]),
    (lambda: dg.cat([dg.ones(2, 3), dg.ones(2, 4)]), "concat", ["(2, 3)", "(2, 4)"]),
    (lambda: dg.stack([dg.ones(2, 3), dg.ones(2, 4)]), "stack", ["(2, 3)", "(2, 4)"]),
    (lambda: dg.ones(2, 3).reshape(4), "reshape", ["(2, 3)", "(4,)"]),
    (lambda: dg.ones(2, 3).expand(4, 3), "broadcast_to", ["(2, 3)", "(4, 3)"]),
    (lambda: dg.where(dg.ones(2) > 0, dg.ones(3), dg.ones(2)), "where", ["[2]", "[3]"]),
    (lambda: dg.mse_loss(dg.ones(2, 3), dg.ones(3, 2)), "mse_loss", ["(2, 3)", "(3, 2)"]),
    (lambda: dg.ones(10).split([3, 3]), "split", ["[3, 3]", "10"]),
])
def test_shape_errors_name_op_and_shapes(fn, op, shapes):
    msg = raises(dg.ShapeError, fn)
    assert op in msg
    for s in shapes:
        assert s in msg, (s, msg)


def test_matmul_1d_mismatch_names_the_users_shapes():
    msg = raises(dg.ShapeError, lambda: dg.ones(3) @ dg.ones(4))
    assert "(3,)" in msg and "(4,)" in msg


def test_axis_out_of_range_names_axis_and_rank():
    msg = raises(dg.ShapeError, lambda: dg.ones(2, 3).sum(axis=4))
    assert "sum" in msg and "4" in msg and "2 dims" in msg
    msg = raises(dg.ShapeError, lambda: dg.ones(2, 3).transpose(0, 5))
    assert "transpose" in msg and "5" in msg


def test_setitem_shape_mismatch():
    t = dg.ones(2, 3)
    msg = raises(dg.ShapeError, lambda: t.__setitem__(0, dg.ones(4)))
    assert "(4,)" in msg and "(2, 3)" in msg
    assert t.tolist() == [[1.0] * 3] * 2              # nothing was written


def test_ragged_data_and_many_element_scalars():
    msg = raises(dg.ShapeError, lambda: dg.tensor([[1, 2], [3]]))
    assert "list" in msg
    assert "shape (2,)" in raises(ValueError, lambda: dg.ones(2).item())
    assert "ambiguous" in raises(ValueError, lambda: bool(dg.ones(2)))


# ---- dtypes ------------------------------------------------------------------------------------------

def test_dtype_errors_name_both_dtypes():
    msg = raises(dg.DTypeError, lambda: dg.ones(2) & dg.ones(2))
    assert msg.count("float32") >= 2 and "bitwise_and" in msg
    msg = raises(dg.DTypeError, lambda: dg.tensor([True]) - dg.tensor([True]))
    assert msg.count("bool") >= 2 and "sub" in msg
    msg = raises(TypeError, lambda: dg.ones(2, dtype="float32") + None)
    assert "add" in msg and "None" in msg


def test_unsupported_data_and_dtypes():
    assert "dtype" in raises(dg.DTypeError, lambda: dg.tensor("abc"))
    assert "non-numeric" in raises(dg.DTypeError, lambda: dg.tensor([object()]))
    msg = raises(dg.DTypeError, lambda: dg.tensor([1.0], dtype="complex64"))
    assert "complex64" in msg and "supported" in msg
    msg = raises(dg.DTypeError, lambda: dg.tensor([1, 2]).requires_grad_())
    assert "int64" in msg and "floating" in msg
    msg = raises(dg.DTypeError, lambda: dg.tensor([1, 2]).add_(0.5))
    assert "float64" in msg and "int64" in msg


# ---- devices -----------------------------------------------------------------------------------------

def _on_fake_device(t, name_index=7):
    """The same numpy data presented as living on another device, to test the dispatcher's check on CPU."""
    t._device = Device("gpu", name_index, np)
    return t


@pytest.mark.parametrize("fn", [
    lambda a, b: a + b, lambda a, b: a * b, lambda a, b: a @ b.reshape(3, 1), lambda a, b: dg.where(a > 0, a, b),
    lambda a, b: dg.cat([a, b]),
])
def test_device_mismatch_names_both_devices(fn):
    a = dg.ones(3)
    b = _on_fake_device(dg.ones(3))
    msg = raises(dg.DeviceError, lambda: fn(a, b))
    assert "cpu" in msg and "gpu:7" in msg and ".to(" in msg


def test_unknown_and_unavailable_devices():
    msg = raises(dg.DeviceError, lambda: dg.ones(2, device="tpu"))
    assert "'tpu'" in msg and "cpu" in msg
    if not dg.gpu_available():
        msg = raises(dg.DeviceError, lambda: dg.tensor([1.0]).to("gpu:0"))
        assert "cupy" in msg
    else:
        raises(dg.DeviceError, lambda: dg.ones(2, device="gpu:999"))


@pytest.mark.skipif(not dg.gpu_available(), reason="needs cupy and a GPU")
def test_real_gpu_cpu_mix():
    msg = raises(dg.DeviceError, lambda: dg.ones(2) * dg.ones(2, device="gpu"))
    assert "cpu" in msg and "gpu:0" in msg


# ---- indices -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("index,expect", [
    (5, ["5", "axis 0", "size 3"]),
    (-4, ["-4", "axis 0", "size 3"]),
    ((0, 4), ["4", "axis 1", "size 4"]),
    ([0, 3], ["3", "axis 0", "size 3"]),
])
def test_index_out_of_range_says_which(index, expect):
    t = dg.ones(3, 4)
    msg = raises(dg.IndexOutOfRange, lambda: t[index])
    for e in expect:
        assert e in msg, (e, msg)
    raises(IndexError, lambda: t.__setitem__(index, 0.0))


def test_gather_style_index_errors():
    msg = raises(dg.IndexOutOfRange, lambda: dg.embedding(dg.tensor([5]), dg.ones(3, 2)))
    assert "5" in msg and "size 3" in msg
    msg = raises(dg.IndexOutOfRange, lambda: dg.index_select(dg.ones(3, 2), 0, dg.tensor([5])))
    assert "index_select" in msg and "5" in msg
    msg = raises(IndexError, lambda: dg.ones(3)[dg.tensor([True, False])])
    assert "boolean" in msg
    assert "float32" in raises(IndexError, lambda: dg.ones(3)[dg.tensor([0.5])])


# ---- autograd ----------------------------------------------------------------------------------------

def test_autograd_errors_are_autograd_errors():
    x = dg.tensor([1.0, 2.0], requires_grad=True)
    assert "retain_graph=True" in raises(dg.AutogradError, lambda: _twice((x * x).sum()))
    assert "gradient" in raises(dg.AutogradError, lambda: (x * 2).backward())
    assert "in-place" in raises(dg.AutogradError, lambda: x.add_(1))
    assert "does not require grad" in raises(RuntimeError, lambda: dg.autograd.grad((x * 2).sum(), dg.ones(1)))


def _twice(y):
    y.backward()
    y.backward()


def test_no_bare_numpy_errors_escape_for_common_mistakes():
    mistakes = [
        lambda: dg.ones(2, 3) + dg.ones(3, 2),
        lambda: dg.ones(3) @ dg.ones(4),
        lambda: dg.ones(2, 3).reshape(5),
        lambda: dg.ones(2)[3],
        lambda: dg.ones(2) + "a",
        lambda: dg.tensor([[1], [2, 3]]),
        lambda: dg.ones(2, 3).sum(axis=2),
        lambda: dg.conv2d(dg.ones(1, 3, 8, 8), dg.ones(4, 2, 3, 3)),
        lambda: dg.linear(dg.ones(2, 3), dg.ones(4, 5)),
        lambda: dg.ones(2, 3).permute(0, 0),
        lambda: dg.one_hot(dg.tensor([3]), 2),
    ]
    for m in mistakes:
        with pytest.raises(dg.DualgraphError):
            m()
