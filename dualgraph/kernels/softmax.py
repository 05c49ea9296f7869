"""softmax over the rows of a C-contiguous array (the last axis), and its gradient, as C loops for the
records of dualgraph.ops.softmax.

Forward, per row: the max (numpy's: NaN anywhere gives NaN; a row without a finite max is not shifted,
as log_softmax's loop), exp of the shifted row, its sum, and a divide per element (as numpy's `e / sum`
rounds). exp runs as one flat SIMD loop over all rows, which keeps
short rows (attention over 64 keys) from leaving the vector units idle. Backward: dx = y * (g - sum(g*y))
per row, one pass. A row whose every score is -inf gives NaN (0 / 0), as numpy's formula and PyTorch's
softmax do.
"""
from .native import I64, PTR, Loops

SOFTMAX_C = """#include <math.h>
#include <stdint.h>
#pragma GCC optimize ("fp-contract=off")
#pragma omp declare simd notinbranch
extern {t} exp{f}({t});

void softmax_forward(int64_t rows, int64_t n, const {t}* restrict x, {t}* restrict y) {{
    for (int64_t r = 0; r < rows; r++) {{
        const {t}* xr = x + r * n;
        {t}* yr = y + r * n;
        {t} m = xr[0];
        for (int64_t j = 1; j < n; j++) {{
            {t} v = xr[j];
            m = ((v > m) | (v != v)) ? v : m;
        }}
        if (!isfinite(m)) m = 0;
        for (int64_t j = 0; j < n; j++) yr[j] = xr[j] - m;
    }}
    int64_t size = rows * n;
    #pragma omp simd
    for (int64_t i = 0; i < size; i++) y[i] = exp{f}(y[i]);
    for (int64_t r = 0; r < rows; r++) {{
        {t}* yr = y + r * n;
        {t} s = 0;
        for (int64_t j = 0; j < n; j++) s += yr[j];
        for (int64_t j = 0; j < n; j++) yr[j] = yr[j] / s;
    }}
}}

void softmax_backward(int64_t rows, int64_t n, const {t}* restrict g, const {t}* restrict y,
                      {t}* restrict dx) {{
    for (int64_t r = 0; r < rows; r++) {{
        const {t}* gr = g + r * n;
        const {t}* yr = y + r * n;
        {t}* dr = dx + r * n;
        {t} s = 0;
        for (int64_t j = 0; j < n; j++) s += gr[j] * yr[j];
        for (int64_t j = 0; j < n; j++) dr[j] = yr[j] * (gr[j] - s);
    }}
}}
"""
SOFTMAX = Loops(SOFTMAX_C, {"softmax_forward": ([I64, I64, PTR, PTR], None),
                            "softmax_backward": ([I64, I64, PTR, PTR, PTR], None)})
