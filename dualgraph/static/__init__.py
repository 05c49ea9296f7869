"""dg.static: explicit define-then-run graphs (TensorFlow 1 / Theano style) on @dg.function's IR.

    g = dg.static.Graph()
    with g.as_default():
        x = dg.static.placeholder((None, 3), "float32", name="x")
        w = dg.static.Variable(dg.randn(3, 1), name="w")
        y = x @ w
    with dg.static.Session(g) as sess:
        print(sess.run(y, feed_dict={x: np.ones((2, 3))}))
"""
from .graph import Graph, StaticGraphError, Variable, constant, get_default_graph, placeholder, reset_default_graph
from .session import Session
from .train import (AdamOptimizer, GradientDescentOptimizer, MomentumOptimizer, Operation, assign, assign_add,
                    assign_sub, global_variables_initializer, gradients, group, trainable_variables)

__all__ = ["Graph", "Session", "placeholder", "Variable", "constant", "gradients", "assign", "assign_add",
           "assign_sub", "group", "Operation", "global_variables_initializer", "trainable_variables",
           "GradientDescentOptimizer", "MomentumOptimizer", "AdamOptimizer", "get_default_graph",
           "reset_default_graph", "StaticGraphError"]
