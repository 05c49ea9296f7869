"""C loops over the rows of a 2-D (or row-major N-D) array, for the ops that own them.

log_softmax (dualgraph.ops.softmax) runs each row as max, sum of exp, log; its gradient as a sum and
g - exp(y) * sum. nll_loss (dualgraph.ops.loss) makes one pass over the samples each way, summing in
double. Each source is a template over the float type ({t}) and libm's suffix ({f}), built per dtype
by `native.Loops`; the ops check their layout and fall back to numpy where these do not apply.
"""
import ctypes

from .native import I64, PTR, Loops

# exp runs as one flat loop over all rows (a row of 10 classes alone would leave most of each SIMD
# vector idle and send the remainder to scalar expf); the per-row steps are short loops around it
LOG_SOFTMAX_C = """#include <math.h>
#include <stdint.h>
#pragma omp declare simd notinbranch
extern {t} exp{f}({t});

static void flat_exp(int64_t size, {t}* restrict v) {{
    #pragma omp simd
    for (int64_t i = 0; i < size; i++) v[i] = exp{f}(v[i]);
}}

void lsm_forward(int64_t rows, int64_t n, const {t}* restrict x, {t}* restrict y, {t}* restrict e) {{
    for (int64_t r = 0; r < rows; r++) {{
        const {t}* xr = x + r * n;
        {t}* yr = y + r * n;
        {t}* er = e + r * n;
        {t} m = xr[0];
        for (int64_t j = 1; j < n; j++) {{  /* numpy's max: a NaN anywhere gives NaN */
            {t} v = xr[j];
            m = ((v > m) | (v != v)) ? v : m;
        }}
        if (!isfinite(m)) m = 0;
        for (int64_t j = 0; j < n; j++) er[j] = yr[j] = xr[j] - m;
    }}
    flat_exp(rows * n, e);
    for (int64_t r = 0; r < rows; r++) {{
        const {t}* er = e + r * n;
        {t}* yr = y + r * n;
        {t} s = 0;
        for (int64_t j = 0; j < n; j++) s += er[j];
        {t} ls = log{f}(s);
        for (int64_t j = 0; j < n; j++) yr[j] -= ls;
    }}
}}

void lsm_backward(int64_t rows, int64_t n, const {t}* restrict g, const {t}* restrict y, {t}* restrict dx) {{
    for (int64_t i = 0; i < rows * n; i++) dx[i] = y[i];
    flat_exp(rows * n, dx);
    for (int64_t r = 0; r < rows; r++) {{
        const {t}* gr = g + r * n;
        {t}* dr = dx + r * n;
        {t} s = 0;
        for (int64_t j = 0; j < n; j++) s += gr[j];
        for (int64_t j = 0; j < n; j++) dr[j] = gr[j] - dr[j] * s;
    }}
}}
"""
LOG_SOFTMAX = Loops(LOG_SOFTMAX_C, {"lsm_forward": ([I64, I64, PTR, PTR, PTR], None),
                                    "lsm_backward": ([I64, I64, PTR, PTR, PTR], None)})

# forward returns the first bad target's position (-1: none), and the sum and summed weight in totals
NLL_C = """#include <stdint.h>
int64_t nll_forward(int64_t n, int64_t c, const {t}* lp, const int64_t* target, const {t}* weight,
                int64_t ignore, {t}* per_sample, double* totals) {{
    double s = 0, ws = 0;
    for (int64_t i = 0; i < n; i++) {{
        int64_t k = target[i];
        if (k == ignore) {{ if (per_sample) per_sample[i] = 0; continue; }}
        if (k < 0 || k >= c) return i;
        {t} w = weight ? weight[k] : ({t})1;
        {t} v = -(lp[i * c + k] * w);
        if (per_sample) per_sample[i] = v;
        s += v;
        ws += w;
    }}
    totals[0] = s;
    totals[1] = ws;
    return -1;
}}

/* reduction: 0 none (g per sample), 1 mean, 2 sum; ignored samples get 0, as PyTorch */
void nll_backward(int64_t n, int64_t c, const int64_t* target, const {t}* weight, int64_t ignore,
              const {t}* g, int64_t reduction, {t}* out) {{
    for (int64_t i = 0; i < n * c; i++) out[i] = 0;
    {t} scale = reduction == 0 ? 0 : -g[0];
    if (reduction == 1) {{
        double ws = 0;
        for (int64_t i = 0; i < n; i++)
            if (target[i] != ignore) ws += weight ? weight[target[i]] : 1;
        scale = -g[0] / ({t})ws;
    }}
    for (int64_t i = 0; i < n; i++) {{
        int64_t k = target[i];
        if (k == ignore) continue;
        {t} w = weight ? weight[k] : ({t})1;
        out[i * c + k] = w * (reduction == 0 ? -g[i] : scale);
    }}
}}
"""
NLL = Loops(NLL_C, {"nll_forward": ([I64, I64, PTR, PTR, PTR, I64, PTR, PTR], ctypes.c_int64),
                    "nll_backward": ([I64, I64, PTR, PTR, I64, PTR, I64, PTR], None)})
