"""ONNX export with dynamic axes keeps sizes read from an input's shape symbolic: `x.shape[1]` /
`x.size(1)` used in dg.arange, reshape/view, slicing (of inputs and of buffers), dg.zeros/ones/full and
arithmetic become Shape/Gather/Range/Concat/Slice/Expand nodes computed from the input at run time, so
the model is right at sizes other than the traced ones (checked in onnxruntime against eager dualgraph).
Where a size cannot stay symbolic (Python control flow, math, numpy on it), export refuses and names
the user's line and the axis instead of writing a model that is only right at the traced size.

PYTEST_DONT_REWRITE: the models here use `assert` on sizes, which export reads from the bytecode of a
plain `assert` statement (pytest's rewriting of test modules would change it)."""
import math

import numpy as np
import pytest

import dualgraph as dg
import dualgraph.nn as nn
import dualgraph.nn.functional as F
import dualgraph.onnx as dgo

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


def run(model, feeds):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def ops(model):
    return [n.op_type for n in model.graph.node]


def check_at(model, f, shapes, make=lambda s: dg.randn(*s), name="x", atol=1e-5):
    """onnxruntime at each shape == eager dualgraph at that shape."""
    onnx.checker.check_model(model, full_check=True)
    for shape in shapes:
        x = make(shape)
        (got,) = run(model, {name: x.numpy()})
        want = f(x).numpy()
        assert got.shape == want.shape, (shape, got.shape, want.shape)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=atol, err_msg=str(shape))


BT = {"x": {0: "B", 1: "T"}}


# ---- positions: dg.arange of a size read from the shape ------------------------------------------------

@pytest.mark.parametrize("read", ["shape", "size", "unpack"])
def test_positional_arange_follows_the_input_length(read):
    def f(x):
        if read == "shape":
            t = x.shape[1]
        elif read == "size":
            t = x.size(1)
        else:
            _, t = x.shape
        return x + dg.arange(0, t).float()
    model = dgo.export(f, (dg.randn(2, 7),), None, input_names=["x"], dynamic_axes=BT)
    assert "Range" in ops(model)
    check_at(model, f, [(2, 7), (3, 5), (1, 11)])
    # the eager values the model must give at (3, 5), by hand
    (got,) = run(model, {"x": np.zeros((3, 5), np.float32)})
    np.testing.assert_array_equal(got, np.tile(np.arange(5, dtype=np.float32), (3, 1)))


@pytest.mark.parametrize("case", ["one_arg", "step", "down", "offset", "float_dtype"])
def test_arange_forms(case):
    fns = {
        "one_arg": lambda x: x + dg.arange(x.shape[1]).float(),
        "step": lambda x: x[:, ::2] + dg.arange(0, x.shape[1], 2).float(),
        "down": lambda x: x * dg.arange(x.shape[1] - 1, -1, -1).float(),
        "offset": lambda x: x[:, 2:] + dg.arange(2, x.shape[1]).float(),
        "float_dtype": lambda x: x + dg.arange(x.shape[1], dtype=dg.float32),
    }
    f = fns[case]
    model = dgo.export(f, (dg.randn(2, 7),), None, input_names=["x"], dynamic_axes=BT, verify=True)
    assert "Range" in ops(model)
    check_at(model, f, [(3, 5), (1, 12), (2, 4)])


def test_arange_inside_dg_function_with_symbolic_dims_runs_at_every_size():
    # the same traced graph (one trace, dims symbolic) serves every length, eager values exactly
    calls = []

    @dg.function(input_signature=[dg.TensorSpec((None, None), "float32")])
    def f(x):
        calls.append(1)
        return x + dg.arange(0, x.size(1)).float() * (x.shape[1] // 2)
    for b, t in [(2, 7), (3, 5), (1, 12)]:
        x = dg.randn(b, t)
        want = x.numpy() + np.arange(t, dtype=np.float32) * (t // 2)
        np.testing.assert_allclose(f(x).numpy(), want, rtol=1e-6)
    assert len(calls) == 1


# ---- creation and slicing from sizes ---------------------------------------------------------------------

@pytest.mark.parametrize("case", ["zeros", "ones", "full", "full_int", "returned"])
def test_filled_tensors_of_a_size_read_from_the_shape(case):
    fns = {
        "zeros": lambda x: x + dg.zeros((x.shape[0], x.shape[1])),
        "ones": lambda x: x * dg.ones(x.shape[0], x.shape[1]) * 3,
        "full": lambda x: x - dg.full((x.shape[0], x.shape[1]), 2.5),
        "full_int": lambda x: x + dg.full((x.size(1),), 4).float(),
        "returned": lambda x: dg.zeros(x.shape[1], x.shape[0]) + 1,
    }
    f = fns[case]
    model = dgo.export(f, (dg.randn(2, 7),), None, input_names=["x"], dynamic_axes=BT, verify=True)
    assert "Expand" in ops(model)
    check_at(model, f, [(3, 5), (1, 11)])


@pytest.mark.parametrize("case", ["eye", "eye_rect", "full_of_a_size"])
def test_eye_and_a_size_as_fill_value(case):
    fns = {
        "eye": lambda x: x @ dg.eye(x.shape[1]),
        "eye_rect": lambda x: x + dg.eye(x.shape[0], x.shape[1]),
        "full_of_a_size": lambda x: x * dg.full((x.shape[0], 1), x.shape[1]),
    }
    f = fns[case]
    model = dgo.export(f, (dg.randn(2, 7),), None, input_names=["x"], dynamic_axes=BT, verify=True)
    check_at(model, f, [(3, 5), (1, 11)])


def test_random_tensors_of_a_dynamic_size_are_drawn_at_run_time():
    def f(x):
        return x + dg.randn(x.shape[0], x.shape[1]) + dg.rand(x.shape[0], x.shape[1])
    model = dgo.export(f, (dg.randn(2, 7),), None, input_names=["x"], dynamic_axes=BT)
    kinds = ops(model)
    assert "RandomNormalLike" in kinds and "RandomUniformLike" in kinds
    (got,) = run(model, {"x": np.zeros((300, 400), np.float32)})
    assert got.shape == (300, 400) and abs(float(got.mean()) - 0.5) < 0.015 and abs(float(got.std()) - 1.041) < 0.015

    # traced with the dims symbolic, random draws are not zeros (a fill of the traced shape)
    cf = dg.function(lambda x: x + dg.randn(x.shape[0], x.shape[1]),
                     input_signature=[dg.TensorSpec((None, None), "float32")])
    y = cf(dg.zeros(200, 300)).numpy()
    assert y.shape == (200, 300) and abs(float(y.std()) - 1.0) < 0.02
    # randint of a dynamic size: integers drawn by the graph at run time, in range and of every value
    model = dgo.export(lambda x: x + dg.randint(0, 3, (x.shape[0], 1)).float(), (dg.randn(2, 7),), None,
                       input_names=["x"], dynamic_axes=BT)
    (got,) = run(model, {"x": np.zeros((3000, 5), np.float32)})
    assert got.shape == (3000, 5) and set(np.unique(got)) == {0.0, 1.0, 2.0}
    assert (got == got[:, :1]).all()  # one draw per row, broadcast along the columns


def test_filled_tensor_when_two_dynamic_axes_share_the_traced_size():
    # traced square, run oblong: the created tensor must follow each axis, not the traced number
    def f(x):
        return x + dg.zeros((x.shape[0], x.shape[1])) + dg.arange(x.shape[1]).float()
    model = dgo.export(f, (dg.randn(4, 4),), None, input_names=["x"], dynamic_axes=BT)
    check_at(model, f, [(2, 5), (6, 3)])


@pytest.mark.parametrize("case", ["prefix", "drop_last", "second_half", "last_k", "step"])
def test_slices_with_bounds_read_from_the_shape(case):
    fns = {
        "prefix": lambda x: x[:, :x.shape[1]] * 2,
        "drop_last": lambda x: x[:, :x.shape[1] - 1],
        "second_half": lambda x: x[:, x.shape[1] // 2:],
        "last_k": lambda x: x[:, -(x.shape[1] // 2):],
        "step": lambda x: x[:, 1:x.shape[1] - 1:2],
    }
    f = fns[case]
    model = dgo.export(f, (dg.randn(2, 7),), None, input_names=["x"], dynamic_axes=BT, verify=True)
    assert "Slice" in ops(model)
    check_at(model, f, [(3, 5), (1, 12), (2, 8)])


def test_ceil_division_of_a_size_is_floor_division_in_the_model():
    # -(-a // b) is ceil(a / b): its inner division is of a negative number, which ONNX's Div truncates
    def f(x):
        t = x.shape[1]
        return x[:, t // 4:-(-(t * 3) // 4)]
    model = dgo.export(f, (dg.randn(2, 7),), None, input_names=["x"], dynamic_axes=BT, verify=True)
    check_at(model, f, [(2, 7), (3, 5), (1, 13), (2, 2)])


def test_a_size_bound_past_the_end_of_its_axis_is_refused():
    # numpy clips the stop (9 on an axis of 7): the traced length is not stop - start at other sizes
    def f(x):
        t = x.shape[1]
        return x[:, (t * 3) // 4:-(-(t * 5) // 4)]
    with pytest.raises(dgo.ExportError, match=r"getitem at .*test_onnx_dynamic_sizes.py:\d+ holds a size"):
        dgo.export(f, (dg.randn(2, 7),), None, input_names=["x"], dynamic_axes=BT)


def test_adaptive_avg_pool_with_dynamic_spatial_axes():
    # its cells are [floor(i*H/oh), ceil((i+1)*H/oh)): wrong even at the traced sizes when ceil truncated
    def f(x):
        return dg.adaptive_avg_pool2d(x, (2, 3))
    model = dgo.export(f, (dg.randn(3, 2, 7, 5),), None, input_names=["x"],
                       dynamic_axes={"x": {0: "B", 2: "H", 3: "W"}}, verify=True)
    check_at(model, f, [(3, 2, 7, 5), (1, 2, 9, 8), (2, 2, 4, 11)])


def test_arithmetic_on_sizes_is_computed_in_the_model():
    def f(x):
        b, t = x.shape
        h = x[:, :(t // 2) * 2].reshape(b, t // 2, 2).sum(axis=2) * (t - 1)   # odd t drops its last column
        return h.reshape(b * (t // 2)) / (t * 2)               # b * (t // 2), t * 2
    model = dgo.export(f, (dg.randn(3, 8),), None, input_names=["x"], dynamic_axes=BT, verify=True)
    check_at(model, f, [(2, 4), (5, 11), (1, 2)])


def test_element_count_and_sizes_used_as_numbers_read_the_input_shape():
    def f(x):
        return x.sum() / x.numel() + x[:, 0] * x.shape[1]
    model = dgo.export(f, (dg.randn(3, 7),), None, input_names=["x"], dynamic_axes=BT, verify=True)
    kinds = ops(model)
    assert "Expand" not in kinds and kinds.count("Gather") >= 2   # Shape -> Gather, no tensor of ones
    check_at(model, f, [(2, 5), (6, 11)])


# ---- a GPT-style block ----------------------------------------------------------------------------------

class Block(nn.Module):
    """Token + position embedding, causal self-attention with heads, output projection."""

    def __init__(self, vocab=11, block_size=16, n_embd=8, n_head=2, mask="buffer"):
        super().__init__()
        self.tok = nn.Embedding(vocab, n_embd)
        self.pos = nn.Embedding(block_size, n_embd)
        self.qkv = nn.Linear(n_embd, 3 * n_embd)
        self.proj = nn.Linear(n_embd, n_embd)
        self.head = nn.Linear(n_embd, vocab)
        self.n_head, self.mask_kind, self.block_size = n_head, mask, block_size
        self.register_buffer("tril", dg.tensor(np.tril(np.ones((block_size, block_size), np.float32))))

    def forward(self, idx):
        B, T = idx.shape
        assert T <= self.block_size, f"sequence of {T} is longer than the block size {self.block_size}"
        pos = dg.arange(0, T)
        x = self.tok(idx) + self.pos(pos)
        C = x.shape[-1]
        q, k, v = self.qkv(x).split(C, dim=2)
        hd = C // self.n_head
        q = q.reshape(B, T, self.n_head, hd).transpose(1, 2)
        k = k.view(B, T, self.n_head, hd).transpose(1, 2)
        v = v.reshape(B, T, self.n_head, hd).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hd))
        if self.mask_kind == "buffer":
            causal = self.tril[:T, :T] == 0
        else:
            causal = dg.arange(T)[None, :] > dg.arange(T)[:, None]
        att = dg.where(causal, -1e9, att)
        att = F.softmax(att, dim=-1)
        y = (att @ v).transpose(1, 2).reshape(B, T, C)
        return self.head(self.proj(y))


@pytest.mark.parametrize("mask", ["buffer", "arange"])
def test_gpt_block_exported_at_one_length_runs_at_others(mask):
    dg.manual_seed(0)
    model = Block(mask=mask)
    idx = dg.randint(0, 11, (2, 7))
    onx = dgo.export(model, (idx,), None, input_names=["idx"], output_names=["logits"],
                     dynamic_axes={"idx": {0: "B", 1: "T"}, "logits": {0: "B", 1: "T"}}, verify=True)
    onnx.checker.check_model(onx, full_check=True)
    kinds = ops(onx)
    assert "Range" in kinds and "Shape" in kinds
    out = onx.graph.output[0].type.tensor_type.shape.dim
    assert [d.dim_param for d in out[:2]] == ["B", "T"]
    for b, t in [(3, 5), (1, 11), (2, 16)]:
        x = dg.randint(0, 11, (b, t))
        (got,) = run(onx, {"idx": x.numpy()})
        want = model(x).numpy()
        assert got.shape == (b, t, 11)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_gpt_block_matches_pytorch_at_another_length():
    torch = pytest.importorskip("torch")
    dg.manual_seed(1)
    model = Block()
    onx = dgo.export(model, (dg.randint(0, 11, (2, 7)),), None, input_names=["idx"],
                     dynamic_axes={"idx": {0: "B", 1: "T"}})
    x = dg.randint(0, 11, (3, 5))
    (got,) = run(onx, {"idx": x.numpy()})
    p = {k: torch.tensor(v.numpy()) for k, v in model.state_dict().items()}
    t = torch.tensor(x.numpy())
    B, T = t.shape
    h = p["tok.weight"][t] + p["pos.weight"][torch.arange(T)]
    q, k, v = (h @ p["qkv.weight"].T + p["qkv.bias"]).split(8, dim=2)
    q, k, v = (z.reshape(B, T, 2, 4).transpose(1, 2) for z in (q, k, v))
    att = (q @ k.transpose(-2, -1)) / math.sqrt(4)
    att = att.masked_fill(torch.tril(torch.ones(T, T)) == 0, -1e9).softmax(-1)
    y = (att @ v).transpose(1, 2).reshape(B, T, 8)
    want = (y @ p["proj.weight"].T + p["proj.bias"]) @ p["head.weight"].T + p["head.bias"]
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-4, atol=1e-5)


# ---- refusals ---------------------------------------------------------------------------------------------

def _branch(x):
    if x.shape[1] > 5:
        return x * 2
    return x


def _loop(x):
    return sum(x[:, i] for i in range(x.size(1)))


def _equal(x):
    return x * 2 if x.shape[1] == 7 else x


def _math(x):
    return x / math.sqrt(x.shape[1])


def _numpy_array(x):
    return x + dg.tensor(np.arange(x.shape[1], dtype=np.float32))


def _list_length(x):
    return x * dg.tensor([1.0] * x.shape[1])


def _len(x):
    return sum(x[:, i] for i in range(len(x.transpose(0, 1))))


@pytest.mark.parametrize("f", [_branch, _loop, _equal, _math, _numpy_array, _list_length, _len],
                         ids=lambda f: f.__name__)
def test_python_use_of_a_dynamic_size_is_refused_at_the_users_line(f):
    import inspect
    lines, first = inspect.getsourcelines(f)
    with pytest.raises(dgo.ExportError) as e:
        dgo.export(f, (dg.randn(2, 7),), None, input_names=["x"], dynamic_axes=BT)
    msg = str(e.value)
    assert "dynamic axis 'T' (input 'x', axis 1, traced at 7) is used as a Python number" in msg
    assert f"test_onnx_dynamic_sizes.py:{first + 1}" in msg
    # the same function with the axis static exports (and is right at the traced size)
    model = dgo.export(f, (dg.randn(2, 7),), None, input_names=["x"], dynamic_axes={"x": {0: "B"}})
    check_at(model, f, [(3, 7)])


def test_a_size_frozen_inside_an_op_is_refused():
    # chunk computes its pieces' sizes in Python: traced again one longer, the slice bound moved
    def f(x):
        return x.chunk(2, dim=1)[0] * 2
    with pytest.raises(dgo.ExportError, match=r"getitem at .* holds a size of the dynamic axes"):
        dgo.export(f, (dg.randn(2, 6),), None, input_names=["x"], dynamic_axes=BT)
    # along the batch axis chunk's sizes do not move: exported, right at another batch size
    model = dgo.export(f, (dg.randn(2, 6),), None, input_names=["x"], dynamic_axes={"x": {0: "B"}})
    check_at(model, f, [(5, 6)])


def test_an_assert_on_a_dynamic_size_is_taken_as_given_and_checked_at_the_traced_size():
    def f(x):
        assert x.shape[1] <= 16, "too long"
        return x + dg.arange(x.shape[1]).float()
    model = dgo.export(f, (dg.randn(2, 7),), None, input_names=["x"], dynamic_axes=BT)
    check_at(model, f, [(3, 5), (1, 16)])
    with pytest.raises(AssertionError, match="too long"):   # false at the example's sizes: as eagerly
        dgo.export(f, (dg.randn(2, 17),), None, input_names=["x"], dynamic_axes=BT)

    def g(x):   # a comparison kept in a variable is control flow, not an assert statement
        short = x.shape[1] <= 16
        assert short
        return x
    with pytest.raises(dgo.ExportError, match=r"'T' .* is used as a Python number at .*comparing with 16"):
        dgo.export(g, (dg.randn(2, 7),), None, input_names=["x"], dynamic_axes=BT)


def test_symbolic_dims_in_dg_function_refuse_python_control_flow_at_the_line():
    @dg.function(input_signature=[dg.TensorSpec((None, None), "float32")])
    def f(x):
        if x.shape[1] == 7:
            return x * 2
        return x
    with pytest.raises(dg.DualgraphError, match=r"comparing with 7 \(==\) needs the size .* at .*"
                                                r"test_onnx_dynamic_sizes.py:\d+"):
        f(dg.randn(2, 7))
    # without a signature, a new shape retraces with symbolic dims, which fails: one trace per shape
    g = dg.function(_equal)
    for t in (7, 5, 7):
        x = dg.randn(2, t)
        np.testing.assert_allclose(g(x).numpy(), _equal(x).numpy())
