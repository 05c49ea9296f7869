"""dg.static: explicit define-then-run graphs on @dg.function's IR, with TensorFlow 1's API, so that
`import dualgraph.static as tf` runs the classic TF1 tutorials:

    x = tf.placeholder(tf.float32, [None, 3], name="x")
    w = tf.Variable(tf.random_normal([3, 1]), name="w")
    loss = tf.reduce_mean(tf.square(tf.matmul(x, w) - 1.0))
    step = tf.train.GradientDescentOptimizer(0.1).minimize(loss)
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        sess.run(step, feed_dict={x: np.ones((2, 3))})

Graph nodes are dualgraph tensors: dg.* functions, operators, nn.functional and modules on them build
into the same graph. `Session.run` prunes, optimizes and compiles the graph once per set of fetches.
docs/porting.md lists the names and the known differences from TensorFlow 1.
"""
from . import dtypes, layers, losses, nn, train
from .dtypes import as_dtype, bool, double, float16, float32, float64, half, int8, int16, int32, int64, uint8
from .graph import (AUTO_REUSE, Graph, Operation, StaticGraphError, StaticTensor as Tensor, Variable, assign,
                    assign_add, assign_sub, constant, get_default_graph, get_default_session, get_variable,
                    name_scope, placeholder, reset_default_graph, variable_scope)
from .init_ops import (constant_initializer, glorot_normal_initializer, glorot_uniform_initializer,
                       ones_initializer, random_normal_initializer, random_uniform_initializer,
                       truncated_normal_initializer, zeros_initializer)
from .ops import (abs, add, add_n, argmax, argmin, cast, ceil, clip_by_value, concat, cos, divide, equal, exp,
                  expand_dims, fill, floor, floordiv, gather, greater, greater_equal, identity, less, less_equal,
                  linspace, log, log1p, logical_and, logical_not, logical_or, matmul, maximum, minimum, multiply,
                  negative, not_equal, one_hot, ones, ones_like, pow, random_normal, random_uniform, range, rank,
                  reciprocal, reduce_all, reduce_any, reduce_logsumexp, reduce_max, reduce_mean, reduce_min,
                  reduce_prod, reduce_sum, reshape, round, rsqrt, set_random_seed, shape, sigmoid, sign, sin, size,
                  sqrt, square, squared_difference, squeeze, stack, stop_gradient, subtract, tanh, tensordot, tile,
                  to_float, to_int32, to_int64, transpose, truediv, truncated_normal, unstack, where, zeros,
                  zeros_like)
from .session import InteractiveSession, Session
from .train import (global_variables, global_variables_initializer, gradients, group,
                    trainable_variables, variables_initializer)

# `from dualgraph.static import *` leaves out the names that would shadow Python builtins (abs, bool,
# pow, range, round): a script's `for i in range(n)` must keep meaning Python's range.
__all__ = ["train", "nn", "losses", "layers", "dtypes", "Graph", "Session", "InteractiveSession", "Tensor", "Variable",
           "Operation", "StaticGraphError", "placeholder", "constant", "get_variable", "name_scope", "variable_scope",
           "AUTO_REUSE", "get_default_graph", "reset_default_graph", "get_default_session", "assign", "assign_add",
           "assign_sub", "gradients", "group", "global_variables", "global_variables_initializer",
           "variables_initializer", "trainable_variables", "as_dtype", "double", "float16", "float32",
           "float64", "half", "int8", "int16", "int32", "int64", "uint8", "constant_initializer",
           "glorot_normal_initializer", "glorot_uniform_initializer", "ones_initializer", "random_normal_initializer",
           "random_uniform_initializer", "truncated_normal_initializer", "zeros_initializer", "add", "add_n",
           "argmax", "argmin", "cast", "ceil", "clip_by_value", "concat", "cos", "divide", "equal", "exp",
           "expand_dims", "fill", "floor", "floordiv", "gather", "greater", "greater_equal", "identity", "less",
           "less_equal", "linspace", "log", "log1p", "logical_and", "logical_not", "logical_or", "matmul", "maximum",
           "minimum", "multiply", "negative", "not_equal", "one_hot", "ones", "ones_like", "random_normal",
           "random_uniform", "rank", "reciprocal", "reduce_all", "reduce_any", "reduce_logsumexp",
           "reduce_max", "reduce_mean", "reduce_min", "reduce_prod", "reduce_sum", "reshape", "rsqrt",
           "set_random_seed", "shape", "sigmoid", "sign", "sin", "size", "sqrt", "square", "squared_difference",
           "squeeze", "stack", "stop_gradient", "subtract", "tanh", "tensordot", "tile", "to_float", "to_int32",
           "to_int64", "transpose", "truediv", "truncated_normal", "unstack", "where", "zeros", "zeros_like"]
