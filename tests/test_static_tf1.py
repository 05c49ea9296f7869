"""`import dualgraph.static as tf` runs TensorFlow 1 scripts: the classic tutorials end to end, and each
name checked against TF1's documented behaviour with numpy or hand-derived values (and PyTorch where
installed). TensorFlow itself is not needed."""
import collections
import os

import numpy as np
import pytest

import dualgraph as dg
import dualgraph.static as tf


@pytest.fixture(autouse=True)
def fresh_default_graph():
    tf.reset_default_graph()
    yield
    tf.reset_default_graph()


def _softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


# ---- the classic tutorials --------------------------------------------------------------------------

TRAIN_X = np.asarray([3.3, 4.4, 5.5, 6.71, 6.93, 4.168, 9.779, 6.182, 7.59, 2.167, 7.042, 10.791, 5.313, 7.997,
                      5.654, 9.27, 3.1])
TRAIN_Y = np.asarray([1.7, 2.76, 2.09, 3.19, 1.694, 1.573, 3.366, 2.596, 2.53, 1.221, 2.827, 3.465, 1.65, 2.904,
                      2.42, 2.94, 1.3])


def test_linear_regression_tutorial_reaches_the_least_squares_solution():
    # the TF1 tutorial as written: shapeless "float" placeholders fed one sample at a time for training,
    # then the whole arrays to evaluate the cost (the graph is rebuilt for rank 1 on that run)
    n_samples = TRAIN_X.shape[0]
    X = tf.placeholder("float")
    Y = tf.placeholder("float")
    W = tf.Variable(0.3, name="weight")
    b = tf.Variable(-0.2, name="bias")
    pred = tf.add(tf.multiply(X, W), b)
    cost = tf.reduce_sum(tf.pow(pred - Y, 2)) / (2 * n_samples)
    optimizer = tf.train.GradientDescentOptimizer(0.01).minimize(cost)
    full_batch = tf.train.GradientDescentOptimizer(0.04).minimize(cost)
    init = tf.global_variables_initializer()
    assert X.dtype == np.float32 and W.dtype == np.float32   # "float" and Python floats are float32 in TF1
    slope, intercept = np.polyfit(TRAIN_X, TRAIN_Y, 1)
    with tf.Session() as sess:
        sess.run(init)
        w_ref, b_ref = 0.3, -0.2
        for x, y in zip(TRAIN_X, TRAIN_Y):           # one epoch of per-sample steps, checked by hand
            sess.run(optimizer, feed_dict={X: x, Y: y})
            g = (w_ref * x + b_ref - y) / n_samples
            w_ref, b_ref = w_ref - 0.01 * g * x, b_ref - 0.01 * g
        np.testing.assert_allclose(sess.run([W, b]), [w_ref, b_ref], rtol=1e-4)
        c = sess.run(cost, feed_dict={X: TRAIN_X, Y: TRAIN_Y})
        np.testing.assert_allclose(c, ((w_ref * TRAIN_X + b_ref - TRAIN_Y) ** 2).sum() / (2 * n_samples), rtol=1e-4)
        for _ in range(2000):
            sess.run(full_batch, feed_dict={X: TRAIN_X, Y: TRAIN_Y})
        np.testing.assert_allclose(sess.run(W), slope, atol=2e-3)
        np.testing.assert_allclose(sess.run(b), intercept, atol=2e-2)
        np.testing.assert_allclose(pred.eval(feed_dict={X: 2.0}), 2.0 * sess.run(W) + sess.run(b), rtol=1e-6)


def _blobs(n=300, d=20, k=4, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((k, d)) * 3
    labels = rng.integers(0, k, n)
    return (centers[labels] + rng.standard_normal((n, d))).astype(np.float32), labels


def test_mnist_style_softmax_classifier_with_adam():
    xs, labels = _blobs()
    onehot = np.eye(4, dtype=np.float32)[labels]
    x = tf.placeholder(tf.float32, [None, 20])
    y_ = tf.placeholder(tf.float32, [None, 4])
    W = tf.Variable(tf.zeros([20, 4]))
    b = tf.Variable(tf.zeros([4]))
    y = tf.matmul(x, W) + b
    cross_entropy = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits_v2(labels=y_, logits=y))
    train_step = tf.train.AdamOptimizer(1e-2).minimize(cross_entropy)
    correct = tf.equal(tf.argmax(y, 1), tf.argmax(y_, 1))
    accuracy = tf.reduce_mean(tf.cast(correct, tf.float32))
    sess = tf.InteractiveSession()
    try:
        tf.global_variables_initializer().run()
        # the first step by hand: zero weights give uniform softmax, Adam's first step is -lr * sign(g)
        g = xs[:100].T @ (_softmax(np.zeros((100, 4))) - onehot[:100]) / 100
        train_step.run(feed_dict={x: xs[:100], y_: onehot[:100]})
        np.testing.assert_allclose(W.eval(), -1e-2 * g / (np.abs(g) + 1e-8 * np.sqrt(1 - 0.999)), atol=1e-6)
        for i in range(200):
            batch = slice((i * 50) % 300, (i * 50) % 300 + 50)
            sess.run(train_step, feed_dict={x: xs[batch], y_: onehot[batch]})
        acc = accuracy.eval(feed_dict={x: xs, y_: onehot})
        logits = xs @ W.eval() + b.eval()
        assert acc == pytest.approx(np.mean(logits.argmax(1) == labels)) and acc > 0.95
    finally:
        sess.close()
    assert tf.get_default_session() is None


def test_session_run_returns_the_fetch_structure():
    Pair = collections.namedtuple("Pair", "a b")
    x = tf.placeholder(tf.float32, [2], name="x")
    v = tf.Variable([1.0, 2.0])
    inc = v.assign_add([1.0, 1.0])
    fetches = {"sum": tf.reduce_sum(x), "nest": [x * 2, (v, inc, tf.group(inc))], "pair": Pair(x + 1, {"y": x - 1})}
    with tf.Session() as sess:
        out = sess.run(fetches, feed_dict={"x:0": [1.0, 3.0]})
    assert set(out) == {"sum", "nest", "pair"} and out["sum"] == 4.0
    assert isinstance(out["nest"], list) and isinstance(out["nest"][1], tuple)
    np.testing.assert_array_equal(out["nest"][0], [2.0, 6.0])
    np.testing.assert_array_equal(out["nest"][1][0], [1.0, 2.0])   # fetched values are read before updates
    np.testing.assert_array_equal(out["nest"][1][1], [2.0, 3.0])   # an assign fetches its new value
    assert out["nest"][1][2] is None                                 # other operations fetch as None
    assert isinstance(out["pair"], Pair) and out["pair"].b["y"].tolist() == [0.0, 2.0]
    np.testing.assert_array_equal(v.numpy(), [2.0, 3.0])


# ---- placeholders --------------------------------------------------------------------------------

def test_placeholder_takes_tf_order_and_the_older_shape_first_order():
    a = tf.placeholder(tf.float32, [None, 3], name="a")
    b = tf.placeholder(tf.int64, shape=(2,), name="b")
    c = tf.placeholder(dtype="float64", name="c")
    d = tf.placeholder((None, 3), "float32", name="d")      # dualgraph's older order
    e = tf.placeholder((4,), name="e")
    f = tf.placeholder(tf.float32, [None, np.int64(784)])       # sizes read from numpy shapes
    assert f.get_shape() == (None, 784)
    assert [t.dtype for t in (a, b, c, d, e)] == [np.float32, np.int64, np.float64, np.float32, np.float32]
    assert a.get_shape() == (None, 3) and d.get_shape() == (None, 3) and e.get_shape() == (4,)
    assert c.get_shape() is None                                # shape=None: any shape
    assert a.name == "a:0" and a.op.name == "a"
    with pytest.raises(tf.StaticGraphError, match="not a dtype"):
        tf.placeholder("nonsense", [2])
    with pytest.raises(tf.StaticGraphError, match="give a dtype"):
        tf.placeholder()
    with pytest.raises(tf.StaticGraphError, match="dim 1"):
        tf.placeholder(tf.float32, [2, -3])


def test_shapeless_placeholder_takes_any_rank_and_gradients_follow():
    x = tf.placeholder(tf.float32)
    w = tf.Variable(2.0)
    y = tf.reduce_sum(x * w)
    (gw,) = tf.gradients(y, [w])
    step = tf.train.GradientDescentOptimizer(0.5).minimize(y)
    with tf.Session() as sess:
        assert sess.run(y, {x: 3.0}) == 6.0
        assert sess.run([y, gw], {x: [1.0, 2.0, 4.0]}) == [14.0, 7.0]
        m = np.arange(6, dtype=np.float32).reshape(2, 3)
        assert sess.run(gw, {x: m}) == 15.0
        sess.run(step, {x: m})
        assert w.eval() == pytest.approx(2.0 - 0.5 * 15.0)
        assert sess.run(y, {x: 1.0}) == pytest.approx(-5.5)


def test_shapeless_placeholder_rank_error_points_at_the_shape():
    x = tf.placeholder(tf.float32, name="images")
    with pytest.raises(dg.DualgraphError, match=r"'images'.*declared without a shape.*\[None, 784\]"):
        tf.matmul(x, tf.zeros([3, 2]))
    with pytest.raises(tf.StaticGraphError) as err:       # an error on other inputs gets no such hint
        tf.matmul(tf.zeros([2]), tf.zeros([3, 2]))
    assert "declared without a shape" not in str(err.value)


def test_feed_errors():
    x = tf.placeholder(tf.float32, [None, 2], name="x")
    with tf.Session() as sess:
        with pytest.raises(tf.StaticGraphError, match=r"'x'.*\(None, 2\).*\(3,\)"):
            sess.run(x * 2, {x: np.ones(3)})
        with pytest.raises(tf.StaticGraphError, match="no placeholder named 'z:0'"):
            sess.run(x * 2, {"z:0": np.ones((1, 2))})
        with pytest.raises(tf.StaticGraphError, match="must be fed"):
            sess.run(x * 2)


# ---- dtypes, variables, constants ----------------------------------------------------------------------

def test_dtypes_are_numpy_dtypes():
    assert (tf.float16, tf.float32, tf.float64, tf.int8, tf.int16, tf.int32, tf.int64, tf.uint8, tf.bool) == tuple(
        np.dtype(n) for n in ("float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "bool"))
    assert tf.as_dtype("float") == np.float32 and tf.as_dtype("double") == np.float64
    assert not hasattr(tf, "string")


def test_variable_signature_methods_and_initializer():
    v = tf.Variable([1.0, 2.0], True, "v")          # TF1's positional order: initial_value, trainable, name
    n = tf.Variable(3, trainable=False, name="n")
    assert v.dtype == np.float32 and n.dtype == np.int32 and v.trainable and not n.trainable
    assert v.name == "v:0" and v.op.name == "v" and n.get_shape() == ()
    doubled = v * 2                                  # an operator on a Variable is a graph node
    ops = [v.assign([5.0, 6.0]), v.assign_add([1.0, 1.0]), v.assign_sub([0.5, 0.5]), tf.assign(n, 7)]
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        np.testing.assert_array_equal(sess.run(ops[0]), [5.0, 6.0])
        np.testing.assert_array_equal(sess.run(doubled), [10.0, 12.0])
        assert sess.run(v.assign([5.0, 6.0], read_value=False)) is None
        sess.run(ops[1])
        sess.run(ops[2])
        np.testing.assert_array_equal(v.eval(session=sess), [5.5, 6.5])
        sess.run(ops[3])
        assert n.eval() == 7
        sess.run(v.initializer)
        np.testing.assert_array_equal(v.eval(), [1.0, 2.0])
    with pytest.raises(tf.StaticGraphError, match="shape"):
        v.assign([1.0, 2.0, 3.0])
    with pytest.raises(tf.StaticGraphError, match="needs a session"):
        v.eval()


def test_random_initial_values_are_drawn_again_by_the_initializer():
    tf.set_random_seed(3)
    w = tf.Variable(tf.random_normal([200, 50], mean=1.0, stddev=2.0))
    first = w.numpy().copy()
    assert abs(first.mean() - 1.0) < 0.05 and abs(first.std() - 2.0) < 0.05
    t = tf.Variable(tf.truncated_normal([4000], stddev=0.5))
    assert np.abs(t.numpy()).max() <= 1.0 and abs(t.numpy().std() - 0.5 * 0.8796) < 0.02
    u = tf.random_uniform([5000], minval=-2, maxval=3)
    seeded = tf.random_normal([3], seed=7)
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        assert not np.array_equal(w.eval(), first)       # redrawn, as TF1's initializer does
        a, b = sess.run(u), sess.run(u)
        assert not np.array_equal(a, b) and a.min() >= -2 and a.max() < 3 and abs(a.mean() - 0.5) < 0.1
        np.testing.assert_array_equal(sess.run(seeded), sess.run(seeded))
    tf.reset_default_graph()
    tf.set_random_seed(3)
    np.testing.assert_array_equal(tf.Variable(tf.random_normal([200, 50], mean=1.0, stddev=2.0)).numpy(), first)


def test_constants_and_fills():
    with tf.Session() as sess:
        c = sess.run(tf.constant([[1, 2], [3, 4]]))
        assert c.dtype == np.int32 and c.tolist() == [[1, 2], [3, 4]]
        assert sess.run(tf.constant(2.5, shape=[2, 2])).tolist() == [[2.5, 2.5], [2.5, 2.5]]
        assert sess.run(tf.constant(1.0)).dtype == np.float32
        z, o = sess.run([tf.zeros([2, 3], tf.int64), tf.ones((2,))])
        assert z.dtype == np.int64 and z.shape == (2, 3) and o.dtype == np.float32 and o.tolist() == [1, 1]
        f = sess.run(tf.fill([2, 2], 9))
        assert f.dtype == np.int32 and (f == 9).all()
        x = tf.placeholder(tf.float32, [None, 2])
        zl, ol = sess.run([tf.zeros_like(x), tf.ones_like(x, dtype=tf.int32)], {x: np.ones((3, 2))})
        assert zl.shape == (3, 2) and not zl.any() and ol.dtype == np.int32 and ol.sum() == 6


# ---- math and array functions -------------------------------------------------------------------------

X = np.array([[0.5, -1.5, 2.0], [3.0, 0.25, -0.75]], np.float32)
Y = np.array([[1.0, 2.0, -0.5], [0.5, 4.0, 1.5]], np.float32)

UNARY = [("square", np.square, X), ("sqrt", np.sqrt, np.abs(X)), ("exp", np.exp, X), ("log", np.log, np.abs(X)),
         ("sigmoid", lambda a: 1 / (1 + np.exp(-a)), X), ("tanh", np.tanh, X), ("abs", np.abs, X),
         ("negative", np.negative, X)]
BINARY = [("add", np.add), ("subtract", np.subtract), ("multiply", np.multiply), ("divide", np.divide),
          ("maximum", np.maximum), ("minimum", np.minimum), ("pow", lambda a, b: np.abs(a) ** b),
          ("equal", np.equal), ("less", np.less), ("greater", np.greater)]


@pytest.mark.parametrize("name,ref,data", UNARY, ids=[u[0] for u in UNARY])
def test_unary_functions_match_numpy(name, ref, data):
    x = tf.placeholder(tf.float32, [None, 3])
    with tf.Session() as sess:
        np.testing.assert_allclose(sess.run(getattr(tf, name)(x), {x: data}), ref(data), rtol=1e-6)


@pytest.mark.parametrize("name,ref", BINARY, ids=[b[0] for b in BINARY])
def test_binary_functions_match_numpy(name, ref):
    x = tf.placeholder(tf.float32, [None, 3])
    y = tf.placeholder(tf.float32, [None, 3])
    a = np.abs(X) if name == "pow" else X
    with tf.Session() as sess:
        np.testing.assert_allclose(sess.run(getattr(tf, name)(x, y), {x: a, y: Y}), ref(a, Y), rtol=1e-6)
        np.testing.assert_allclose(sess.run(getattr(tf, name)(x, 2.0), {x: a}), ref(a, np.float32(2.0)), rtol=1e-6)


def test_reductions_with_axis_keepdims_and_the_old_spellings():
    x = tf.placeholder(tf.float32, [None, 3])
    cases = [(tf.reduce_sum(x), X.sum()), (tf.reduce_sum(x, 0), X.sum(0)),
             (tf.reduce_mean(x, axis=1, keepdims=True), X.mean(1, keepdims=True)),
             (tf.reduce_max(x, axis=[0, 1]), X.max()), (tf.reduce_min(x, reduction_indices=1), X.min(1)),
             (tf.reduce_prod(x, 1, keep_dims=True), X.prod(1, keepdims=True))]
    with tf.Session() as sess:
        outs = sess.run([c for c, _ in cases], {x: X})
    for got, (_, want) in zip(outs, cases):
        assert np.shape(got) == np.shape(want)
        np.testing.assert_allclose(got, want, rtol=1e-6)
    with pytest.raises(tf.StaticGraphError, match="not both"):
        tf.reduce_sum(x, axis=0, reduction_indices=0)
    with tf.Session() as sess:   # an integer mean stays an integer, as in TF1
        assert sess.run(tf.reduce_mean(tf.constant([1, 2]))) == 1


def test_argmax_cast_and_one_hot():
    with tf.Session() as sess:
        m = tf.constant([[1.0, 5.0, 2.0], [7.0, 0.0, 9.0]])
        a0, a1 = sess.run([tf.argmax(m), tf.argmax(m, axis=1)])     # TF1: no axis means axis 0
        assert a0.tolist() == [1, 0, 1] and a1.tolist() == [1, 2] and a1.dtype == np.int64
        assert sess.run(tf.argmin(m, 1, output_type=tf.int32)).dtype == np.int32
        assert sess.run(tf.cast(tf.constant([1.7, -1.7]), tf.int32)).tolist() == [1, -1]
        oh = sess.run(tf.one_hot([0, 2, 5, -1], 3))
        np.testing.assert_array_equal(oh, [[1, 0, 0], [0, 0, 1], [0, 0, 0], [0, 0, 0]])
        assert oh.dtype == np.float32
        oh2 = sess.run(tf.one_hot([1, 0], 2, on_value=5, off_value=-1, axis=0))
        np.testing.assert_array_equal(oh2, [[-1, 5], [5, -1]])


def test_shape_functions():
    x = tf.placeholder(tf.float32, [None, 2, 3], name="x")
    a = np.arange(24, dtype=np.float32).reshape(4, 2, 3)
    with tf.Session() as sess:
        s, r, t, t2 = sess.run([tf.shape(x), tf.reshape(x, [-1, 6]), tf.transpose(x, perm=[2, 0, 1]),
                                tf.transpose(tf.constant([[1, 2, 3]]))], {x: a})
        assert s.tolist() == [4, 2, 3] and s.dtype == np.int32
        np.testing.assert_array_equal(r, a.reshape(-1, 6))
        np.testing.assert_array_equal(t, a.transpose(2, 0, 1))
        assert t2.tolist() == [[1], [2], [3]]
        c, st, e, sq = sess.run([tf.concat([x, x], 1), tf.stack([x, x], axis=1), tf.expand_dims(x, 1),
                                 tf.squeeze(tf.expand_dims(x, -1), [3])], {x: a})
        np.testing.assert_array_equal(c, np.concatenate([a, a], 1))
        np.testing.assert_array_equal(st, np.stack([a, a], 1))
        assert e.shape == (4, 1, 2, 3) and sq.shape == (4, 2, 3)
        w = sess.run(tf.where(tf.greater(x, 10.0), x, tf.zeros_like(x)), {x: a})
        np.testing.assert_array_equal(w, np.where(a > 10, a, 0))
    with pytest.raises(tf.StaticGraphError, match="not a permutation"):
        tf.transpose(x, perm=[0, 0, 1])
    with pytest.raises(tf.StaticGraphError, match="dim 1"):
        tf.squeeze(x, [1])
    with pytest.raises(tf.StaticGraphError, match="coordinates"):
        tf.where(tf.greater(x, 0.0))


def test_matmul_transposes_and_rank_rule():
    a, b = X, Y
    with tf.Session() as sess:
        np.testing.assert_allclose(sess.run(tf.matmul(a, b, transpose_b=True)), a @ b.T, rtol=1e-6)
        np.testing.assert_allclose(sess.run(tf.matmul(a, b, transpose_a=True)), a.T @ b, rtol=1e-6)
    with pytest.raises(tf.StaticGraphError, match="rank >= 2"):
        tf.matmul(tf.constant([1.0, 2.0]), tf.constant([[1.0], [2.0]]))


# ---- tf.nn and tf.losses -----------------------------------------------------------------------------------

LOGITS = np.array([[2.0, -1.0, 0.5], [0.1, 0.2, 3.0], [-2.0, 1.0, 1.0]], np.float32)
LABELS = np.array([0, 2, 1])
SOFT = np.array([[0.7, 0.2, 0.1], [0.0, 0.0, 1.0], [0.3, 0.3, 0.4]], np.float32)


def test_activations_softmax_bias_add_and_l2_loss():
    x = tf.placeholder(tf.float32, [None, 3])
    bias = tf.constant([1.0, -1.0, 0.5])
    outs = [tf.nn.relu(x), tf.nn.sigmoid(x), tf.nn.tanh(x), tf.nn.softmax(x), tf.nn.log_softmax(x),
            tf.nn.softmax(x, axis=0), tf.nn.bias_add(x, bias), tf.nn.l2_loss(x)]
    with tf.Session() as sess:
        r = sess.run(outs, {x: LOGITS})
    want = [np.maximum(LOGITS, 0), 1 / (1 + np.exp(-LOGITS)), np.tanh(LOGITS), _softmax(LOGITS),
            np.log(_softmax(LOGITS)), _softmax(LOGITS.T).T, LOGITS + [1.0, -1.0, 0.5], (LOGITS ** 2).sum() / 2]
    for got, w in zip(r, want):
        np.testing.assert_allclose(got, w, rtol=1e-5, atol=1e-6)
    with pytest.raises(tf.StaticGraphError, match="bias"):
        tf.nn.bias_add(x, tf.constant([1.0, 2.0]))


def test_cross_entropies_match_their_formulas():
    logits = tf.placeholder(tf.float32, [None, 3])
    labels = tf.placeholder(tf.int64, [None])
    soft = tf.placeholder(tf.float32, [None, 3])
    sig_labels = (SOFT > 0.25).astype(np.float32)
    outs = [tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits),
            tf.nn.softmax_cross_entropy_with_logits_v2(labels=soft, logits=logits),
            tf.nn.softmax_cross_entropy_with_logits(labels=soft, logits=logits),
            tf.nn.sigmoid_cross_entropy_with_logits(labels=soft, logits=logits)]
    with tf.Session() as sess:
        r = sess.run(outs, {logits: LOGITS, labels: LABELS, soft: SOFT})
        r_sig = sess.run(outs[3], {logits: LOGITS, soft: sig_labels})
        bad = sess.run(outs[0], {logits: LOGITS, labels: [0, 3, -1]})
    logp = np.log(_softmax(LOGITS))
    np.testing.assert_allclose(r[0], -logp[np.arange(3), LABELS], rtol=1e-5)
    np.testing.assert_allclose(r[1], -(SOFT * logp).sum(1), rtol=1e-5)
    np.testing.assert_allclose(r[2], r[1], rtol=1e-6)
    p = 1 / (1 + np.exp(-LOGITS))
    np.testing.assert_allclose(r_sig, -(sig_labels * np.log(p) + (1 - sig_labels) * np.log(1 - p)), rtol=1e-5)
    assert np.isfinite(bad[0]) and np.isnan(bad[1:]).all()      # an out-of-range label is NaN, not 0
    with pytest.raises(tf.StaticGraphError, match="named arguments"):
        tf.nn.softmax_cross_entropy_with_logits_v2(soft, logits)
    with pytest.raises(tf.StaticGraphError, match="labels must be int"):
        tf.nn.sparse_softmax_cross_entropy_with_logits(labels=soft, logits=logits)


def test_softmax_xent_v1_stops_the_gradient_into_labels_and_v2_does_not():
    labels = tf.Variable(SOFT)
    logits = tf.constant(LOGITS)
    (g1,) = tf.gradients(tf.reduce_sum(tf.nn.softmax_cross_entropy_with_logits(labels=labels, logits=logits)),
                         [labels])
    (g2,) = tf.gradients(tf.reduce_sum(tf.nn.softmax_cross_entropy_with_logits_v2(labels=labels, logits=logits)),
                         [labels])
    assert g1 is None
    with tf.Session() as sess:
        np.testing.assert_allclose(sess.run(g2), -np.log(_softmax(LOGITS)), rtol=1e-5)


def test_dropout_keep_prob_rate_and_a_fed_keep_prob():
    x = tf.placeholder(tf.float32, [None, 1000])
    keep = tf.placeholder(tf.float32)
    d1, d2, d3 = tf.nn.dropout(x, 0.8), tf.nn.dropout(x, rate=0.75), tf.nn.dropout(x, keep)
    ones = np.ones((4, 1000), np.float32)
    with tf.Session() as sess:
        a, b = sess.run([d1, d2], {x: ones})
        assert set(np.unique(a)) <= {0.0, 1.25} and abs((a > 0).mean() - 0.8) < 0.03
        assert set(np.unique(b)) <= {0.0, 4.0} and abs((b > 0).mean() - 0.25) < 0.03
        np.testing.assert_array_equal(sess.run(d3, {x: ones, keep: 1.0}), ones)
        c = sess.run(d3, {x: ones, keep: 0.5})
        assert set(np.unique(c)) <= {0.0, 2.0} and not np.array_equal(c, sess.run(d3, {x: ones, keep: 0.5}))
    with pytest.raises(tf.StaticGraphError, match="exactly one"):
        tf.nn.dropout(x, 0.5, rate=0.5)


def test_losses_mean_squared_error_with_weights():
    y = np.array([[1.0, 2.0], [3.0, 4.0]], np.float32)
    p = np.array([[1.5, 2.0], [2.0, 6.0]], np.float32)
    w = np.array([[1.0], [0.0]], np.float32)
    with tf.Session() as sess:
        assert sess.run(tf.losses.mean_squared_error(y, p)) == pytest.approx(((y - p) ** 2).mean())
        # SUM_BY_NONZERO_WEIGHTS: the weighted sum over the count of non-zero (broadcast) weights
        assert sess.run(tf.losses.mean_squared_error(y, p, weights=w)) == pytest.approx(0.25 / 2)
        assert sess.run(tf.losses.mean_squared_error(y, p, weights=0.0)) == 0.0
        R = tf.losses.Reduction
        sq = (y - p) ** 2
        none, total, mean, batch = sess.run([tf.losses.mean_squared_error(y, p, w * 2, reduction=r)
                                             for r in (R.NONE, R.SUM, R.MEAN, R.SUM_OVER_BATCH_SIZE)])
        np.testing.assert_allclose(none, sq * w * 2)
        assert total == pytest.approx(0.5) and mean == pytest.approx(0.5 / 4) and batch == pytest.approx(0.5 / 4)
    with pytest.raises(tf.StaticGraphError, match="reduction"):
        tf.losses.mean_squared_error(y, p, reduction="average")


# ---- optimizers ----------------------------------------------------------------------------------------------

def _quadratic(opt, steps=4, **minimize_kw):
    w = tf.Variable(np.array([0.5, -1.0], np.float32), name="w")
    step = opt.minimize(tf.reduce_sum(w * w * np.array([1.0, 3.0], np.float32)), **minimize_kw)
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        traj = []
        for _ in range(steps):
            sess.run(step)
            traj.append(w.eval().copy())
    return np.array(traj)


def _grad(w):
    return 2 * w * np.array([1.0, 3.0])


def test_gradient_descent_and_momentum_match_tf1s_update_rules():
    w, traj = np.array([0.5, -1.0]), []
    for _ in range(4):
        w = w - 0.1 * _grad(w)
        traj.append(w)
    np.testing.assert_allclose(_quadratic(tf.train.GradientDescentOptimizer(0.1)), traj, rtol=1e-5)
    for nesterov in (False, True):
        tf.reset_default_graph()
        w, acc, traj = np.array([0.5, -1.0]), np.zeros(2), []
        for _ in range(4):
            g = _grad(w)
            acc = 0.9 * acc + g
            w = w - 0.1 * ((g + 0.9 * acc) if nesterov else acc)
            traj.append(w)
        got = _quadratic(tf.train.MomentumOptimizer(0.1, 0.9, use_nesterov=nesterov))
        np.testing.assert_allclose(got, traj, rtol=1e-5)


def test_adam_adds_epsilon_to_the_uncorrected_root_as_tf1_does():
    w, m, v, traj = np.array([0.5, -1.0]), np.zeros(2), np.zeros(2), []
    for t in range(1, 5):
        g = _grad(w)
        m, v = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g * g
        lr_t = 0.1 * np.sqrt(1 - 0.999 ** t) / (1 - 0.9 ** t)
        w = w - lr_t * m / (np.sqrt(v) + 0.5)
        traj.append(w)
    # epsilon 0.5 is large enough that PyTorch's placement (sqrt(v_hat) + eps) would differ by far more
    np.testing.assert_allclose(_quadratic(tf.train.AdamOptimizer(0.1, epsilon=0.5)), traj, rtol=1e-5)


def test_rmsprop_starts_its_mean_square_at_one():
    for centered in (False, True):
        tf.reset_default_graph()
        w, ms, mg, mom, traj = np.array([0.5, -1.0]), np.ones(2), np.zeros(2), np.zeros(2), []
        for _ in range(4):
            g = _grad(w)
            ms = 0.9 * ms + 0.1 * g * g
            mg = 0.9 * mg + 0.1 * g
            denom = ms - mg * mg if centered else ms
            mom = 0.5 * mom + 0.01 * g / np.sqrt(denom + 1e-10)
            w = w - mom
            traj.append(w)
        got = _quadratic(tf.train.RMSPropOptimizer(0.01, momentum=0.5, centered=centered))
        np.testing.assert_allclose(got, traj, rtol=1e-5)


def test_global_step_compute_and_apply_gradients():
    gs = tf.train.get_or_create_global_step()
    assert tf.train.get_or_create_global_step() is gs and gs.dtype == np.int64
    w = tf.Variable([1.0, 2.0])
    frozen = tf.Variable([3.0], trainable=False)
    loss = tf.reduce_sum(w * w) + tf.reduce_sum(frozen)
    opt = tf.train.GradientDescentOptimizer(0.25)
    gv = opt.compute_gradients(loss)
    assert [v for _, v in gv] == [w]                        # only trainable variables
    clipped = [(tf.clip_by_value(g, -1.0, 1.0), v) for g, v in gv]
    step = opt.apply_gradients(clipped, global_step=gs)
    lr = tf.train.exponential_decay(1.0, gs, 2, 0.5, staircase=True)
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        sess.run(step)
        sess.run(step)
        np.testing.assert_allclose(w.eval(), [1.0 - 2 * 0.25, 2.0 - 2 * 0.25])  # clipped to 1
        assert gs.eval() == 2 and sess.run(lr) == 0.5
    with pytest.raises(tf.StaticGraphError, match="no gradients"):
        opt.minimize(tf.reduce_sum(frozen) * 2.0 + tf.reduce_sum(tf.zeros([1])), var_list=[w])


def test_gradients_returns_a_list_with_none_for_unused():
    x = tf.placeholder(tf.float32, [3])
    a, b = tf.Variable([1.0, 2.0, 3.0]), tf.Variable([1.0])
    gs = tf.gradients(tf.reduce_sum(a * x * x), [a, b, x])
    assert isinstance(gs, list) and gs[1] is None
    with tf.Session() as sess:
        ga, gx = sess.run([gs[0], gs[2]], {x: [1.0, -2.0, 0.5]})
    np.testing.assert_allclose(ga, [1.0, 4.0, 0.25])
    np.testing.assert_allclose(gx, 2 * np.array([1.0, 2.0, 3.0]) * [1.0, -2.0, 0.5])


# ---- scopes, sessions, saving ---------------------------------------------------------------------------

def test_variable_scope_and_get_variable_share_by_name():
    def layer(x):
        w = tf.get_variable("w", [3, 2], initializer=tf.constant_initializer(0.5))
        b = tf.get_variable("b", [2], initializer=tf.zeros_initializer())
        return tf.matmul(x, w) + b

    x = tf.placeholder(tf.float32, [None, 3])
    with tf.variable_scope("dense"):
        y1 = layer(x)
    with tf.variable_scope("dense", reuse=True):
        y2 = layer(x)
    with tf.variable_scope("other", reuse=tf.AUTO_REUSE):
        g1 = tf.get_variable("g", [4])
        g2 = tf.get_variable("g", [4])
    assert g1 is g2 and g1.name == "other/g:0"
    assert abs(g1.numpy()).max() <= np.sqrt(6 / 8)                # glorot_uniform by default
    assert [v.name for v in tf.trainable_variables()] == ["dense/w:0", "dense/b:0", "other/g:0"]
    with tf.Session() as sess:
        a, b = sess.run([y1, y2], {x: np.ones((1, 3))})
    assert a.tolist() == b.tolist() == [[1.5, 1.5]]
    with pytest.raises(tf.StaticGraphError, match="already exists"):
        with tf.variable_scope("dense"):
            layer(x)
    with pytest.raises(tf.StaticGraphError, match="does not exist"):
        with tf.variable_scope("fresh", reuse=True):
            tf.get_variable("w", [1])
    with tf.name_scope("block") as scope:
        c = tf.constant(1.0, name="c")
    assert scope == "block/" and c.name == "block/c:0"


def test_saver_round_trips_variables_through_dg_save(tmp_path):
    w = tf.Variable([1.0, 2.0], name="w")
    n = tf.Variable(5, name="n")
    saver = tf.train.Saver()
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        path = saver.save(sess, str(tmp_path / "model.ckpt"), global_step=3)
        assert path.endswith("model.ckpt-3")
        sess.run([w.assign([0.0, 0.0]), n.assign(0)])
        saver.restore(sess, path)
        assert w.eval().tolist() == [1.0, 2.0] and n.eval() == 5
        keep2 = tf.train.Saver(max_to_keep=2)
        paths = [keep2.save(sess, str(tmp_path / "k"), global_step=i) for i in range(4)]
        assert keep2.last_checkpoints == paths[2:]
        assert [os.path.exists(q) for q in paths] == [False, False, True, True]
    tf.reset_default_graph()
    other = tf.Variable([1.0, 2.0, 3.0], name="w")
    with pytest.raises(tf.StaticGraphError, match="shape"):
        tf.train.Saver([other]).restore(None, path)


def test_star_import_exports_train_and_nn_but_not_builtin_shadows():
    ns = {}
    exec("from dualgraph.static import *", ns)
    for name in ("train", "nn", "losses", "placeholder", "Session", "Variable", "float32", "reduce_mean"):
        assert name in ns, name
    for name in ("range", "abs", "pow", "round", "bool"):
        assert name not in ns, name
    assert ns["train"].AdamOptimizer is tf.train.AdamOptimizer


# ---- PyTorch parity --------------------------------------------------------------------------------------

def test_losses_and_adam_match_torch():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    logits = tf.placeholder(tf.float32, [None, 3])
    labels = tf.placeholder(tf.int64, [None])
    soft = tf.placeholder(tf.float32, [None, 3])
    outs = [tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits),
            tf.nn.softmax_cross_entropy_with_logits_v2(labels=soft, logits=logits),
            tf.nn.sigmoid_cross_entropy_with_logits(labels=soft, logits=logits),
            tf.losses.mean_squared_error(soft, logits)]
    with tf.Session() as sess:
        r = sess.run(outs, {logits: LOGITS, labels: LABELS, soft: SOFT})
    tl, ts = torch.tensor(LOGITS), torch.tensor(SOFT)
    want = [F.cross_entropy(tl, torch.tensor(LABELS), reduction="none"), F.cross_entropy(tl, ts, reduction="none"),
            F.binary_cross_entropy_with_logits(tl, ts, reduction="none"), F.mse_loss(tl, ts)]
    for got, w in zip(r, want):
        np.testing.assert_allclose(got, w.numpy(), rtol=1e-5, atol=1e-7)
    # with epsilon 0 the two Adams are the same algorithm (they differ only in where epsilon goes)
    tw = torch.tensor([0.5, -1.0], requires_grad=True)
    topt = torch.optim.Adam([tw], lr=0.1, eps=0.0)
    traj = []
    for _ in range(4):
        topt.zero_grad()
        (tw * tw * torch.tensor([1.0, 3.0])).sum().backward()
        topt.step()
        traj.append(tw.detach().numpy().copy())
    tf.reset_default_graph()
    np.testing.assert_allclose(_quadratic(tf.train.AdamOptimizer(0.1, epsilon=0.0)), traj, rtol=1e-5, atol=1e-5)


# ---- convolution and pooling (the Deep MNIST tutorial's layers) -----------------------------------------

def _np_conv_nhwc(x, w, stride, pads):
    (pt, pb), (pl, pr) = pads
    x = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    kh, kw, _, co = w.shape
    oh, ow = (x.shape[1] - kh) // stride + 1, (x.shape[2] - kw) // stride + 1
    out = np.zeros((x.shape[0], oh, ow, co))
    for i in range(oh):
        for j in range(ow):
            patch = x[:, i * stride:i * stride + kh, j * stride:j * stride + kw, :]
            out[:, i, j, :] = np.tensordot(patch, w, axes=([1, 2, 3], [0, 1, 2]))
    return out


def test_conv2d_same_and_valid_match_a_direct_correlation():
    rng = np.random.default_rng(0)
    xs = rng.standard_normal((2, 5, 6, 3)).astype(np.float32)
    ws = rng.standard_normal((3, 2, 3, 4)).astype(np.float32)
    x = tf.placeholder(tf.float32, [None, 5, 6, 3])
    w = tf.constant(ws)
    outs = [tf.nn.conv2d(x, w, strides=[1, 1, 1, 1], padding="SAME"),
            tf.nn.conv2d(x, w, strides=[1, 2, 2, 1], padding="SAME"),
            tf.nn.conv2d(x, w, strides=[1, 1, 1, 1], padding="VALID")]
    with tf.Session() as sess:
        same1, same2, valid = sess.run(outs, {x: xs})
    # SAME: ceil(size / stride) outputs, the odd pixel of padding after (bottom/right)
    np.testing.assert_allclose(same1, _np_conv_nhwc(xs, ws, 1, ((1, 1), (0, 1))), rtol=1e-4, atol=1e-5)
    assert same2.shape == (2, 3, 3, 4)
    np.testing.assert_allclose(same2, _np_conv_nhwc(xs, ws, 2, ((1, 1), (0, 1))), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(valid, _np_conv_nhwc(xs, ws, 1, ((0, 0), (0, 0))), rtol=1e-4, atol=1e-5)
    with pytest.raises(tf.StaticGraphError, match=r"\[1, h, w, 1\]"):
        tf.nn.conv2d(x, w, strides=[2, 1, 1, 1], padding="SAME")
    with pytest.raises(tf.StaticGraphError, match="padding"):
        tf.nn.conv2d(x, w, strides=[1, 1, 1, 1], padding="FULL")


def test_max_and_avg_pool_same_padding_leaves_the_padding_out():
    a = np.arange(25, dtype=np.float32).reshape(1, 5, 5, 1) - 30.0      # all negative: zero padding would win
    x = tf.placeholder(tf.float32, [1, 5, 5, 1])
    k = [1, 2, 2, 1]
    with tf.Session() as sess:
        mp, ap, mv = sess.run([tf.nn.max_pool(x, k, k, "SAME"), tf.nn.avg_pool(x, k, k, "SAME"),
                               tf.nn.max_pool(x, k, k, "VALID")], {x: a})
    m = a[0, :, :, 0]
    want_max = [[m[i:i + 2, j:j + 2].max() for j in (0, 2, 4)] for i in (0, 2, 4)]
    want_avg = [[m[i:i + 2, j:j + 2].mean() for j in (0, 2, 4)] for i in (0, 2, 4)]
    np.testing.assert_allclose(mp[0, :, :, 0], want_max)
    np.testing.assert_allclose(ap[0, :, :, 0], want_avg, rtol=1e-6)
    np.testing.assert_allclose(mv[0, :, :, 0], np.array(want_max)[:2, :2])


def test_deep_mnist_style_convnet_trains():
    rng = np.random.default_rng(1)
    imgs = rng.standard_normal((64, 8, 8, 1)).astype(np.float32)
    labels = (imgs[:, :4].sum((1, 2, 3)) > imgs[:, 4:].sum((1, 2, 3))).astype(np.int64)
    tf.set_random_seed(0)
    x = tf.placeholder(tf.float32, [None, 64])
    y_ = tf.placeholder(tf.int64, [None])
    keep_prob = tf.placeholder(tf.float32)
    x_image = tf.reshape(x, [-1, 8, 8, 1])
    W1 = tf.Variable(tf.truncated_normal([3, 3, 1, 8], stddev=0.1))
    b1 = tf.Variable(tf.constant(0.1, shape=[8]))
    h = tf.nn.max_pool(tf.nn.relu(tf.nn.conv2d(x_image, W1, strides=[1, 1, 1, 1], padding="SAME") + b1),
                       ksize=[1, 2, 2, 1], strides=[1, 2, 2, 1], padding="SAME")
    flat = tf.nn.dropout(tf.reshape(h, [-1, 4 * 4 * 8]), keep_prob)
    W2 = tf.Variable(tf.truncated_normal([128, 2], stddev=0.1))
    logits = tf.matmul(flat, W2)
    loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y_, logits=logits))
    step = tf.train.AdamOptimizer(1e-2).minimize(loss)
    acc = tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits, 1), y_), tf.float32))
    feed = {x: imgs.reshape(64, 64), y_: labels}
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        before = sess.run(loss, {**feed, keep_prob: 1.0})
        for _ in range(60):
            sess.run(step, {**feed, keep_prob: 0.8})
        after, a = sess.run([loss, acc], {**feed, keep_prob: 1.0})
    assert after < 0.5 * before and a > 0.9


def test_conv2d_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    xs = rng.standard_normal((2, 7, 7, 3)).astype(np.float32)
    ws = rng.standard_normal((3, 3, 3, 5)).astype(np.float32)
    with tf.Session() as sess:
        got = sess.run(tf.nn.conv2d(tf.constant(xs), tf.constant(ws), strides=[1, 2, 2, 1], padding="SAME"))
    # TF's SAME at stride 2 on 7 pixels with a 3-wide kernel pads 1 on each side: PyTorch's padding=1
    want = torch.nn.functional.conv2d(torch.tensor(xs).permute(0, 3, 1, 2), torch.tensor(ws).permute(3, 2, 0, 1),
                                      stride=2, padding=1).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


# ---- tf.layers, embedding_lookup, Adagrad ----------------------------------------------------------------

def test_layers_dense_names_shares_and_computes():
    x = tf.placeholder(tf.float32, [None, 3])
    h = tf.layers.dense(x, 4, activation=tf.nn.relu)
    out = tf.layers.dense(h, 2, use_bias=False, kernel_initializer=tf.constant_initializer(0.5))
    again = tf.layers.dense(h, 2, use_bias=False, name="dense_1", reuse=True)
    assert [v.name for v in tf.trainable_variables()] == ["dense/kernel:0", "dense/bias:0", "dense_1/kernel:0"]
    k = tf.global_variables()[0].numpy()
    assert k.shape == (3, 4) and np.abs(k).max() <= np.sqrt(6 / 7)   # glorot_uniform's limit
    xs = np.array([[1.0, -2.0, 0.5]], np.float32)
    with tf.Session() as sess:
        a, b = sess.run([out, again], {x: xs})
    want = np.maximum(xs @ k, 0) @ np.full((4, 2), 0.5)
    np.testing.assert_allclose(a, want, rtol=1e-6)
    np.testing.assert_allclose(b, want, rtol=1e-6)


def test_layers_conv_pool_flatten_dropout():
    x = tf.placeholder(tf.float32, [None, 6, 6, 1])
    training = tf.placeholder(tf.bool)
    c = tf.layers.conv2d(x, 2, 3, padding="same", kernel_initializer=tf.ones_initializer())
    p = tf.layers.max_pooling2d(c, 2, 2)
    f = tf.layers.flatten(p)
    d = tf.layers.dropout(f, rate=0.5, training=training)
    xs = np.arange(36, dtype=np.float32).reshape(1, 6, 6, 1)
    with tf.Session() as sess:
        cv, fv, d_eval, d_train = sess.run([c, f, d, d], {x: xs, training: False})
        d_train = sess.run(d, {x: xs, training: True})
    box = np.pad(xs[0, :, :, 0], 1)
    sums = np.array([[box[i:i + 3, j:j + 3].sum() for j in range(6)] for i in range(6)])
    np.testing.assert_allclose(cv[0, :, :, 0], sums)
    np.testing.assert_allclose(cv[0, :, :, 1], sums)
    assert fv.shape == (1, 18)
    np.testing.assert_allclose(fv.reshape(3, 3, 2)[:, :, 0], sums.reshape(3, 2, 3, 2).max(axis=(1, 3)))
    np.testing.assert_array_equal(d_eval, fv)
    assert set(np.unique(d_train / np.where(fv == 0, 1, fv))) <= {0.0, 2.0}


def test_embedding_lookup_and_gather():
    params = np.arange(12, dtype=np.float32).reshape(4, 3)
    ids = tf.placeholder(tf.int64, [None, 2])
    with tf.Session() as sess:
        got = sess.run(tf.nn.embedding_lookup(tf.constant(params), ids), {ids: [[0, 3], [2, 2]]})
    np.testing.assert_array_equal(got, params[[[0, 3], [2, 2]]])


def test_adagrad_matches_its_rule():
    w, acc, traj = np.array([0.5, -1.0]), np.full(2, 0.1), []
    for _ in range(4):
        g = _grad(w)
        acc = acc + g * g
        w = w - 0.3 * g / np.sqrt(acc)
        traj.append(w)
    np.testing.assert_allclose(_quadratic(tf.train.AdagradOptimizer(0.3)), traj, rtol=1e-5)
    with pytest.raises(tf.StaticGraphError, match="positive"):
        tf.train.AdagradOptimizer(0.1, initial_accumulator_value=0.0)


def test_adagrad_matches_torch():
    torch = pytest.importorskip("torch")
    tw = torch.tensor([0.5, -1.0], requires_grad=True)
    topt = torch.optim.Adagrad([tw], lr=0.3, initial_accumulator_value=0.1, eps=0.0)
    traj = []
    for _ in range(4):
        topt.zero_grad()
        (tw * tw * torch.tensor([1.0, 3.0])).sum().backward()
        topt.step()
        traj.append(tw.detach().numpy().copy())
    np.testing.assert_allclose(_quadratic(tf.train.AdagradOptimizer(0.3)), traj, rtol=1e-5, atol=1e-6)
