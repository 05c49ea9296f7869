"""dg.autograd.detect_anomaly names the forward op and the user's line behind a NaN/inf gradient."""
import sys

import pytest

import dualgraph as dg


def test_nan_gradient_names_forward_op_and_user_line():
    x = dg.tensor([0.0, 1.0], requires_grad=True)
    with dg.autograd.detect_anomaly():
        y = dg.sqrt(x); line = sys._getframe().f_lineno  # noqa: E702  (d sqrt(x)/dx at 0 is inf)
        loss = (y * 0 + y).sum()
        with pytest.raises(dg.AutogradError) as err:
            loss.backward()
    msg = str(err.value)
    assert "SqrtBackward0" in msg and "'sqrt'" in msg and "inf" in msg
    assert f"test_anomaly.py:{line}" in msg


def test_without_anomaly_mode_the_inf_gradient_flows_silently_like_pytorch():
    x = dg.tensor([0.0, 1.0], requires_grad=True)
    dg.sqrt(x).sum().backward()
    assert x.grad.numpy()[0] == float("inf")


def test_anomaly_mode_is_a_decorator_and_restores_state():
    @dg.autograd.detect_anomaly()
    def f():
        return dg.autograd.is_anomaly_enabled()

    assert f() is True
    assert dg.autograd.is_anomaly_enabled() is False


def test_finite_gradients_pass_under_anomaly_mode():
    x = dg.tensor([1.0, 2.0], requires_grad=True)
    with dg.autograd.detect_anomaly():
        (x * x).sum().backward()
    assert x.grad.tolist() == [2.0, 4.0]
