"""Define-then-run with dg.static: the seed's `y = x * x + 2` fed x = 3, then a small classifier
trained with repeated `sess.run(train_op, feed_dict=...)`."""
import numpy as np

import dualgraph as dg
import dualgraph.static as st

# The seed example, as TensorFlow 1 users write it.
x = st.placeholder(dg.float32)
y = x * x + 2
with st.Session() as sess:
    print("y = x * x + 2 at x = 3:", sess.run(y, feed_dict={x: 3}))

# A two-layer classifier on two Gaussian blobs, trained with a Session.
rng = np.random.default_rng(0)
n = 200
data = np.concatenate([rng.normal(-1.0, 0.7, (n, 2)), rng.normal(1.0, 0.7, (n, 2))]).astype(np.float32)
labels = np.concatenate([np.zeros(n), np.ones(n)]).astype(np.int64)

g = st.Graph("classifier")
with g.as_default():
    X = st.placeholder(st.float32, [None, 2], name="X")   # TensorFlow 1's order: dtype, shape, name
    T = st.placeholder(st.int64, [None], name="T")
    W1 = st.Variable(rng.normal(0, 0.5, (2, 16)).astype(np.float32), name="W1")
    b1 = st.Variable(np.zeros(16, np.float32), name="b1")
    W2 = st.Variable(rng.normal(0, 0.5, (16, 2)).astype(np.float32), name="W2")
    b2 = st.Variable(np.zeros(2, np.float32), name="b2")
    logits = dg.relu(X @ W1 + b1) @ W2 + b2
    loss = dg.cross_entropy(logits, T)
    accuracy = dg.mean((dg.argmax(logits, axis=1) == T).astype("float32"))
    train = st.train.AdamOptimizer(0.05).minimize(loss)

with st.Session(g) as sess:
    for step in range(101):
        _, l, acc = sess.run([train, loss, accuracy], feed_dict={X: data, T: labels})
        if step % 25 == 0:
            print(f"step {step:3d}  loss {l:.4f}  accuracy {acc:.3f}")
    print("compiled graph for the training step:",
          len(sess.compiled_graph([train, loss, accuracy]).nodes), "nodes")
