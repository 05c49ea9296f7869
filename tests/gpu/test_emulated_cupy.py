"""The emulated GPU keeps cupy's rules, so a host/device slip in dualgraph fails in CI as it would on a
GPU. These run only on the emulation (they test it, not cupy)."""
import numpy as np
import pytest

import dualgraph as dg
from dualgraph import backend

pytestmark = pytest.mark.skipif(not backend.EMULATED, reason="tests of the emulated cupy")


@pytest.fixture
def cp():
    return backend._cupy


def test_no_implicit_host_conversion(cp):
    x = cp.arange(4, dtype=np.float32)
    assert not isinstance(x, np.ndarray)
    with pytest.raises(TypeError, match="Implicit conversion"):
        np.asarray(x)
    with pytest.raises(AttributeError):
        x.ctypes
    np.testing.assert_array_equal(cp.asnumpy(x), np.arange(4, dtype=np.float32))
    np.testing.assert_array_equal(x.get(), np.arange(4, dtype=np.float32))


def test_mixing_with_numpy_arrays_raises(cp):
    x = cp.ones(3)
    with pytest.raises(TypeError):
        x + np.ones(3)
    with pytest.raises(TypeError):
        np.ones(3) + x
    with pytest.raises(TypeError):
        cp.add(x, np.ones(3))
    with pytest.raises(TypeError):
        cp.concatenate([x, np.ones(3)])
    assert float((x * np.float32(2) + 1).sum()) == 9.0   # scalars are fine
    assert isinstance(np.sum(x), cp.ndarray)               # numpy functions dispatch to the device


def test_reductions_stay_on_the_device(cp):
    s = cp.arange(5).sum()
    assert isinstance(s, cp.ndarray) and s.ndim == 0 and int(s) == 10


def test_transfers_copy(cp):
    h = np.zeros(3)
    d = cp.asarray(h)
    d += 1
    assert h.sum() == 0
    g = d.get()
    g[0] = 5
    assert float(d[0]) == 1


def test_elementwise_kernel_compiles_lazily_with_cuda_semantics(cp):
    k = cp.ElementwiseKernel("float32 x, float32 y", "float32 z", "z = max(x, y)", "k_max")
    x = cp.asarray(np.array([np.nan, 1.0, 3.0], np.float32))
    y = cp.asarray(np.array([0.0, np.nan, 2.0], np.float32))
    np.testing.assert_array_equal(k(x, y).get(), [0.0, 1.0, 3.0])   # CUDA's fmax drops a NaN operand
    bad = cp.ElementwiseKernel("float32 x", "float32 z", "z = undefined_fn(x)", "k_bad")  # no error yet
    with pytest.raises(cp.cuda.compiler.CompileException, match="undefined_fn"):
        bad(x)
    with pytest.raises(ValueError, match="Wrong type float"):
        cp.ElementwiseKernel("float x", "float z", "z = x", "k_ctype")   # parameters take numpy's names
    with pytest.raises(TypeError, match="Type is mismatched"):
        k(x.astype(np.float64), y)      # cupy casts scalar arguments, never arrays
    r = cp.ReductionKernel("float32 x", "float32 y", "x * x", "a + b", "y = a", "0", "sumsq")
    np.testing.assert_allclose(r(cp.arange(5, dtype=np.float32)).get(), 30.0)


def test_sort_is_stable_and_kind_is_refused(cp):
    x = cp.asarray(np.array([1, 0, 1, 0]))
    np.testing.assert_array_equal(cp.argsort(x).get(), [1, 3, 0, 2])
    with pytest.raises(ValueError):
        cp.sort(x, kind="quicksort")


def test_a_host_slip_in_an_op_forward_fails_on_the_gpu():
    # an op whose forward goes through numpy (np.asarray of its input) works on the CPU and must fail on
    # the GPU, eagerly and compiled, as it would on cupy
    from dualgraph.dispatch import apply
    from dualgraph.ops.infer import same_infer
    from dualgraph.ops.registry import REGISTRY, defop
    op = defop("_host_slip_probe", lambda xp, x: xp.asarray(np.asarray(x) * 2), same_infer, None,
               differentiable=False)
    try:
        x = np.arange(3.0)
        assert apply(op, (dg.tensor(x),)).numpy().tolist() == [0.0, 2.0, 4.0]
        with pytest.raises(Exception, match="Implicit conversion"):
            apply(op, (dg.tensor(x, device="gpu"),))
        with pytest.raises(Exception, match="Implicit conversion"):
            dg.function(lambda t: apply(op, (t,)) + 1)(dg.tensor(x, device="gpu"))
    finally:
        REGISTRY.pop("_host_slip_probe", None)
