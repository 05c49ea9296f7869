"""C loops for the per-step gate math of the recurrent layers (dualgraph.ops.rnn).

Between two matmuls a step of an LSTM is about ten elementwise numpy calls on (batch, 4*hidden) arrays,
two of them tanh, which numpy computes one element at a time: at batch 32, hidden 256 that is ~0.5 ms a
step against ~1 ms for the step's matmul. One C loop per step does it in one pass with libmvec's SIMD
tanh. The sources are templates over the float type ({t}) and libm's suffix ({f}); `ops/rnn.py` checks
the layout (numpy, C-contiguous, one dtype) and keeps its numpy path where these do not apply.
"""
from .native import I64, PTR, Loops

RNN_C = """#include <math.h>
#include <stdint.h>
#pragma omp declare simd notinbranch
extern {t} tanh{f}({t});

/* LSTM, after g = h @ W_hh.T with the sigmoid rows (i, f, o) pre-scaled by 0.5: g += pre, activated in
   place (sigmoid as 0.5 * tanh(x / 2) + 0.5); c_out = f * c + i * g; h = o * tanh(c_out) */
void lstm_step(int64_t B, int64_t H, const {t}* restrict pre, {t}* restrict g, const {t}* restrict c,
               {t}* restrict c_out, {t}* restrict h) {{
    const {t} half = ({t})0.5;
    for (int64_t b = 0; b < B; b++) {{
        {t}* gb = g + b * 4 * H;
        const {t}* pb = pre + b * 4 * H;
        const {t}* cb = c + b * H;
        {t}* cob = c_out + b * H;
        {t}* hb = h + b * H;
        #pragma omp simd
        for (int64_t j = 0; j < 4 * H; j++) gb[j] = tanh{f}(gb[j] + pb[j]);
        #pragma omp simd
        for (int64_t j = 0; j < H; j++) {{
            {t} i = half * gb[j] + half, f = half * gb[H + j] + half, o = half * gb[3 * H + j] + half;
            gb[j] = i;
            gb[H + j] = f;
            gb[3 * H + j] = o;
            {t} cn = f * cb[j] + i * gb[2 * H + j];
            cob[j] = cn;
            hb[j] = o * tanh{f}(cn);
        }}
    }}
}}

/* LSTM backward, one step, from the step's activated gates (i, f, g, o) and cell states c_t, c_{{t-1}}:
   dh += gy (when given); dc += dh * o * (1 - tanh(c_t)^2); the gates' pre-activation gradients
   d = (dc*g*i(1-i), dc*c_{{t-1}}*f(1-f), dc*i*(1-g^2), dh*tanh(c_t)*o(1-o)); dc *= f */
void lstm_back_step(int64_t B, int64_t H, const {t}* restrict gy, const {t}* restrict gates,
                    const {t}* restrict c, const {t}* restrict c_prev, {t}* restrict dh, {t}* restrict dc,
                    {t}* restrict d) {{
    const {t} one = ({t})1;
    for (int64_t b = 0; b < B; b++) {{
        const {t}* gb = gates + b * 4 * H;
        const {t}* cb = c + b * H;
        const {t}* pb = c_prev + b * H;
        {t}* dhb = dh + b * H;
        {t}* dcb = dc + b * H;
        {t}* db = d + b * 4 * H;
        #pragma omp simd
        for (int64_t j = 0; j < H; j++) {{
            {t} i = gb[j], f = gb[H + j], g = gb[2 * H + j], o = gb[3 * H + j];
            {t} tc = tanh{f}(cb[j]);
            {t} h = gy ? dhb[j] + gy[b * H + j] : dhb[j];
            {t} cc = dcb[j] + h * (o * (one - tc * tc));
            db[j] = cc * (g * i * (one - i));
            db[H + j] = cc * (pb[j] * f * (one - f));
            db[2 * H + j] = cc * (i * (one - g * g));
            db[3 * H + j] = h * (tc * o * (one - o));
            dhb[j] = h;
            dcb[j] = cc * f;
        }}
    }}
}}

/* GRU, after hw = h @ W_hh.T with the r and z rows pre-scaled by 0.5: r, z = 0.5 * tanh(hw + pre) + 0.5,
   hn = hw_n + b_hn, n = tanh(pre_n + r * hn), h' = n + z * (h - n); r, z, n written over hw */
void gru_step(int64_t B, int64_t H, const {t}* restrict pre, {t}* restrict hw, const {t}* restrict b_hn,
              const {t}* restrict h, {t}* restrict hn_out, {t}* restrict h_out) {{
    const {t} half = ({t})0.5;
    for (int64_t b = 0; b < B; b++) {{
        {t}* wb = hw + b * 3 * H;
        const {t}* pb = pre + b * 3 * H;
        const {t}* hb = h + b * H;
        {t}* nb = hn_out + b * H;
        {t}* ob = h_out + b * H;
        #pragma omp simd
        for (int64_t j = 0; j < H; j++) {{
            {t} r = half * tanh{f}(wb[j] + pb[j]) + half;
            {t} z = half * tanh{f}(wb[H + j] + pb[H + j]) + half;
            {t} hn = wb[2 * H + j] + b_hn[j];
            {t} n = tanh{f}(pb[2 * H + j] + r * hn);
            wb[j] = r;
            wb[H + j] = z;
            wb[2 * H + j] = n;
            nb[j] = hn;
            ob[j] = n + z * (hb[j] - n);
        }}
    }}
}}

/* GRU backward, one step: dh += gy; dgx = (dn * Ar, dh * Az, dn) with dn = dh * An; dgh = dgx with its
   n block times r; dh *= z (the caller adds dgh @ W_hh). r and z read from the gates (row stride 3*H) */
void gru_back_step(int64_t B, int64_t H, const {t}* restrict gy, const {t}* restrict Az, const {t}* restrict An,
                   const {t}* restrict Ar, const {t}* restrict gates, {t}* restrict dh, {t}* restrict dgx,
                   {t}* restrict dgh) {{
    for (int64_t b = 0; b < B; b++) {{
        const {t}* gb = gates + b * 3 * H;
        {t}* dhb = dh + b * H;
        {t}* xb = dgx + b * 3 * H;
        {t}* hb = dgh + b * 3 * H;
        #pragma omp simd
        for (int64_t j = 0; j < H; j++) {{
            int64_t k = b * H + j;
            {t} h = dhb[j] + gy[k];
            {t} dn = h * An[k], dz = h * Az[k], dr = dn * Ar[k];
            xb[j] = hb[j] = dr;
            xb[H + j] = hb[H + j] = dz;
            xb[2 * H + j] = dn;
            hb[2 * H + j] = dn * gb[j];
            dhb[j] = h * gb[H + j];
        }}
    }}
}}
"""

RNN_LOOPS = Loops(RNN_C, {"lstm_step": ([I64, I64, PTR, PTR, PTR, PTR, PTR], None),
                          "lstm_back_step": ([I64, I64, PTR, PTR, PTR, PTR, PTR, PTR, PTR], None),
                          "gru_step": ([I64, I64, PTR, PTR, PTR, PTR, PTR, PTR], None),
                          "gru_back_step": ([I64, I64, PTR, PTR, PTR, PTR, PTR, PTR, PTR, PTR], None)})
