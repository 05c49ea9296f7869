"""Graph passes, each alone (before/after text), and every pass switched off == all on == eager."""
import numpy as np
import pytest

import dualgraph as dg
from dualgraph.function import passes as P
from dualgraph.function.executor import compile_graph, interpret
from dualgraph.graph.ir import format_graph


def traced(fn, *args):
    return dg.function(fn, passes=()).traced_graph(*args)


def text(g):
    return format_graph(g, sources=False)


def run_pass(name, fn, *args):
    g = traced(fn, *args)
    return text(g), text(P.optimize(g, (name,)))


def test_dce_drops_unused_nodes():
    before, after = run_pass("dce", lambda x: (dg.exp(x), x + 1)[1], dg.ones(3))
    assert "exp(" in before and "exp(" not in after
    assert after == ("graph(%x: f32[3]) {\n"
                     "  %1: f32[3] = add(%x, 1)\n"
                     "  return (%1)\n"
                     "}").replace("graph", "<lambda>"[:0] + "graph")


def test_cse_merges_identical_nodes():
    before, after = run_pass("cse", lambda x: dg.sin(x) + dg.sin(x), dg.ones(3))
    assert before.count("sin(") == 2 and after.count("sin(") == 1
    assert "add(%1, %1)" in after


def test_cse_keeps_random_ops_apart():
    _, after = run_pass("cse", lambda x: dg.rand_like(x) + dg.rand_like(x), dg.ones(3))
    assert after.count("uniform_like(") == 2


def test_fold_precomputes_constant_subgraphs():
    c = np.arange(3, dtype=np.float32)
    _, after = run_pass("fold", lambda x: x + dg.exp(dg.tensor(c) * 2.0), dg.ones(3))
    assert "exp(" not in after and "mul(" not in after and "add(%x, const:f32[3])" in after


@pytest.mark.parametrize("fn, gone", [
    (lambda x: x * 1, "mul("), (lambda x: 1 * x, "mul("), (lambda x: x + 0, "add("), (lambda x: x - 0, "sub("),
    (lambda x: x / 1, "div("), (lambda x: -(-x), "neg("), (lambda x: x ** 1, "pow("),
    (lambda x: x.T.T, "transpose("), (lambda x: x.astype("float32"), "cast("),
])
def test_simplify_identities(fn, gone):
    x = dg.randn(2, 3)
    before, after = run_pass("simplify", fn, x)
    after = text(P.dce(P.simplify(traced(fn, x))))
    assert gone not in after
    assert np.allclose(dg.function(fn)(x).numpy(), fn(x).numpy())


def test_simplify_reshape_chain_and_gathered_scalars():
    x = dg.randn(2, 6)
    g = P.dce(P.simplify(traced(lambda x: x.reshape(3, 4).reshape(4, 3).reshape(12), x)))
    assert text(g).count("reshape(") == 1
    g = P.dce(P.simplify(traced(lambda x: 2.0 * (3.0 * x), x)))
    assert text(g).count("mul(") == 1 and "6.0" in text(g)


def test_simplify_transpose_of_matmul():
    a, b = dg.randn(2, 3), dg.randn(3, 4)
    g = P.dce(P.simplify(traced(lambda a, b: (a.T.T @ b).T, a, b)))
    t = text(g)
    assert "matmul" in t
    f = dg.function(lambda a, b: (a @ b).T)
    assert np.allclose(f(a, b).numpy(), (a @ b).T.numpy(), atol=1e-6)


def test_fuse_makes_one_kernel_of_an_elementwise_chain():
    x = dg.randn(100)
    fn = lambda x: dg.tanh(x * 2.0 + 1.0) * x  # noqa: E731
    before, after = run_pass("fuse", fn, x)
    assert before.count(" = ") == 4
    assert after.count("fused_elementwise(") == 1 and "body:" in after
    g = P.optimize(traced(fn, x), ("fuse",))
    assert np.allclose(compile_graph(g)(x.numpy())[0], fn(x).numpy(), atol=1e-6)


def test_lower_math_rewrites_one_plus_tanh_and_small_powers_before_fusion():
    x = dg.randn(1000) * 30
    fn = lambda x: 0.5 * x * (1 + dg.tanh(0.7978845608 * (x + 0.044715 * x ** 3)))  # noqa: E731
    assert "tanh" in text(P.optimize(traced(fn, x), ("fuse",)))  # fuse only fuses
    g = P.optimize(traced(fn, x), ("lower_math", "simplify", "dce", "fuse"))
    assert "tanh" not in text(g) and "exp(" in text(g) and "pow(" not in text(g)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow warnings from exp of large values
        assert np.allclose(compile_graph(g)(x.numpy())[0], fn(x).numpy(), atol=1e-5, rtol=1e-5)
    # x**2 and x**3 become the products pow's forward computes: bit-identical
    xs = dg.tensor(np.array([1.1, -3.3, 1e20, np.nan, -0.0], np.float32))
    for p in (2, 3, 2.0):
        g = P.optimize(traced(lambda x: x ** p, xs), ("lower_math",))
        assert "pow(" not in text(g) and "mul(" in text(g)
        with np.errstate(over="ignore"):
            assert compile_graph(g)(xs.numpy())[0].tobytes() == (xs ** p).numpy().tobytes()


def _mlp_step_graph(passes=None, disable=()):
    rng = np.random.default_rng(0)
    x = dg.tensor(rng.standard_normal((8, 6)).astype(np.float32))
    t = dg.tensor(rng.integers(0, 4, 8))
    w1 = dg.tensor(rng.standard_normal((6, 5)).astype(np.float32), requires_grad=True)
    b1 = dg.tensor(np.zeros(5, np.float32), requires_grad=True)
    w2 = dg.tensor(rng.standard_normal((5, 4)).astype(np.float32), requires_grad=True)

    def step(x, t):
        loss = dg.nn.functional.cross_entropy(dg.relu(x @ w1 + b1) @ w2, t)
        loss.backward()
        return loss, w1.grad, b1.grad, w2.grad
    f = dg.function(step, passes=passes, disable=disable)
    return f, (x, t)


def test_lower_kernels_shows_its_kernel_ops_in_the_graph_and_can_be_switched_off():
    from dualgraph.kernels import native
    f, args = _mlp_step_graph()
    on = str(f.graph(*args))
    expected = ["log_softmax_nll(", "nll_log_softmax_grad(", "copy("]
    expected += ["where_colsum("] if native.available() else ["where_zero("]
    for name in expected:
        assert name in on, name
    names = [n for n, _, _ in f.explain_passes(*args)]
    assert names[-1] == "lower_kernels"
    off, off_args = _mlp_step_graph(disable=("lower_kernels",))
    text_off = str(off.graph(*off_args))
    for name in expected:
        assert name not in text_off
    assert "log_softmax(" in text_off and "nll_loss(" in text_off and "where(" in text_off
    for a, b in zip(f(*args), off(*off_args)):
        assert np.allclose(a.numpy(), b.numpy(), atol=1e-6)
    # passes= without it: the graph the other passes make
    few, few_args = _mlp_step_graph(passes=("fold", "dce"))
    assert "log_softmax_nll(" not in str(few.graph(*few_args))


def test_lower_kernels_keeps_cpu_loops_off_other_devices():
    f, args = _mlp_step_graph(passes=P.EXPORT)
    g = f.graph(*args)
    g.meta["device"] = "gpu:0"
    t = text(P.optimize(g, ("lower_kernels",)))
    assert "log_softmax_nll(" not in t and "where_colsum(" not in t and "matmul_t(" not in t
    assert "where_zero(" in t  # backend-neutral: it runs on any xp
    g.meta["device"] = "cpu"
    assert "log_softmax_nll(" in text(P.optimize(g, ("lower_kernels",)))


def test_transposed_matmul_is_one_kernel_op_written_c_ordered():
    a, b = dg.randn(5, 3), dg.randn(3, 4)
    g = P.optimize(traced(lambda a, b: (a @ b).T * 2.0, a, b), ("lower_kernels",))
    assert "matmul_t(" in text(g) and "transpose(" not in text(g)
    got = compile_graph(g)(a.numpy(), b.numpy())[0]
    assert np.allclose(got, (a.numpy() @ b.numpy()).T * 2.0, atol=1e-6)


def test_passes_can_be_switched_off_and_shown():
    f = dg.function(lambda x: dg.exp(x) * 1 + 0, disable=("simplify", "fuse"))
    x = dg.ones(2)
    assert "mul(" in str(f.graph(x))
    log = dg.function(lambda x: dg.exp(x) * 1 + 0).explain_passes(x)
    names = [n for n, _, _ in log]
    assert names == list(P.DEFAULT)
    simp = next((b, a) for n, b, a in log if n == "simplify")  # the first of its two runs
    assert "mul(" in simp[0] and "mul(" not in simp[1]
    with pytest.raises(ValueError, match="unknown pass"):
        dg.function(lambda x: x, disable=("nope",))


def sample_fn(x, w, b):
    h = dg.relu(x @ w + b) * 1.0
    h = h + 0.0
    y = dg.softmax(h, axis=-1) + dg.sigmoid(h) * dg.sigmoid(h)
    z = y.T.T.reshape(-1).reshape(y.shape)
    return (z * dg.tensor(2.0) * 3.0).sum(axis=0), dg.tanh(z).mean()


@pytest.mark.parametrize("off", [None] + list(P.DEFAULT))
def test_each_pass_off_equals_all_on_equals_eager(off):
    rng = np.random.default_rng(0)
    x, w, b = (dg.tensor(rng.standard_normal(s).astype(np.float32)) for s in [(4, 3), (3, 5), (5,)])
    expected = sample_fn(x, w, b)
    f = dg.function(sample_fn, disable=() if off is None else (off,))
    got = f(x, w, b)
    for a, e in zip(got, expected):
        assert np.allclose(a.numpy(), e.numpy(), atol=1e-5)
    g = f.traced_graph(x, w, b)
    ref = interpret(g, [x.numpy(), w.numpy(), b.numpy()])
    for a, e in zip(ref, expected):
        assert np.allclose(a, e.numpy(), atol=1e-5)


def test_fused_kernel_on_big_arrays_matches_eager_including_inf_and_nan():
    from dualgraph.kernels import ckernel
    rng = np.random.default_rng(0)
    xn = (rng.standard_normal(ckernel.MIN_SIZE + 5) * 5).astype(np.float32)
    xn[:6] = [np.nan, np.inf, -np.inf, -200.0, 200.0, 0.0]
    x = dg.tensor(xn)

    def fn(x):
        return 0.5 * x * (1 + dg.tanh(0.7978845608 * (x + 0.044715 * x ** 3))) + dg.exp(x * 0.01) / (x * x + 1)
    with np.errstate(all="ignore"):
        expected = fn(x).numpy()
        got = dg.function(fn)(x).numpy()
    assert got.dtype == expected.dtype
    assert np.allclose(got, expected, atol=1e-5, rtol=1e-5, equal_nan=True)


def test_fused_kernel_without_a_compiler_falls_back(monkeypatch):
    from dualgraph.kernels import ckernel, native
    monkeypatch.setattr(native, "_COMPILER", [None])
    x = dg.randn(ckernel.MIN_SIZE + 1)
    fn = lambda x: dg.exp(x * 0.5) + x * 3.0  # noqa: E731
    assert np.allclose(dg.function(fn)(x).numpy(), fn(x).numpy(), atol=1e-6)


def test_fuse_alone_leaves_a_dead_chain_unfused():
    # fuse no longer runs dce itself: a chain nothing reads (dce switched off) must not become a
    # fused node without outputs (its kernel would have nothing to compute)
    x = dg.randn(50)
    fn = lambda x: (dg.exp(dg.sin(x) * 2.0), x + 1.0)[1]  # noqa: E731
    g = P.optimize(traced(fn, x), ("fuse",))
    assert "fused_elementwise(" not in text(g) and "exp(" in text(g)
    assert np.allclose(compile_graph(g)(x.numpy())[0], x.numpy() + 1.0)
    f = dg.function(fn, disable=("dce",))
    assert np.allclose(f(x).numpy(), x.numpy() + 1.0)


@pytest.mark.parametrize("shape,copied", [((8, 8), True), ((5, 13), False)])
def test_lower_kernels_copies_fills_up_to_64_elements_and_keeps_larger_ones(shape, copied):
    # at most SMALL_FILL elements: a copy of a constant filled once; one more: the fill itself
    from dualgraph.function.passes.lower_kernels import SMALL_FILL
    assert SMALL_FILL == 64
    f = dg.function(lambda x: dg.full_like(x, 3.0))
    x = dg.tensor(np.arange(np.prod(shape), dtype=np.float32).reshape(shape))
    g = text(f.graph(x))
    assert ("copy(" in g and "full_like(" not in g) == copied
    assert ("full_like(" in g) == (not copied)
    for _ in range(2):   # the constant is copied: what one call returns never aliases the next
        out = f(x)
        np.testing.assert_array_equal(out.numpy(), np.full(shape, 3.0, np.float32))
        out.numpy()[...] = -1.0
