"""The tensor layer: creation, dtypes, devices, conversion, operators, indexing, axis conventions.

References are numpy (computed independently on the same data) or hand-derived values.
"""
import itertools

import numpy as np
import pytest

import dualgraph as dg

DEVICES = ["cpu"] + (["gpu"] if dg.gpu_available() else [])
needs_gpu = pytest.mark.skipif(not dg.gpu_available(), reason="needs cupy and a GPU")
DTYPES = ["float16", "float32", "float64", "int32", "int64", "bool"]


def host(t):
    assert isinstance(t, dg.Tensor), f"expected a Tensor, got {type(t).__name__}"
    return t.numpy()


# ---- creation -------------------------------------------------------------------------------------

def test_tensor_from_python_data_default_dtypes():
    assert dg.tensor([1.0, 2.0]).dtype == np.float32      # Python floats -> float32, like PyTorch
    assert dg.tensor(1.5).dtype == np.float32
    assert dg.tensor([1, 2]).dtype == np.int64
    assert dg.tensor([True, False]).dtype == np.bool_
    assert dg.tensor([[1, 2.5]]).dtype == np.float32      # mixed int/float list is a float list
    assert dg.get_default_dtype() == np.float32


def test_tensor_from_numpy_keeps_supported_dtype_and_copies():
    a = np.array([1.0, 2.0])                              # float64 array stays float64
    t = dg.tensor(a)
    assert t.dtype == np.float64
    a[0] = 99.0
    assert host(t).tolist() == [1.0, 2.0]                 # dg.tensor copies its input
    assert dg.tensor(np.arange(3, dtype=np.int32)).dtype == np.int32


def test_from_numpy_shares_memory():
    a = np.zeros(3, dtype=np.float32)
    t = dg.from_numpy(a)
    a[1] = 5.0
    assert host(t).tolist() == [0.0, 5.0, 0.0]


@pytest.mark.parametrize("spec,expected", [
    (np.float64, np.float64), (np.dtype("int32"), np.int32), ("float64", np.float64), ("float16", np.float16),
    ("int64", np.int64), ("bool", np.bool_), (dg.float32, np.float32), (dg.float64, np.float64),
    (dg.int32, np.int32), (dg.bool_, np.bool_), (dg.half, np.float16), (dg.long, np.int64), (float, np.float32),
    (int, np.int64), (bool, np.bool_),
])
def test_dtype_spellings(spec, expected):
    t = dg.tensor([1, 0, 1], dtype=spec)
    assert t.dtype == np.dtype(expected)
    np.testing.assert_array_equal(host(t), np.array([1, 0, 1], dtype=expected))


def test_bad_dtype_is_a_dtype_error():
    with pytest.raises(dg.DTypeError):
        dg.tensor([1], dtype="complex128")
    with pytest.raises(TypeError):   # DTypeError subclasses TypeError
        dg.zeros(2, dtype="not_a_dtype")


@pytest.mark.parametrize("device", DEVICES)
def test_creation_functions(device):
    assert host(dg.zeros(2, 3, device=device)).tolist() == [[0, 0, 0], [0, 0, 0]]
    assert dg.zeros((2, 3)).shape == (2, 3) and dg.zeros([2, 3]).shape == (2, 3)
    assert dg.ones(2, device=device).dtype == np.float32
    assert dg.ones(3, dtype="int32").dtype == np.int32
    assert dg.empty(4, 5, device=device).shape == (4, 5)
    f = dg.full((2, 2), 7.5, device=device)
    assert f.dtype == np.float32 and host(f).tolist() == [[7.5, 7.5], [7.5, 7.5]]
    assert dg.full((2,), 3).dtype == np.int64 and dg.full((2,), True).dtype == np.bool_
    np.testing.assert_array_equal(host(dg.arange(5, device=device)), np.arange(5))
    assert dg.arange(5).dtype == np.int64
    np.testing.assert_allclose(host(dg.arange(1, 2, 0.25)), [1.0, 1.25, 1.5, 1.75])
    assert dg.arange(1, 2, 0.25).dtype == np.float32
    assert dg.arange(3, dtype="float64").dtype == np.float64
    np.testing.assert_allclose(host(dg.linspace(0, 1, 5, device=device)), np.linspace(0, 1, 5))
    assert dg.linspace(0, 1, 5).dtype == np.float32
    np.testing.assert_array_equal(host(dg.eye(2, 3, device=device)), np.eye(2, 3))
    assert dg.eye(3).dtype == np.float32
    for t in (dg.zeros(1, device=device), dg.arange(2, device=device), dg.eye(2, device=device)):
        assert t.device == dg.device(device)


def test_creation_requires_grad_flag():
    for t in (dg.zeros(2, requires_grad=True), dg.ones(2, requires_grad=True), dg.randn(2, requires_grad=True),
              dg.full((2,), 1.0, requires_grad=True), dg.tensor([1.0], requires_grad=True)):
        assert t.requires_grad and t.is_leaf and t.grad is None
    with pytest.raises(dg.DTypeError, match="floating"):
        dg.tensor([1, 2], requires_grad=True)    # only floating tensors can require grad


@pytest.mark.parametrize("device", DEVICES)
def test_like_functions_keep_shape_dtype_device(device):
    x = dg.ones(2, 3, dtype="float64", device=device)
    for fn, value in ((dg.zeros_like, 0), (dg.ones_like, 1)):
        y = fn(x)
        assert (y.shape, y.dtype, y.device) == ((2, 3), np.float64, x.device)
        assert np.all(host(y) == value)
    y = dg.full_like(x, 2.5)
    assert y.dtype == np.float64 and np.all(host(y) == 2.5)
    assert dg.empty_like(x).shape == (2, 3)
    assert dg.zeros_like(x, dtype="int32").dtype == np.int32
    assert dg.rand_like(x).dtype == np.float64 and dg.randn_like(x).shape == (2, 3)
    assert not dg.zeros_like(dg.ones(2, requires_grad=True)).requires_grad


def test_manual_seed_reproduces_every_random_function():
    def draw():
        return [host(dg.rand(5)), host(dg.randn(2, 3)), host(dg.randint(0, 100, (6,))),
                host(dg.rand_like(dg.ones(4))), host(dg.randn_like(dg.ones(4))), host(dg.randperm(7))]

    dg.manual_seed(123)
    first = draw()
    dg.manual_seed(123)
    second = draw()
    dg.manual_seed(124)
    third = draw()
    for a, b, c in zip(first, second, third):
        np.testing.assert_array_equal(a, b)
        assert not np.array_equal(a, c)


def test_random_distributions_and_ranges():
    dg.manual_seed(0)
    u = host(dg.rand(20000))
    assert u.dtype == np.float32 and u.min() >= 0.0 and u.max() < 1.0
    assert abs(u.mean() - 0.5) < 0.02
    n = host(dg.randn(20000, dtype="float64"))
    assert n.dtype == np.float64 and abs(n.mean()) < 0.05 and abs(n.std() - 1.0) < 0.05
    r = host(dg.randint(3, 7, (5000,)))
    assert r.dtype == np.int64 and set(np.unique(r).tolist()) == {3, 4, 5, 6}
    assert host(dg.randint(4, size=(100,))).max() <= 3
    assert sorted(host(dg.randperm(10)).tolist()) == list(range(10))
    assert dg.rand(3, dtype="float16").dtype == np.float16


# ---- properties and conversion --------------------------------------------------------------------

@pytest.mark.parametrize("device", DEVICES)
def test_properties_and_conversion(device):
    data = np.arange(6, dtype=np.float32).reshape(2, 3)
    t = dg.tensor(data, device=device)
    assert t.shape == (2, 3) and t.ndim == 2 and t.dim() == 2 and t.dtype == np.float32
    assert t.numel() == 6 and t.size == 6 and t.size() == (2, 3) and t.size(1) == 3 and len(t) == 2
    assert t.device == dg.device(device) and str(dg.device("cpu")) == "cpu"
    n = t.numpy()
    assert isinstance(n, np.ndarray) and n.dtype == np.float32
    np.testing.assert_array_equal(n, data)
    assert t.tolist() == data.tolist()
    s = dg.tensor([[2.5]], device=device).item()
    assert s == 2.5 and isinstance(s, float)
    assert isinstance(dg.tensor(3).item(), int) and isinstance(dg.tensor(True).item(), bool)
    assert float(dg.tensor(1.5)) == 1.5 and int(dg.tensor(4)) == 4
    with pytest.raises(ValueError, match="one element"):
        t.item()


def test_numpy_is_a_copy_and_asarray_works():
    t = dg.tensor([1.0, 2.0])
    n = t.numpy()                     # a copy (the "copy to host"), so it cannot bypass autograd
    n[0] = 7.0
    assert t.tolist() == [1.0, 2.0] and t._version[0] == 0
    a = np.asarray(t)
    assert isinstance(a, np.ndarray) and a.tolist() == [1.0, 2.0]
    a[1] = 9.0
    assert t.tolist() == [1.0, 2.0]
    assert np.asarray(t, dtype=np.float64).dtype == np.float64
    assert np.sum(np.asarray(dg.ones(3))) == 3.0
    assert t.asnumpy().tolist() == [1.0, 2.0]
    shared = np.asarray(t, copy=False)       # numpy 2's explicit no-copy request shares the buffer
    shared[0] = 5.0
    assert t.tolist() == [5.0, 2.0]
    with pytest.raises(ValueError):
        np.asarray(t, dtype=np.float64, copy=False)


def test_bool_of_tensor():
    assert bool(dg.tensor([1.0])) and not bool(dg.tensor(0))
    with pytest.raises(ValueError, match="ambiguous"):
        bool(dg.tensor([1, 2]))


def test_to_device_and_dtype_cpu():
    t = dg.tensor([1.5, 2.5])
    assert t.to("cpu") is t and t.cpu() is t and t.to(dg.device("cpu")) is t
    d = t.to(dg.float64)
    assert d.dtype == np.float64 and d.tolist() == [1.5, 2.5]
    assert t.to("float16").dtype == np.float16
    i = t.to("cpu", "int32")
    assert i.dtype == np.int32 and i.tolist() == [1, 2]
    assert t.double().dtype == np.float64 and t.long().dtype == np.int64 and t.half().dtype == np.float16
    assert t.astype("float64").dtype == np.float64
    assert t.dtype == np.float32      # casts never mutate the original


def test_unknown_device_is_a_device_error():
    with pytest.raises(dg.DeviceError, match="unknown device"):
        dg.zeros(2, device="tpu")
    if not dg.gpu_available():
        with pytest.raises(dg.DeviceError, match="cupy"):
            dg.zeros(2, device="gpu")


@needs_gpu
def test_gpu_roundtrip_and_autograd():
    x = dg.tensor([1.0, 2.0, 3.0], device="gpu", requires_grad=True)
    assert x.device == dg.device("gpu:0") and x.device != dg.device("cpu")
    y = (x * x).sum()
    y.backward()
    assert x.grad.device == x.device
    np.testing.assert_allclose(x.grad.numpy(), [2.0, 4.0, 6.0])
    back = x.detach().to("cpu")
    assert back.device == dg.device("cpu") and back.tolist() == [1.0, 2.0, 3.0]
    assert isinstance(x.numpy(), np.ndarray)                  # numpy() copies to host
    with pytest.raises(dg.DeviceError, match="CPU"):
        np.asarray(x)
    # moving between devices is differentiable
    c = dg.tensor([1.0, 2.0], requires_grad=True)
    (c.to("gpu") * 3).sum().backward()
    assert c.grad.device == dg.device("cpu") and c.grad.tolist() == [3.0, 3.0]


@needs_gpu
def test_mixing_devices_raises_naming_both():
    with pytest.raises(dg.DeviceError) as e:
        dg.ones(2) + dg.ones(2, device="gpu")
    assert "cpu" in str(e.value) and "gpu:0" in str(e.value) and "add" in str(e.value)


def test_repr():
    assert repr(dg.tensor([1.0, 2.0])) == "tensor([1., 2.])"
    assert repr(dg.tensor([1.0], dtype="float64")) == "tensor([1.], dtype=dualgraph.float64)"
    assert "requires_grad=True" in repr(dg.tensor([1.0], requires_grad=True))
    assert "grad_fn=<MulBackward0>" in repr(dg.tensor([1.0], requires_grad=True) * 2)


# ---- dtype promotion ------------------------------------------------------------------------------

def _pytorch_promote(a, b):
    """torch.promote_types for two dimensioned tensors: a higher category (bool < int < float) wins
    outright; within one category the wider type (numpy agrees there)."""
    rank = {"b": 0, "u": 1, "i": 1, "f": 2}
    a, b = np.dtype(a), np.dtype(b)
    if rank[a.kind] != rank[b.kind]:
        return a if rank[a.kind] > rank[b.kind] else b
    return np.promote_types(a, b)


@pytest.mark.parametrize("a,b", list(itertools.product(DTYPES, DTYPES)))
def test_binary_promotion_follows_pytorch(a, b):
    # PyTorch's rule, not numpy's: float16 + int32 is float16 (numpy: float64)
    x, y = dg.ones(3, dtype=a), dg.ones(3, dtype=b)
    expected = _pytorch_promote(a, b)
    for op in ("__add__", "__mul__", "__sub__"):
        if op == "__sub__" and "bool" in (a, b):  # PyTorch refuses subtraction with a bool tensor
            with pytest.raises(dg.DTypeError):
                getattr(x, op)(y)
            continue
        out = getattr(x, op)(y)
        assert out.dtype == expected, (a, b, op)
        ref = getattr(np.ones(3, dtype=expected), op)(np.ones(3, dtype=expected)) if expected != np.bool_ else \
            getattr(np.ones(3, dtype=bool), op)(np.ones(3, dtype=bool))
        np.testing.assert_array_equal(host(out), ref)


@pytest.mark.parametrize("a,b", list(itertools.product(DTYPES, DTYPES)))
def test_true_division_computes_ints_in_float32(a, b):
    # the common dtype when it is a float, else the default float (float32)
    expected = _pytorch_promote(a, b)
    expected = expected if expected.kind == "f" else np.dtype("float32")
    out = dg.full((2,), 3, dtype=a) / dg.full((2,), 2, dtype=b) if "bool" not in (a, b) else \
        dg.ones(2, dtype=a) / dg.ones(2, dtype=b)
    assert out.dtype == expected


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("scalar", [2, 2.5, True])
def test_python_scalars_are_weak(dtype, scalar):
    if dtype == "bool" and scalar is True:
        pytest.skip("bool + bool covered above")
    out = dg.ones(2, dtype=dtype) * scalar
    # a Python number keeps the tensor's dtype unless its category is higher: then int64 for an int
    # (on a bool tensor), the default float32 for a float (on an int or bool tensor)
    kind = np.dtype(dtype).kind
    if isinstance(scalar, float) and kind != "f":
        expected = np.float32
    elif isinstance(scalar, int) and not isinstance(scalar, bool) and kind == "b":
        expected = np.int64
    else:
        expected = np.dtype(dtype)
    assert out.dtype == expected
    if dtype.startswith("float"):
        assert (dg.ones(2, dtype=dtype) + 2.5).dtype == np.dtype(dtype)


def test_int_true_division_gives_float32():
    out = dg.tensor([1, 3]) / dg.tensor([2, 2])
    assert out.dtype == np.float32 and out.tolist() == [0.5, 1.5]
    assert (dg.tensor([3]) // 2).tolist() == [1] and (dg.tensor([3]) // 2).dtype == np.int64


# ---- operators ------------------------------------------------------------------------------------

@pytest.mark.parametrize("device", DEVICES)
def test_arithmetic_operators_match_numpy(device):
    rng = np.random.default_rng(0)
    an = rng.standard_normal((3, 4)).astype(np.float32)
    bn = rng.uniform(0.5, 2.0, (4,)).astype(np.float32)
    a, b = dg.tensor(an, device=device), dg.tensor(bn, device=device)
    cases = [(a + b, an + bn), (a - b, an - bn), (a * b, an * bn), (a / b, an / bn), (a ** 2, an ** 2),
             (b ** b, bn ** bn), (-a, -an), (abs(a), np.abs(an)), (+a, an), (a // b, an // bn),
             (a % b, an % bn), (a @ dg.tensor(an.T, device=device), an @ an.T),
             (a + 1, an + 1), (a * 0.5, an * 0.5)]
    for got, ref in cases:
        assert got.shape == ref.shape
        np.testing.assert_allclose(host(got), ref, rtol=1e-5, atol=1e-6)


def test_reflected_operators_with_scalars():
    t = dg.tensor([1.0, 2.0, 4.0])
    np.testing.assert_allclose(host(1 + t), [2, 3, 5])
    np.testing.assert_allclose(host(1 - t), [0, -1, -3])
    np.testing.assert_allclose(host(2 * t), [2, 4, 8])
    np.testing.assert_allclose(host(1 / t), [1, 0.5, 0.25])
    np.testing.assert_allclose(host(2 ** t), [2, 4, 16])
    np.testing.assert_array_equal(host(7 // dg.tensor([2, 3])), [3, 2])
    np.testing.assert_array_equal(host(7 % dg.tensor([2, 3])), [1, 1])


def test_numpy_array_on_the_left_returns_a_tensor():
    t = dg.tensor([1.0, 2.0, 3.0])
    n = np.array([2.0, 2.0, 2.0])
    for got, ref in ((n * t, n * [1, 2, 3]), (n + t, n + [1, 2, 3]), (n - t, n - [1, 2, 3]),
                     (n / t, n / [1, 2, 3]), (n ** t, n ** [1, 2, 3]), (np.ones((2, 3)) @ t, [6.0, 6.0])):
        assert isinstance(got, dg.Tensor), type(got)
        np.testing.assert_allclose(host(got), ref)
    assert isinstance(np.ones(3) * t, dg.Tensor)
    c = n < t
    assert isinstance(c, dg.Tensor) and c.tolist() == [False, False, True]
    # a numpy operand on the left joins the graph as a constant
    x = dg.tensor([1.0, 2.0], requires_grad=True)
    (np.array([3.0, 4.0]) * x).sum().backward()
    assert x.grad.tolist() == [3.0, 4.0]


def test_comparisons_and_logic():
    a, b = dg.tensor([1, 2, 3]), dg.tensor([3, 2, 1])
    assert (a == b).tolist() == [False, True, False] and (a == b).dtype == np.bool_
    assert (a != b).tolist() == [True, False, True]
    assert (a < b).tolist() == [True, False, False] and (a <= b).tolist() == [True, True, False]
    assert (a > b).tolist() == [False, False, True] and (a >= b).tolist() == [False, True, True]
    assert (a > 1).tolist() == [False, True, True] and (2 < a).tolist() == [False, False, True]
    m1, m2 = a > 1, b > 1
    assert (m1 & m2).tolist() == [False, True, False] and (m1 | m2).tolist() == [True, True, True]
    assert (m1 ^ m2).tolist() == [True, False, True] and (~m1).tolist() == [True, False, False]
    # comparisons are not differentiable: no graph hangs off them
    x = dg.tensor([1.0, 2.0], requires_grad=True)
    assert not (x > 1).requires_grad


def test_inplace_operators_mutate_and_bump_version():
    t = dg.tensor([1.0, 2.0])
    same = t
    v0 = t._version[0]
    t += 1
    t *= 3
    t -= 1
    t /= 2
    assert t is same and t.tolist() == [2.5, 4.0]
    assert t._version[0] == v0 + 4
    t.zero_()
    assert t.tolist() == [0.0, 0.0]
    t.fill_(2.0)
    t.copy_(dg.tensor([5.0, 6.0]))
    assert t.tolist() == [5.0, 6.0]
    with pytest.raises(dg.DTypeError, match="cast"):
        i = dg.tensor([1, 2])
        i += 1.5                      # would silently truncate
    with pytest.raises(dg.ShapeError):
        dg.tensor([1.0, 2.0]).add_(dg.ones(2, 2))


def test_ops_do_not_mutate_inputs():
    an = np.array([[3.0, 1.0], [2.0, 4.0]], dtype=np.float32)
    a = dg.tensor(an)
    for fn in (lambda t: t + 1, lambda t: t.T, lambda t: t.sum(0), lambda t: t.reshape(4), lambda t: t[0],
               lambda t: -t, lambda t: t.exp(), lambda t: t.transpose(0, 1)):
        fn(a)
    np.testing.assert_array_equal(host(a), an)


# ---- shape ops and axis conventions --------------------------------------------------------------

def test_transpose_permute_T_mT():
    n = np.arange(24).reshape(2, 3, 4)
    t = dg.tensor(n)
    np.testing.assert_array_equal(host(t.transpose(0, 2)), np.swapaxes(n, 0, 2))   # swaps two axes (torch)
    np.testing.assert_array_equal(host(t.transpose(-1, 1)), np.swapaxes(n, -1, 1))
    np.testing.assert_array_equal(host(t.permute(2, 0, 1)), n.transpose(2, 0, 1))
    np.testing.assert_array_equal(host(t.permute((1, 2, 0))), n.transpose(1, 2, 0))
    np.testing.assert_array_equal(host(t.T), n.T)
    np.testing.assert_array_equal(host(t.mT), np.swapaxes(n, -1, -2))
    np.testing.assert_array_equal(host(dg.transpose(t, 1, 2)), np.swapaxes(n, 1, 2))
    m = dg.tensor([[1, 2, 3]])
    assert m.T.shape == (3, 1) and m.mT.shape == (3, 1)


def test_split_has_pytorch_meaning():
    t = dg.tensor(np.arange(10))
    # an int is the size of each chunk (last one smaller), not the number of sections
    assert [p.tolist() for p in t.split(4)] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    # a list gives the sizes of the pieces
    assert [p.tolist() for p in t.split([2, 5, 3])] == [[0, 1], [2, 3, 4, 5, 6], [7, 8, 9]]
    n = np.arange(24).reshape(2, 3, 4)
    m = dg.tensor(n)
    parts = m.split(2, 2)
    assert len(parts) == 2
    np.testing.assert_array_equal(host(parts[1]), n[:, :, 2:])
    assert [p.shape for p in m.split([1, 2], dim=1)] == [(2, 1, 4), (2, 2, 4)]
    assert [p.shape for p in dg.split(m, 1, axis=0)] == [(1, 3, 4), (1, 3, 4)]


@pytest.mark.parametrize("name", ["sum", "mean", "prod", "max", "min", "amax", "var", "std", "any", "all"])
def test_axis_and_dim_spellings_agree(name):
    n = np.random.default_rng(1).standard_normal((2, 3, 4)).astype(np.float32)
    if name in ("any", "all"):
        n = n > 0
    t = dg.tensor(n)
    ref_fn = {"amax": np.max}.get(name, getattr(np, name))
    for axis in (0, 1, -1, (0, 2)):
        if name in ("max", "min") and isinstance(axis, tuple):
            continue
        # PyTorch's max/min with a dim give (values, indices); numpy's axis= the values
        values = (lambda r: r.values) if name in ("max", "min") else (lambda r: r)
        a = getattr(t, name)(axis=axis, keepdims=True)
        d = values(getattr(t, name)(dim=axis, keepdim=True))
        ref = ref_fn(n, axis=axis, keepdims=True)
        assert a.shape == d.shape == ref.shape
        np.testing.assert_allclose(host(a), ref, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(host(d), ref, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(host(values(getattr(t, name)(axis))), ref_fn(n, axis=axis), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(host(getattr(t, name)()), ref_fn(n), rtol=1e-5, atol=1e-6)


def test_max_with_numpy_axis_returns_values_only():
    """PyTorch's dim (max(x, 1), max(dim=1)) gives (values, indices), tested in test_selection_ops.py;
    numpy's and MXNet's axis= keeps giving the values."""
    t = dg.tensor([[1.0, 5.0], [7.0, 2.0]])
    m = t.max(axis=1)
    assert isinstance(m, dg.Tensor) and m.tolist() == [5.0, 7.0]
    assert t.max(dim=1).values.tolist() == [5.0, 7.0] and t.max(1).indices.tolist() == [1, 0]
    assert t.argmax(dim=1).tolist() == [1, 0]


# ---- indexing -------------------------------------------------------------------------------------

@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("index", [
    1, -1, (1, 2), slice(1, None), (slice(None), 1), (Ellipsis, 2), (None, 0), (slice(None, None, -1),),
    (slice(0, 3, 2), slice(None), -1), ([0, 1],), ([1, 0], [2, 0]), (slice(None), [2, 0, 2]),
    (np.array([1, 0]),), (0, Ellipsis, None),
    ((1, 0),),
])
def test_getitem_matches_numpy(device, index):
    n = np.arange(2 * 3 * 4).reshape(2, 3, 4)
    t = dg.tensor(n, device=device)
    got = t[index]
    ref = n[index]
    assert got.shape == ref.shape
    np.testing.assert_array_equal(host(got), ref)


def test_getitem_boolean_mask_and_tensor_indices():
    n = np.arange(12).reshape(3, 4)
    t = dg.tensor(n)
    np.testing.assert_array_equal(host(t[t > 5]), n[n > 5])
    np.testing.assert_array_equal(host(t[dg.tensor([True, False, True])]), n[[True, False, True]])
    np.testing.assert_array_equal(host(t[dg.tensor([2, 0])]), n[[2, 0]])
    np.testing.assert_array_equal(host(t[:, dg.tensor([1, 1])]), n[:, [1, 1]])
    assert t[dg.tensor(1)].tolist() == n[1].tolist()        # a 0-d int tensor is an index


def test_getitem_gradients_accumulate_on_repeated_indices():
    x = dg.tensor([1.0, 2.0, 3.0], requires_grad=True)
    x[[0, 0, 2]].sum().backward()
    assert x.grad.tolist() == [2.0, 0.0, 1.0]
    x = dg.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], requires_grad=True)
    (x[x > 2] * 2).sum().backward()
    assert x.grad.tolist() == [[0, 0, 2], [2, 2, 2]]
    x = dg.tensor(np.arange(6.0).reshape(2, 3), requires_grad=True)
    (x[:, 1:] ** 2).sum().backward()
    np.testing.assert_allclose(host(x.grad), [[0, 2, 4], [0, 8, 10]])


@pytest.mark.parametrize("device", DEVICES)
def test_setitem_matches_numpy(device):
    n = np.zeros((3, 4), dtype=np.float32)
    t = dg.zeros(3, 4, device=device)
    writes = [(1, 5.0), ((slice(None), 0), np.array([1.0, 2.0, 3.0], dtype=np.float32)),
              (([0, 2], [1, 1]), 7.0), ((Ellipsis, -1), -2.0), ((slice(0, 2), slice(1, 3)), np.ones((2, 2)))]
    for index, value in writes:
        n[index] = value
        t[index] = dg.tensor(value, device=device) if isinstance(value, np.ndarray) else value
        np.testing.assert_array_equal(host(t), n)
    n[n > 4] = -1
    t[t > 4] = -1
    np.testing.assert_array_equal(host(t), n)


def test_setitem_is_differentiable():
    x = dg.tensor([1.0, 2.0, 3.0], requires_grad=True)
    w = dg.tensor(5.0, requires_grad=True)
    y = x * 1
    y[1] = w * 2                       # y = [x0, 2w, x2]
    (y * y).sum().backward()
    assert x.grad.tolist() == [2.0, 0.0, 6.0]     # d/dx of x0^2 + x2^2; x1 was overwritten
    assert w.grad.item() == 40.0                  # d/dw (2w)^2 = 8w
    with pytest.raises(dg.AutogradError, match="leaf"):
        x[0] = 1.0                                # in-place on a leaf that requires grad


def test_index_errors_say_which_index():
    t = dg.zeros(2, 3)
    with pytest.raises(IndexError) as e:
        t[5]
    assert isinstance(e.value, dg.IndexOutOfRange) and "5" in str(e.value) and "axis 0" in str(e.value)
    assert "size 2" in str(e.value)
    with pytest.raises(dg.IndexOutOfRange, match="3"):
        t[0, 3]
    with pytest.raises(dg.IndexOutOfRange, match="7"):
        t[[0, 7]]
    with pytest.raises(dg.IndexOutOfRange):
        t[1, 9] = 1.0


def test_iteration_and_len():
    t = dg.tensor([[1, 2], [3, 4], [5, 6]])
    rows = list(t)
    assert len(rows) == 3 and rows[2].tolist() == [5, 6]
    with pytest.raises(TypeError):
        len(dg.tensor(1.0))


def test_grad_can_be_set_and_cleared():
    x = dg.tensor([1.0, 2.0], requires_grad=True)
    (x * x).sum().backward()
    assert x.grad.tolist() == [2.0, 4.0]
    x.grad = None
    assert x.grad is None
    (x * 3).sum().backward()
    assert x.grad.tolist() == [3.0, 3.0]          # starts fresh after clearing
    with pytest.raises(TypeError, match="expected to be a Tensor or None but got grad of type numpy.ndarray"):
        x.grad = np.array([1.0, 1.0])            # PyTorch takes only a Tensor (or None)
    with pytest.raises(dg.ShapeError):
        x.grad = dg.zeros(3)
    with pytest.raises(dg.DTypeError, match="float64"):
        x.grad = dg.zeros(2, dtype="float64")
    fake = dg.zeros(2)
    fake._device = dg.Device("gpu", 7, np)       # same data, presented as living elsewhere
    with pytest.raises(dg.DeviceError, match="gpu:7"):
        x.grad = fake


@pytest.mark.parametrize("name,args,kwargs_axis,kwargs_dim", [
    ("cumsum", (), {"axis": 1}, {"dim": 1}),
    ("softmax", (), {"axis": 1}, {"dim": 1}),
    ("log_softmax", (), {"axis": -1}, {"dim": -1}),
    ("logsumexp", (), {"axis": 1, "keepdims": True}, {"dim": 1, "keepdim": True}),
    ("argmax", (), {"axis": 2, "keepdims": True}, {"dim": 2, "keepdim": True}),
    ("unsqueeze", (), {"axis": 1}, {"dim": 1}),
    ("chunk", (2,), {"axis": 2}, {"dim": 2}),
    ("std", (), {"axis": 1, "keepdims": True}, {"dim": 1, "keepdim": True}),
    pytest.param("index_select", (), {"axis": 1, "index": dg.tensor([0, 2])}, {"dim": 1, "index": dg.tensor([0, 2])}),
    pytest.param("narrow", (), {"axis": 1, "start": 0, "length": 2}, {"dim": 1, "start": 0, "length": 2}),
])
def test_more_axis_ops_accept_both_spellings(name, args, kwargs_axis, kwargs_dim):
    t = dg.tensor(np.arange(24.0).reshape(2, 3, 4))
    a = getattr(t, name)(*args, **kwargs_axis)
    d = getattr(t, name)(*args, **kwargs_dim)
    a, d = (a[0], d[0]) if isinstance(a, (tuple, list)) else (a, d)
    assert a.shape == d.shape
    np.testing.assert_array_equal(host(a), host(d))
    assert dg.cat([t, t], dim=1).shape == dg.cat([t, t], axis=1).shape == (2, 6, 4)
    assert dg.stack([t, t], dim=-1).shape == (2, 3, 4, 2)


def test_narrow_negative_axis():
    t = dg.tensor(np.arange(24.0).reshape(2, 3, 4))
    np.testing.assert_array_equal(host(t.narrow(-1, 1, 2)), np.arange(24.0).reshape(2, 3, 4)[..., 1:3])


def test_deepcopy_of_leaves_and_devices():
    import copy
    import pickle
    t = dg.tensor([1.0, 2.0], requires_grad=True)
    (t * t).sum().backward()
    c = copy.deepcopy(t)
    assert c is not t and c.tolist() == [1.0, 2.0] and c.requires_grad and c.is_leaf
    assert c.grad.tolist() == [2.0, 4.0] and c.grad is not t.grad
    c.detach().add_(1)
    c.grad.zero_()
    assert t.tolist() == [1.0, 2.0] and t.grad.tolist() == [2.0, 4.0]   # nothing shared
    pair = copy.deepcopy([t, t])
    assert pair[0] is pair[1]                                            # memo respected
    with pytest.raises(dg.AutogradError, match="leaf"):
        copy.deepcopy(t * 2)
    assert copy.deepcopy(t.detach() * 2).tolist() == [2.0, 4.0]
    cpu = dg.device("cpu")
    assert copy.deepcopy(cpu) is cpu and copy.copy(cpu) is cpu and pickle.loads(pickle.dumps(cpu)) is cpu
    a = dg.ones(2)
    a.attach_grad()
    b = copy.deepcopy(a)
    assert b._grad_req == "write" and b.grad.tolist() == [0.0, 0.0]


@pytest.mark.parametrize("index", [
    (1,), (slice(None), 2), (Ellipsis, slice(1, 3)), ([0, 1, 1],), (slice(None), [2, 0, 2]),
    ([1, 0], [2, 2]), "mask", (None, 1, slice(None, None, 2)), (0, [1, 2], slice(1, None)),
])
def test_indexing_gradients_match_torch(index):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(7)
    xn = rng.standard_normal((2, 3, 4))
    idx_dg = dg.tensor(xn > 0) if index == "mask" else index
    idx_t = torch.tensor(xn > 0) if index == "mask" else index
    x = dg.tensor(xn, requires_grad=True)
    tx = torch.tensor(xn, requires_grad=True)
    y, ty = x[idx_dg], tx[idx_t]
    assert y.shape == tuple(ty.shape)
    w = rng.standard_normal(y.shape)
    (y * y * dg.tensor(w)).sum().backward()
    (ty * ty * torch.tensor(w)).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), rtol=1e-12)
    # and writing through the same index into a non-leaf
    x.grad = None
    tx.grad = None
    v = dg.tensor(np.full(y.shape, 0.5), requires_grad=True)
    tv = torch.tensor(np.full(y.shape, 0.5), requires_grad=True)
    z, tz = x * 1, tx * 1
    z[idx_dg] = v * 3
    tz[idx_t] = tv * 3
    np.testing.assert_allclose(z.detach().numpy(), tz.detach().numpy())
    (z * z).sum().backward()
    (tz * tz).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), rtol=1e-12)
    np.testing.assert_allclose(v.grad.numpy(), tv.grad.numpy(), rtol=1e-12)


def test_uint64_values_past_int64_are_refused_not_wrapped():
    # dualgraph has no uint64: values that fit become int64, larger ones must not wrap to negatives
    assert dg.tensor(np.array([5, 2**63 - 1], dtype=np.uint64)).tolist() == [5, 2**63 - 1]
    for data in (np.uint64(2**64 - 1), np.array([1, 2**63], dtype=np.uint64), [2**64 - 1]):
        with pytest.raises(dg.InvalidValue, match="uint64"):
            dg.tensor(data)


@pytest.mark.parametrize("compiled", [False, True])
def test_setitem_value_with_extra_leading_ones(compiled):
    # PyTorch drops a value's leading 1s before broadcasting: x[0] = v of shape (1,) on a vector works
    def write(x, v):
        y = x * 1.0
        y[0] = v * 2.0
        y[1:] = v.reshape(1, 1, 1)
        return y
    fn = dg.function(write) if compiled else write
    v = dg.tensor([3.0], requires_grad=True)
    out = fn(dg.zeros(3), v)
    assert out.tolist() == [6.0, 3.0, 3.0]
    out.sum().backward()
    assert v.grad.shape == (1,) and v.grad.tolist() == [4.0]   # 2 from y[0], 1 + 1 from y[1:]
