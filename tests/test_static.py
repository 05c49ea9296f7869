"""dg.static: placeholders, Variables, Session.run, gradients, optimizers, errors, printing, export."""
import numpy as np
import pytest

import dualgraph as dg
import dualgraph.static as st


@pytest.fixture(autouse=True)
def fresh_default_graph():
    st.reset_default_graph()
    yield
    st.reset_default_graph()


def test_seed_example_y_equals_x_squared_plus_two():
    x = st.placeholder(dg.float32)        # TensorFlow 1 argument order, no explicit graph
    y = x * x + 2
    with st.Session() as sess:
        assert sess.run(y, feed_dict={x: 3}) == 11.0
        assert sess.run(y, feed_dict={x: -1.5}) == pytest.approx(4.25)


def test_fetches_single_list_and_dict_come_back_as_numpy():
    g = st.Graph()
    with g.as_default():
        a = st.placeholder((None, 2), "float32", name="a")
        s = dg.sum(a, axis=1)
        m = dg.max(a)
    feed = {a: np.array([[1, 2], [3, 5]], np.float32)}
    with st.Session(g) as sess:
        out = sess.run(s, feed)
        assert isinstance(out, np.ndarray) and out.tolist() == [3, 8]
        lst = sess.run([s, m], feed)
        assert isinstance(lst, list) and lst[1] == 5
        d = sess.run({"sum": s, "max": m}, feed)
        assert set(d) == {"sum", "max"} and d["sum"].tolist() == [3, 8]
        tup = sess.run((m,), feed)
        assert isinstance(tup, tuple)


def test_ops_functional_and_modules_build_the_same_ir_as_dg_function():
    g = st.Graph()
    with g.as_default():
        x = st.placeholder((None, 4), name="x")
        h = dg.nn.functional.relu(x) * 2.0
        y = dg.softmax(h, axis=-1)
    text = str(g)
    assert "relu(%x)" in text and "placeholder" not in text.split("{")[0] or "%x: f32[x_0,4]" in text
    xs = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    with st.Session(g) as sess:
        got = sess.run(y, {x: xs})
    e = np.exp(np.maximum(xs, 0) * 2)
    np.testing.assert_allclose(got, e / e.sum(-1, keepdims=True), rtol=1e-5)


def test_a_module_runs_inside_a_static_graph():
    dg.manual_seed(0)
    model = dg.nn.Sequential(dg.nn.Linear(4, 8), dg.nn.ReLU(), dg.nn.Linear(8, 2))
    g = st.Graph()
    with g.as_default():
        x = st.placeholder((None, 4), name="x")
        y = model(x)
    xs = np.random.default_rng(1).standard_normal((5, 4)).astype(np.float32)
    with st.Session(g) as sess:
        got = sess.run(y, {x: xs})
    np.testing.assert_allclose(got, model(dg.tensor(xs)).numpy(), rtol=1e-5, atol=1e-6)


def test_graph_is_pruned_per_fetch_and_compiled_once():
    g = st.Graph()
    with g.as_default():
        a = st.placeholder((3,), name="a")
        b = st.placeholder((3,), name="b")
        ya = dg.exp(a)
        yb = dg.log(b)
    with st.Session(g) as sess:
        sess.run(ya, {a: np.zeros(3, np.float32)})  # b need not be fed
        compiled = sess.compiled_graph(ya)
        assert "log" not in str(compiled) and [v.name for v in compiled.inputs] == ["a"]
        assert sess.compiled_graph(ya) is compiled  # cached
        with pytest.raises(st.StaticGraphError, match="'b'"):
            sess.run(yb, {a: np.zeros(3, np.float32)})


def test_feed_errors_name_the_placeholder_and_shapes():
    g = st.Graph()
    with g.as_default():
        x = st.placeholder((None, 3), "float32", name="images")
        y = x * 2
    with st.Session(g) as sess:
        with pytest.raises(st.StaticGraphError, match=r"'images'.*\(None, 3\).*\(2, 4\)"):
            sess.run(y, {x: np.zeros((2, 4))})
        with pytest.raises(st.StaticGraphError, match=r"'images'.*float32.*bool"):
            sess.run(y, {x: np.zeros((2, 3), bool)})
        with pytest.raises(st.StaticGraphError, match="images"):
            sess.run(y)
        assert sess.run(y, {x: np.ones((2, 3), np.float64)}).dtype == np.float32  # same-kind feeds cast


def test_fetching_from_another_graph_is_an_error():
    g1, g2 = st.Graph(), st.Graph()
    with g1.as_default():
        x1 = st.placeholder((), name="x")
        y1 = x1 + 1
    with g2.as_default():
        st.placeholder((), name="x")
    with st.Session(g2) as sess:
        with pytest.raises(st.StaticGraphError, match="another graph"):
            sess.run(y1, {x1: 1.0})


def test_values_are_not_available_while_building():
    x = st.placeholder((2,), name="x")
    with pytest.raises(st.StaticGraphError, match="sess.run"):
        float(x.sum())


def test_gradients_match_hand_derived_values():
    g = st.Graph()
    with g.as_default():
        x = st.placeholder((3,), name="x")
        w = st.Variable(np.array([1.0, 2.0, 3.0], np.float32), name="w")
        y = dg.sum(w * x * x)
        gw, gx = st.gradients(y, [w, x])
    xs = np.array([1.0, -2.0, 0.5], np.float32)
    with st.Session(g) as sess:
        vgw, vgx = sess.run([gw, gx], {x: xs})
    np.testing.assert_allclose(vgw, xs * xs)
    np.testing.assert_allclose(vgx, 2 * np.array([1.0, 2.0, 3.0]) * xs)


def test_assign_ops_update_variables_and_reads_see_the_new_state():
    g = st.Graph()
    with g.as_default():
        counter = st.Variable(np.float32(0.0), name="counter")
        inc = st.assign_add(counter, 1.0)
        reset = st.assign(counter, 0.0)
    with st.Session(g) as sess:
        for _ in range(3):
            sess.run(inc)
        assert sess.run(counter) == 3.0
        sess.run(reset)
        assert sess.run(counter) == 0.0
        sess.run([inc, inc])  # one run applies each distinct update once, from the current state
        assert sess.run(counter) >= 1.0
        sess.run(st.global_variables_initializer(g))
        assert sess.run(counter) == 0.0


def test_training_loop_with_session_fits_linear_regression():
    g = st.Graph()
    with g.as_default():
        X = st.placeholder((None, 3), name="X")
        Y = st.placeholder((None, 1), name="Y")
        w = st.Variable(np.zeros((3, 1), np.float32), name="w")
        b = st.Variable(np.zeros(1, np.float32), name="b")
        loss = dg.mean((X @ w + b - Y) ** 2)
        train = st.train.GradientDescentOptimizer(0.1).minimize(loss)
    rng = np.random.default_rng(0)
    xs = rng.standard_normal((64, 3)).astype(np.float32)
    ys = xs @ np.array([[1.0], [2.0], [-1.0]], np.float32) + 0.5
    with st.Session(g) as sess:
        first = sess.run(loss, {X: xs, Y: ys})
        for _ in range(300):
            _, last = sess.run([train, loss], {X: xs, Y: ys})
        np.testing.assert_allclose(sess.run(w).ravel(), [1, 2, -1], atol=1e-3)
        np.testing.assert_allclose(sess.run(b), [0.5], atol=1e-3)
        # the batch axis is symbolic: the same compiled graph serves another batch size
        assert sess.run(loss, {X: xs[:7], Y: ys[:7]}) < 1e-4
    assert last < first * 1e-4


def test_gradient_descent_step_equals_hand_computed_update():
    g = st.Graph()
    with g.as_default():
        w = st.Variable(np.array([1.0, -2.0], np.float32), name="w")
        loss = dg.sum(w * w)
        step = st.train.GradientDescentOptimizer(0.25).minimize(loss)
    with st.Session(g) as sess:
        sess.run(step)
        np.testing.assert_allclose(sess.run(w), [1.0 - 0.25 * 2.0, -2.0 + 0.25 * 4.0])


def test_adam_and_momentum_match_reference_formulas():
    g = st.Graph()
    with g.as_default():
        w = st.Variable(np.array([0.5, -1.0], np.float32), name="w")
        v = st.Variable(np.array([0.5, -1.0], np.float32), name="v")
        adam = st.train.AdamOptimizer(0.1).minimize(dg.sum(w * w), var_list=[w])
        mom = st.train.MomentumOptimizer(0.1, 0.9).minimize(dg.sum(v * v), var_list=[v])
    ref_w, m, s = np.array([0.5, -1.0]), np.zeros(2), np.zeros(2)
    ref_v, acc = np.array([0.5, -1.0]), np.zeros(2)
    with st.Session(g) as sess:
        for t in range(1, 4):
            sess.run([adam, mom])
            gr = 2 * ref_w
            m = 0.9 * m + 0.1 * gr
            s = 0.999 * s + 0.001 * gr * gr
            ref_w = ref_w - 0.1 * np.sqrt(1 - 0.999 ** t) / (1 - 0.9 ** t) * m / (np.sqrt(s) + 1e-8)  # TF1's form
            acc = 0.9 * acc + 2 * ref_v
            ref_v = ref_v - 0.1 * acc
        np.testing.assert_allclose(sess.run(w), ref_w, rtol=1e-5)
        np.testing.assert_allclose(sess.run(v), ref_v, rtol=1e-5)


def test_printed_ir_and_dot():
    g = st.Graph("seed")
    with g.as_default():
        x = st.placeholder((), name="x")
        y = x * x + 2
    text = str(g)
    assert text.startswith("seed(%x: f32[])")
    assert "mul(%x, %x)" in text and "add(" in text
    dot = g.to_dot()
    assert dot.startswith("digraph") and "mul" in dot
    with st.Session(g) as sess:
        assert sess.run(y, {x: 3.0}) == 11.0


def test_static_graph_exports_to_onnx_and_runs_at_another_batch(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    g = st.Graph()
    with g.as_default():
        x = st.placeholder((None, 3), name="x")
        w = st.Variable(np.arange(6, dtype=np.float32).reshape(3, 2), name="w")
        y = dg.relu(x @ w - 3.0)
    path = tmp_path / "static.onnx"
    dg.onnx.export(g.to_ir(y), (np.ones((2, 3), np.float32),), str(path), input_names=["x"],
                   output_names=["y"], dynamic_axes={"x": {0: "batch"}})
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    xs = np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32)
    got = sess.run(None, {"x": xs})[0]
    np.testing.assert_allclose(got, np.maximum(xs @ np.arange(6).reshape(3, 2) - 3.0, 0), rtol=1e-5)
