"""Every compiled kernel dualgraph runs: generated and hand-written C, CUDA through cupy, and the
generated numpy code they fall back to.

    native      compiles small C loops once with the system C compiler, caches and loads them (ctypes)
    ckernel     a fused elementwise chain (broadcasting, with trailing reductions) as one generated C
                loop nest, from the op records' `expr` and `reduce`
    fused       the kernel of a `fused_elementwise`/`fused_reduce` node: the C loop when it applies, else
                generated numpy ufunc calls (from the records' `ufunc`); one cupy.ElementwiseKernel on a GPU
    rows        C loops over the rows of a 2-D array: log_softmax and nll_loss, forward and backward
    xent        log_softmax + nll_loss (and their gradients) as one C call each way
    where_zero  where(mask, a, 0) and the same with its column sums, bit-exact to numpy's where
    conv        convolution and its two gradients (C im2col / col2im around BLAS matmuls, a block of
                samples at a time), max pooling's indices and gradient, average pooling
    attention   the row passes of scaled_dot_product_attention's query-row blocks (max, exp, sum;
                recomputed weights; softmax's gradient), causal masking included

Ops and kernel ops (dualgraph.ops) call into these modules; nothing here imports an op module, so
the kernels package sits below ops. Every kernel has a numpy path for when no compiler is there.
"""
