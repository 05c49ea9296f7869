"""The row passes of scaled_dot_product_attention's blocks (dualgraph.ops.attention) as C loops.

A block of scores is `rows` C-contiguous rows of `n` keys; row r is query i0 + r % bq of its (batch,
head) pair. Under `causal` (diag = i0 >= 0) that query sees keys 0..i0 + r % bq only, and the loops
treat the keys past it as masked (-inf score, weight 0) instead of numpy adding a bias matrix first.

  softmax_rows   s -> exp(s - m) in place, with each row's max m (numpy's: NaN wins; a row without a
                 finite max is not shifted) and sum: the forward's max, shift, exp and sum in one
                 loop per row and one flat SIMD exp
  weights_rows   s -> exp(s - lse) in place: the backward's recomputed weights
  ds_rows        p -> p * (dp - delta) in place: softmax's gradient given delta = sum(g * out)

(lse and delta: (pairs, L) arrays, read at row i0 + r % bq of pair r / bq, so a block needs no copy.)

exp runs as one flat SIMD loop over the block (glibc's libmvec), which keeps short rows from leaving
the vector units idle. numpy's path (three to five passes per block) stays for other dtypes, device
arrays and machines without a compiler.
"""
from .native import I64, PTR, Loops

ATTENTION_C = """#include <math.h>
#include <stdint.h>
#pragma GCC optimize ("fp-contract=off")
#pragma omp declare simd notinbranch
extern {t} exp{f}({t});

static inline int64_t row_end(int64_t r, int64_t n, int64_t bq, int64_t diag) {{
    if (diag < 0) return n;
    int64_t e = diag + r % bq + 1;
    return e < n ? e : n;
}}

void softmax_rows(int64_t rows, int64_t n, int64_t bq, int64_t diag, {t}* restrict s, {t}* restrict m_out,
                  {t}* restrict total) {{
    for (int64_t r = 0; r < rows; r++) {{
        {t}* sr = s + r * n;
        int64_t e = row_end(r, n, bq, diag);
        {t} m = -INFINITY;
        for (int64_t j = 0; j < e; j++) {{
            {t} v = sr[j];
            m = ((v > m) | (v != v)) ? v : m;
        }}
        if (!isfinite(m)) m = 0;
        m_out[r] = m;
        for (int64_t j = 0; j < e; j++) sr[j] -= m;
        for (int64_t j = e; j < n; j++) sr[j] = -INFINITY;
    }}
    int64_t size = rows * n;
    #pragma omp simd
    for (int64_t i = 0; i < size; i++) s[i] = exp{f}(s[i]);
    for (int64_t r = 0; r < rows; r++) {{
        const {t}* sr = s + r * n;
        {t} acc = 0;
        for (int64_t j = 0; j < n; j++) acc += sr[j];
        total[r] = acc;
    }}
}}

void weights_rows(int64_t rows, int64_t n, int64_t bq, int64_t diag, {t}* restrict s, const {t}* restrict lse,
                  int64_t ld, int64_t i0) {{
    for (int64_t r = 0; r < rows; r++) {{
        {t}* sr = s + r * n;
        int64_t e = row_end(r, n, bq, diag);
        {t} l = lse[(r / bq) * ld + i0 + r % bq];
        for (int64_t j = 0; j < e; j++) sr[j] -= l;
        for (int64_t j = e; j < n; j++) sr[j] = -INFINITY;
    }}
    int64_t size = rows * n;
    #pragma omp simd
    for (int64_t i = 0; i < size; i++) s[i] = exp{f}(s[i]);
}}

void ds_rows(int64_t rows, int64_t n, int64_t bq, {t}* restrict p, const {t}* restrict dp,
             const {t}* restrict delta, int64_t ld, int64_t i0) {{
    for (int64_t r = 0; r < rows; r++) {{
        {t}* pr = p + r * n;
        const {t}* dr = dp + r * n;
        {t} d = delta[(r / bq) * ld + i0 + r % bq];
        for (int64_t j = 0; j < n; j++) pr[j] = pr[j] * (dr[j] - d);
    }}
}}
"""
ATTENTION = Loops(ATTENTION_C, {"softmax_rows": ([I64, I64, I64, I64, PTR, PTR, PTR], None),
                                "weights_rows": ([I64, I64, I64, I64, PTR, PTR, I64, I64], None),
                                "ds_rows": ([I64, I64, I64, PTR, PTR, PTR, I64, I64], None)})
