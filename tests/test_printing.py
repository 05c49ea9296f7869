"""Tensors print like PyTorch's: layout, precision, scientific notation, summarisation, suffixes, options.

Hand-written expectations (from PyTorch's documented print rules) run everywhere; with torch installed the
repr of many tensors is compared with torch's, character for character, after naming the module."""
import numpy as np
import pytest

import dualgraph as dg


@pytest.fixture(autouse=True)
def _default_options():
    dg.set_printoptions(profile="default")
    yield
    dg.set_printoptions(profile="default")


def test_reprs_by_hand():
    assert repr(dg.tensor([1 / 3, 1.0], requires_grad=True)) == "tensor([0.3333, 1.0000], requires_grad=True)"
    assert repr(dg.tensor([1, 2, 3])) == "tensor([1, 2, 3])"
    assert repr(dg.tensor(3.0)) == "tensor(3.)"
    assert repr(dg.tensor(3)) == "tensor(3)"
    assert repr(dg.tensor([1.0, 2.0], dtype=dg.float64)) == "tensor([1., 2.], dtype=dualgraph.float64)"
    assert repr(dg.tensor([1, 2], dtype=dg.int32)) == "tensor([1, 2], dtype=dualgraph.int32)"
    assert repr(dg.tensor([True, False])) == "tensor([ True, False])"
    assert repr(dg.tensor([1e-5, 1.0])) == "tensor([1.0000e-05, 1.0000e+00])"
    assert repr(dg.tensor([1.0, 1e9])) == "tensor([1.0000e+00, 1.0000e+09])"
    assert repr(dg.tensor([-1.5, 10.25])) == "tensor([-1.5000, 10.2500])"
    assert repr(dg.tensor([1.0, float("nan"), float("inf")])) == "tensor([1., nan, inf])"
    assert repr(dg.zeros(0)) == "tensor([])"
    assert repr(dg.zeros(0, 3)) == "tensor([], size=(0, 3))"
    assert repr(dg.zeros(0, dtype=dg.int64)) == "tensor([], dtype=dualgraph.int64)"
    assert repr(dg.ones(2, 2)) == "tensor([[1., 1.],\n        [1., 1.]])"
    w = dg.tensor([2.0], requires_grad=True)
    assert repr(w * 3) == "tensor([6.], grad_fn=<MulBackward0>)"
    assert repr(dg.arange(2000)) == "tensor([   0,    1,    2,  ..., 1997, 1998, 1999])"
    assert str(dg.tensor([0.5])) == repr(dg.tensor([0.5]))


def test_printoptions():
    dg.set_printoptions(precision=2)
    assert repr(dg.tensor([1.12345])) == "tensor([1.12])"
    dg.set_printoptions(threshold=5)
    assert repr(dg.arange(10)) == "tensor([0, 1, 2,  ..., 7, 8, 9])"
    dg.set_printoptions(profile="default")
    assert repr(dg.tensor([1.12345])) == "tensor([1.1235])"
    assert repr(dg.arange(10)) == "tensor([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])"
    dg.set_printoptions(sci_mode=False)
    assert repr(dg.tensor([1e-5, 1.0])) == "tensor([0.0000, 1.0000])"
    dg.set_printoptions(sci_mode=True)
    assert repr(dg.tensor([0.5, 2.0])) == "tensor([5.0000e-01, 2.0000e+00])"
    dg.set_printoptions()
    with dg.printoptions(precision=1):
        assert repr(dg.tensor([0.25, 0.75])) == "tensor([0.2, 0.8])"
    assert dg.get_printoptions()["precision"] == 4
    with pytest.raises(ValueError, match="profile"):
        dg.set_printoptions(profile="long")


def test_parameter_repr():
    p = dg.nn.Parameter(dg.tensor([1.0, 2.0]))
    assert repr(p) == "Parameter containing:\ntensor([1., 2.], requires_grad=True)"


def _cases():
    rng = np.random.default_rng(0)
    arrays = [
        np.array([1 / 3, 1.0]), np.array(3.0), np.array(-0.0), np.array(7), np.array(True),
        np.array([1, 2, 3]), np.array([-1, 200, 3]), np.array([True, False, True]),
        np.array([1e-5, 1.0]), np.array([1e-3, 5.0, 1000.0]), np.array([1.0, 1e9]), np.array([1.0, 2e8]),
        np.array([0.0, 0.0]), np.array([np.nan, np.inf, -np.inf]), np.array([1.0, np.nan, 2.5]),
        np.array([1.0, np.inf]), np.array([100.0, 2000000.0]), np.array([-0.5, 123.456, 7.0]),
        rng.standard_normal((3, 4)), rng.standard_normal((2, 3, 4)) * 1000, rng.standard_normal((5, 30)),
        rng.standard_normal(1001), rng.standard_normal((40, 50)), rng.standard_normal((11, 11, 11)),
        np.arange(2000).reshape(2, 1000), np.arange(25.0).reshape(5, 5) / 7, rng.integers(-5, 5, (4, 4, 2)),
        np.zeros((0,)), np.zeros((0, 3)), np.zeros((2, 0, 1)), np.arange(12.0).reshape(2, 3, 2, 1),
        rng.standard_normal(50) * 1e-6, np.array([1.5, -2.25e-7]), rng.standard_normal((2, 80)),
    ]
    out = []
    for a in arrays:
        if a.dtype.kind == "f":
            for dt in ("float32", "float64", "float16"):
                with np.errstate(over="ignore"):  # 1e9 as float16 is inf, in torch too
                    out.append(a.astype(dt))
        elif a.dtype.kind == "i":
            for dt in ("int64", "int32", "int8", "uint8", "int16"):
                if dt == "uint8" and a.size and a.min() < 0:
                    continue
                out.append(a.astype(dt))
        else:
            out.append(a)
    return out


@pytest.fixture
def torch_names(monkeypatch):
    """dtypes named as torch names them, so that line wrapping (which counts the suffix's characters) is
    compared too; the name itself is checked by test_reprs_by_hand."""
    import dualgraph._printing as printing
    monkeypatch.setattr(printing, "dtype_name", lambda dt: "torch." + ("bool" if dt == dg.bool_ else str(dt)))


def _torch_repr(torch, t):
    return repr(t)


def test_reprs_match_torch(torch_names):
    torch = pytest.importorskip("torch")
    for a in _cases():
        with np.errstate(over="ignore", invalid="ignore"):  # 1e9 as float16 is inf in both
            ours, theirs = dg.tensor(a), torch.tensor(a)
        assert repr(ours) == _torch_repr(torch, theirs), a
    for req in (True,):
        for a in _cases():
            if a.dtype.kind != "f" or a.dtype == np.float16:
                continue
            assert repr(dg.tensor(a, requires_grad=req)) == _torch_repr(torch, torch.tensor(a, requires_grad=req))
    x = np.array([[0.5, -1.25], [2.0, 3.0]], np.float32)
    tx, dx = torch.tensor(x, requires_grad=True), dg.tensor(x, requires_grad=True)
    for f in (lambda m, t: t * 2, lambda m, t: t + 1, lambda m, t: t.sum(), lambda m, t: -t,
              lambda m, t: m.exp(t)):
        assert repr(f(dg, dx)) == _torch_repr(torch, f(torch, tx))


@pytest.mark.parametrize("opts", [dict(precision=2), dict(precision=8), dict(threshold=5), dict(edgeitems=1),
                                  dict(linewidth=40), dict(sci_mode=True), dict(sci_mode=False),
                                  dict(profile="short"), dict(profile="full"), dict(edgeitems=0, threshold=3)])
def test_printoptions_match_torch(opts, torch_names):
    torch = pytest.importorskip("torch")
    old = torch._tensor_str.get_printoptions() if hasattr(torch._tensor_str, "get_printoptions") else None
    try:
        torch.set_printoptions(**opts)
        dg.set_printoptions(**opts)
        for a in _cases():
            if a.dtype.kind == "f" and a.dtype != np.float64:
                continue
            with np.errstate(over="ignore", invalid="ignore"):
                assert repr(dg.tensor(a)) == _torch_repr(torch, torch.tensor(a)), (opts, a)
    finally:
        torch.set_printoptions(profile="default")
        if old is not None:
            torch.set_printoptions(**old)


def test_format_spec():
    loss = dg.tensor(0.123456)
    assert f"{loss:.4f}" == "0.1235" and f"{loss}" == "0.12345600128173828"
    assert f"{dg.tensor(3):>4}" == "   3"
    assert f"{dg.ones(2)}" == "tensor([1., 1.])"
    with pytest.raises(TypeError):
        f"{dg.ones(2):.2f}"  # noqa: B018  (as in PyTorch: only 0-d tensors take a format spec)


def test_format_spec_matches_torch():
    torch = pytest.importorskip("torch")
    for v in (0.123456, 2.5, -1e-7):
        for spec in ("", ".4f", ".2e", "10.3f"):
            assert format(dg.tensor(v), spec) == format(torch.tensor(v), spec)
