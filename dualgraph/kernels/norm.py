"""layer_norm over the rows of a C-contiguous (rows, n) array, forward and backward, as C loops for the
records of dualgraph.ops.normalization.

Forward, per row: the mean, the variance of the centred row and y = (x - mean) * rstd * weight + bias,
the row read from memory once (it stays in cache for the three short loops). Sums are `omp simd`
reductions in the array's type (8 partial sums for float32): a serial sum
leaves each row waiting on the adder's latency (slower than numpy's passes), and double partial sums
cost float32 a third more time here for precision the float32 output does not keep. The variance is
taken around the mean (two short loops over the cached row), not as E[x^2] - mean^2.
NaN and inf propagate as numpy's formula does (an inf in a row makes the row NaN).

Backward, one pass over the rows: per row xhat = (x - mean) * rstd, gw = g * weight, the two sums of gw
and gw * xhat, then dx = rstd * (gw - mean(gw) - xhat * mean(gw * xhat)); the same pass adds g * xhat and
g into per-column accumulators (dweight, dbias; row after row, as numpy's sum over axis 0), written out
once at the end. Without a weight the
caller passes ones (a branch in the loop would keep it from vectorizing).
"""
import ctypes

from .native import I64, PTR, Loops

F64 = ctypes.c_double

NORM_C = """#include <math.h>
#include <stdint.h>
#include <stdlib.h>

void ln_forward(int64_t rows, int64_t n, const {t}* restrict x, const {t}* restrict w, const {t}* restrict b,
                double eps, {t}* restrict y, {t}* restrict mean, {t}* restrict rstd) {{
    for (int64_t r = 0; r < rows; r++) {{
        const {t}* xr = x + r * n;
        {t}* yr = y + r * n;
        {t} s = 0;
        #pragma omp simd reduction(+:s)
        for (int64_t j = 0; j < n; j++) s += xr[j];
        {t} m = s / ({t})n;
        {t} v = 0;
        #pragma omp simd reduction(+:v)
        for (int64_t j = 0; j < n; j++) {{ {t} d = xr[j] - m; v += d * d; }}
        {t} rs = ({t})(1.0 / sqrt((double)(v / ({t})n) + eps));
        mean[r] = m;
        rstd[r] = rs;
        if (w && b) for (int64_t j = 0; j < n; j++) yr[j] = (xr[j] - m) * rs * w[j] + b[j];
        else if (w) for (int64_t j = 0; j < n; j++) yr[j] = (xr[j] - m) * rs * w[j];
        else if (b) for (int64_t j = 0; j < n; j++) yr[j] = (xr[j] - m) * rs + b[j];
        else for (int64_t j = 0; j < n; j++) yr[j] = (xr[j] - m) * rs;
    }}
}}

/* w is never NULL (the caller passes ones); dw and db are both given or both NULL. Returns 0, or -1
   where the column accumulators could not be allocated (the caller takes numpy's path). */
int ln_backward(int64_t rows, int64_t n, const {t}* restrict g, const {t}* restrict x, const {t}* restrict mean,
                const {t}* restrict rstd, const {t}* restrict w, {t}* restrict dx, {t}* restrict dw,
                {t}* restrict db) {{
    {t}* acc = ({t}*)calloc(2 * n, sizeof({t}));
    if (!acc) return -1;
    {t}* restrict aw = acc;
    {t}* restrict ab = acc + n;
    for (int64_t r = 0; r < rows; r++) {{
        const {t}* gr = g + r * n;
        const {t}* xr = x + r * n;
        {t}* dr = dx + r * n;
        {t} m = mean[r], rs = rstd[r];
        {t} s1 = 0, s2 = 0;
        #pragma omp simd reduction(+:s1, s2)
        for (int64_t j = 0; j < n; j++) {{
            {t} xh = (xr[j] - m) * rs;
            {t} gw = gr[j] * w[j];
            s1 += gw;
            s2 += gw * xh;
            aw[j] += gr[j] * xh;
            ab[j] += gr[j];
        }}
        {t} a = s1 / ({t})n, c = s2 / ({t})n;
        #pragma omp simd
        for (int64_t j = 0; j < n; j++) dr[j] = rs * ((gr[j] * w[j] - a) - ((xr[j] - m) * rs) * c);
    }}
    if (dw) for (int64_t j = 0; j < n; j++) {{ dw[j] = ({t})aw[j]; db[j] = ({t})ab[j]; }}
    free(acc);
    return 0;
}}
"""
NORM = Loops(NORM_C, {"ln_forward": ([I64, I64, PTR, PTR, PTR, F64, PTR, PTR, PTR], None),
                      "ln_backward": ([I64, I64, PTR, PTR, PTR, PTR, PTR, PTR, PTR, PTR], ctypes.c_int)})

# batch_norm over (N, C, S) (S: the spatial dims flattened), statistics per channel over N and S; the
# forward's sums and the backward's two per-channel sums are `omp simd` reductions over each contiguous
# S-long run. weight and bias are never NULL (the caller passes ones and zeros).
BATCH_NORM_C = """#include <math.h>
#include <stdint.h>

void bn_forward(int64_t nb, int64_t c, int64_t sp, const {t}* restrict x, const {t}* restrict w,
                const {t}* restrict b, double eps, {t}* restrict y, {t}* restrict mean, {t}* restrict rstd) {{
    {t} cnt = ({t})(nb * sp);
    for (int64_t k = 0; k < c; k++) {{
        {t} s = 0;
        for (int64_t i = 0; i < nb; i++) {{
            const {t}* xr = x + (i * c + k) * sp;
            #pragma omp simd reduction(+:s)
            for (int64_t j = 0; j < sp; j++) s += xr[j];
        }}
        {t} m = s / cnt, v = 0;
        for (int64_t i = 0; i < nb; i++) {{
            const {t}* xr = x + (i * c + k) * sp;
            #pragma omp simd reduction(+:v)
            for (int64_t j = 0; j < sp; j++) {{ {t} d = xr[j] - m; v += d * d; }}
        }}
        {t} rs = ({t})(1.0 / sqrt((double)(v / cnt) + eps));
        mean[k] = m;
        rstd[k] = rs;
        {t} wk = w[k], bk = b[k];
        for (int64_t i = 0; i < nb; i++) {{
            const {t}* xr = x + (i * c + k) * sp;
            {t}* yr = y + (i * c + k) * sp;
            #pragma omp simd
            for (int64_t j = 0; j < sp; j++) yr[j] = (xr[j] - m) * rs * wk + bk;
        }}
    }}
}}

void bn_backward(int64_t nb, int64_t c, int64_t sp, const {t}* restrict g, const {t}* restrict x,
                 const {t}* restrict mean, const {t}* restrict rstd, const {t}* restrict w, {t}* restrict dx,
                 {t}* restrict dw, {t}* restrict db) {{
    {t} cnt = ({t})(nb * sp);
    for (int64_t k = 0; k < c; k++) {{
        {t} m = mean[k], rs = rstd[k], s1 = 0, s2 = 0;
        for (int64_t i = 0; i < nb; i++) {{
            const {t}* gr = g + (i * c + k) * sp;
            const {t}* xr = x + (i * c + k) * sp;
            #pragma omp simd reduction(+:s1, s2)
            for (int64_t j = 0; j < sp; j++) {{ s1 += gr[j]; s2 += gr[j] * ((xr[j] - m) * rs); }}
        }}
        db[k] = s1;
        dw[k] = s2;
        {t} wk = w[k], a = s1 / cnt, e = s2 / cnt;
        for (int64_t i = 0; i < nb; i++) {{
            const {t}* gr = g + (i * c + k) * sp;
            const {t}* xr = x + (i * c + k) * sp;
            {t}* dr = dx + (i * c + k) * sp;
            #pragma omp simd
            for (int64_t j = 0; j < sp; j++) dr[j] = (wk * rs) * ((gr[j] - a) - ((xr[j] - m) * rs) * e);
        }}
    }}
}}

/* (N, C) with no spatial dims: a channel's values are a column, so the loops run over rows and keep
   per-channel sums in the outputs (vectorized across channels), as the column sums of layer_norm's backward */
void bn_rows_forward(int64_t nb, int64_t c, const {t}* restrict x, const {t}* restrict w, const {t}* restrict b,
                     double eps, {t}* restrict y, {t}* restrict mean, {t}* restrict rstd) {{
    for (int64_t k = 0; k < c; k++) mean[k] = rstd[k] = 0;
    for (int64_t i = 0; i < nb; i++)
        for (int64_t k = 0; k < c; k++) mean[k] += x[i * c + k];
    for (int64_t k = 0; k < c; k++) mean[k] /= ({t})nb;
    for (int64_t i = 0; i < nb; i++)
        for (int64_t k = 0; k < c; k++) {{ {t} d = x[i * c + k] - mean[k]; rstd[k] += d * d; }}
    for (int64_t k = 0; k < c; k++) rstd[k] = ({t})(1.0 / sqrt((double)(rstd[k] / ({t})nb) + eps));
    for (int64_t i = 0; i < nb; i++)
        for (int64_t k = 0; k < c; k++) y[i * c + k] = (x[i * c + k] - mean[k]) * rstd[k] * w[k] + b[k];
}}

void bn_rows_backward(int64_t nb, int64_t c, const {t}* restrict g, const {t}* restrict x,
                      const {t}* restrict mean, const {t}* restrict rstd, const {t}* restrict w, {t}* restrict dx,
                      {t}* restrict dw, {t}* restrict db) {{
    for (int64_t k = 0; k < c; k++) dw[k] = db[k] = 0;
    for (int64_t i = 0; i < nb; i++)
        for (int64_t k = 0; k < c; k++) {{
            {t} gv = g[i * c + k];
            db[k] += gv;
            dw[k] += gv * ((x[i * c + k] - mean[k]) * rstd[k]);
        }}
    for (int64_t i = 0; i < nb; i++)
        for (int64_t k = 0; k < c; k++)
            dx[i * c + k] = (w[k] * rstd[k]) * ((g[i * c + k] - db[k] / ({t})nb)
                                                - ((x[i * c + k] - mean[k]) * rstd[k]) * (dw[k] / ({t})nb));
}}
"""
BATCH_NORM = Loops(BATCH_NORM_C, {"bn_forward": ([I64, I64, I64, PTR, PTR, PTR, F64, PTR, PTR, PTR], None),
                                  "bn_backward": ([I64, I64, I64, PTR, PTR, PTR, PTR, PTR, PTR, PTR, PTR], None),
                                  "bn_rows_forward": ([I64, I64, PTR, PTR, PTR, F64, PTR, PTR, PTR], None),
                                  "bn_rows_backward": ([I64, I64, PTR, PTR, PTR, PTR, PTR, PTR, PTR, PTR], None)})
