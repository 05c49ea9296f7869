"""dualgraph quickstart: the first example of each style, with labelled output.

    python examples/quickstart.py

1. PyTorch style: y = (x + w) * (w + 1) with w = 1, x = 2.
2. MXNet style:   c = 2 * a + b recorded under autograd.record().
3. TF1 style:     y = x * x + 2 fed x = 3 -- computed eagerly, then (where dg.static is present)
                  built as a graph with a placeholder and run with Session.run(feed_dict).
"""
import dualgraph as dg
from dualgraph import autograd


def pytorch_style():
    print("== PyTorch style: y = (x + w) * (w + 1) ==")
    w = dg.tensor(1.0, requires_grad=True)
    x = dg.tensor(2.0, requires_grad=True)
    a = dg.add(w, x)
    a.retain_grad()                      # keep the gradient of the intermediate a
    b = dg.add(w, 1)
    y = dg.mul(a, b)
    y.backward()
    print(f"y = {y.item()}")
    print(f"w.grad = {w.grad.item()}    (dy/dw = (w + 1) + (x + w) = 5)")
    print(f"x.grad = {x.grad.item()}    (dy/dx = w + 1 = 2)")
    print(f"a.grad = {a.grad.item()}    (retained: dy/da = b = 2)")
    print(f"b.grad = {b.grad}, y.grad = {y.grad}    (non-leaves keep no grad unless retain_grad())")
    print("is_leaf:", ", ".join(f"{n}={t.is_leaf}" for n, t in zip("wxaby", (w, x, a, b, y))))
    print(f"y.grad_fn = {y.grad_fn.name()}, a.grad_fn = {a.grad_fn.name()}, b.grad_fn = {b.grad_fn.name()}, "
          f"w.grad_fn = {w.grad_fn}")
    print("y.grad_fn.next_functions =", [fn.name() for fn, _ in y.grad_fn.next_functions])
    return w, x, y


def mxnet_style():
    print("\n== MXNet style: c = 2 * a + b under autograd.record() ==")
    a = dg.ones((2, 1))
    b = dg.ones((2, 1))
    a.attach_grad()
    b.attach_grad()
    with autograd.record() as tape:
        c = 2 * a + b
    c.backward()                         # head gradient of ones, as in MXNet
    print("c =", c.tolist())
    print("a.grad =", a.grad.tolist(), "  (dc/da = 2)")
    print("b.grad =", b.grad.tolist(), "  (dc/db = 1)")
    print(tape)
    return a, b, c


def tf1_style():
    print("\n== TF1 style: y = x * x + 2, fed x = 3 ==")
    x = dg.tensor(3.0, requires_grad=True)   # stands in for a placeholder fed with 3
    y = x * x + 2
    (dy_dx,) = autograd.grad(y, x)           # what tf.gradients(y, x) would give
    print(f"y = {y.item()}")
    print(f"dy/dx = {dy_dx.item()}    (2x = 6)")
    try:
        from dualgraph import static as st
    except ImportError:  # the graph builder is a later addition
        return x, y, dy_dx
    xp = st.placeholder(dg.float32)           # the same program, defined first and then run
    yp = xp * xp + 2
    with st.Session() as sess:
        print(f"Session.run(y, feed_dict={{x: 3}}) = {sess.run(yp, feed_dict={xp: 3})}")
    return x, y, dy_dx


if __name__ == "__main__":
    pytorch_style()
    mxnet_style()
    tf1_style()
