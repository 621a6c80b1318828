/* qdot_avx512.c: AVX-512 VNNI twins of the integer dot kernels (qdot.h): vpdpbusd does the
   u8 x s8 products and their 4-way sums in one instruction. Same integer sums and float order as
   the scalar twins, so results are bit-identical. */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "qdot.h"
#include "qdot_x86.h"

/* prefetch distance of the packed matvec when its weights stream from DRAM (bytes ahead) */
#define NB_QPACK_PF 32768

/* Signed x signed via u8 x s8: |a| (weights, -128 -> 128 unsigned) times b with a's sign. */
static inline __m256i dp_i8(__m256i acc, __m256i a, __m256i b) {
    return _mm256_dpbusd_epi32(acc, _mm256_abs_epi8(a), _mm256_sign_epi8(b, a));
}

int32_t nb_isum_i8_avx512(int64_t n, const int8_t *a, const int8_t *b) {
    __m512i acc = _mm512_setzero_si512();
    const __m512i zero = _mm512_setzero_si512();
    int64_t i = 0;
    for (; i + 64 <= n; i += 64) {
        __m512i va = _mm512_loadu_si512(a + i), vb = _mm512_loadu_si512(b + i);
        __mmask64 neg = _mm512_movepi8_mask(va);
        __m512i sb = _mm512_mask_sub_epi8(vb, neg, zero, vb); /* b with a's sign */
        acc = _mm512_dpbusd_epi32(acc, _mm512_abs_epi8(va), sb);
    }
    __m256i acc8 = _mm256_add_epi32(_mm512_castsi512_si256(acc), _mm512_extracti64x4_epi64(acc, 1));
    for (; i + 32 <= n; i += 32)
        acc8 = dp_i8(acc8, _mm256_loadu_si256((const __m256i *)(a + i)), _mm256_loadu_si256((const __m256i *)(b + i)));
    if (i < n) { /* the tail: masked loads, zeros past it */
        const __mmask32 m = (__mmask32)((1u << (n - i)) - 1);
        acc8 = dp_i8(acc8, _mm256_maskz_loadu_epi8(m, a + i), _mm256_maskz_loadu_epi8(m, b + i));
    }
    return hsum_i32(acc8);
}

float nb_dot_q8_0_q8_0_avx512(int64_t n, const nb_block_q8_0 *w, const nb_block_q8_0 *x) {
    __m256 acc = _mm256_setzero_ps();
    const __m256i z = _mm256_setzero_si256();
    for (int64_t b = 0; b < n / NB_QK; b++) {
        __m256i p = dp_i8(z, _mm256_loadu_si256((const __m256i *)w[b].qs), _mm256_loadu_si256((const __m256i *)x[b].qs));
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(h2f(w[b].d) * h2f(x[b].d)), acc);
    }
    return hsum_f8(acc);
}

float nb_dot_q4_0_q8_0_avx512(int64_t n, const nb_block_q4_0 *w, const nb_block_q8_0 *x) {
    __m256 acc = _mm256_setzero_ps();
    const __m256i z = _mm256_setzero_si256();
    for (int64_t b = 0; b < n / NB_QK; b++) {
        __m256i p = dp_i8(z, unpack_q4_0(w[b].qs), _mm256_loadu_si256((const __m256i *)x[b].qs));
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(h2f(w[b].d) * h2f(x[b].d)), acc);
    }
    return hsum_f8(acc);
}

float nb_dot_i4_i8_avx512(int64_t n, int64_t group, const uint8_t *w, const float *ws, const int8_t *wz,
                          const int8_t *x, const float *xs) {
    float acc = 0.0f;
    for (int64_t g0 = 0, g = 0; g0 < n; g0 += group, g++) {
        int64_t len = n - g0 < group ? n - g0 : group;
        __m256i v = _mm256_setzero_si256();
        int64_t j = 0;
        for (; j + 32 <= len; j += 32)
            v = dp_i8(v, unpack_i4(w + (g0 + j) / 2), _mm256_loadu_si256((const __m256i *)(x + g0 + j)));
        if (j < len) { /* a short last group: masked loads (no fault past the row), codes past it are 0 */
            const int64_t m = len - j; /* 1..31; g0 + j is even */
            const __m128i pw = _mm_maskz_loadu_epi8((__mmask16)((1u << ((m + 1) / 2)) - 1), w + (g0 + j) / 2);
            const __m256i xv = _mm256_maskz_loadu_epi8((__mmask32)((1u << m) - 1), x + g0 + j);
            v = dp_i8(v, unpack_i4_v(pw), xv); /* a nibble past the tail meets a 0 activation */
        }
        int32_t s = hsum_i32(v);
        if (wz) {
            int32_t sx = 0;
            for (int64_t k = 0; k < len; k++) sx += x[g0 + k];
            s -= (int32_t)wz[g] * sx;
        }
        acc = fmaf((float)s * ws[g], xs[g], acc);
    }
    return acc;
}

float nb_dot_f32_avx512(int64_t n, const float *w, const float *x) {
    __m512 a = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) a = _mm512_fmadd_ps(_mm512_loadu_ps(w + i), _mm512_loadu_ps(x + i), a);
    float s[16];
    _mm512_storeu_ps(s, a);
    for (; i < n; i++) s[i & 15] = fmaf(w[i], x[i], s[i & 15]);
    for (int k = 8; k >= 1; k /= 2)
        for (int j = 0; j < k; j++) s[j] += s[j + k];
    return s[0];
}

#define NB_ALWAYS static inline __attribute__((always_inline))
/* The Q8_0 / Q4_0 row kernels read four rows side by side, which the hardware prefetchers follow
   poorly once the matrix comes from DRAM: each step prefetches, into L2, the same place
   NB_LANES_PF rows further on, when nb_qdot_prefetch() says the weights stream from memory. */
#define NB_LANES_PF 8

/* the scalar twins' tree over 8 lanes, in registers: (j, j+4), (j, j+2), (0, 1) */
NB_ALWAYS float tree8(__m256 v) {
    __m128 a = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    __m128 b = _mm_add_ps(a, _mm_movehl_ps(a, a));
    return _mm_cvtss_f32(_mm_add_ss(b, _mm_shuffle_ps(b, b, 1)));
}

/* ---- matrix x vector on 16-row packed blocks (qdot.h, nb_qpack) ---- */

/* -off times the activation sum of group g (off: the codes' unsigned shift), from its lane sums */
static inline int32_t qpack_xoff(int i4, const int32_t *lsum, int64_t g) {
    const __m256i l = _mm256_loadu_si256((const __m256i *)(lsum + g * 8));
    __m128i t = _mm_add_epi32(_mm256_castsi256_si128(l), _mm256_extracti128_si256(l, 1));
    t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0x4e));
    t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0xb1));
    return -(int32_t)((uint32_t)_mm_cvtsi128_si32(t) << (i4 ? 3 : 7));
}

static inline __m512i bcast4(const int8_t *p) { /* 4 activation codes, in every lane */
    int32_t v;
    memcpy(&v, p, 4);
    return _mm512_set1_epi32(v);
}

/* one block's 16 rows, one per lane: each group's exact sum in two int32 chains (wrapping: the
   shifted partial sums may pass 2^31 for huge groups, the true sum does not), then as the twin:
   acc = fma((float)s * scale, xs[g], acc) */
static inline __attribute__((always_inline)) __m512 qpack_block(const int i4, const int pf, const uint8_t *codes,
                                                                 const float *sc, int64_t ng, int64_t group, size_t gb,
                                                                 const int8_t *x, const float *xs, const int32_t *xoff,
                                                                 const int32_t *lsum) {
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    __m512 acc = _mm512_setzero_ps();
    for (int64_t g = 0; g < ng; g++) {
        const uint8_t *o = codes + (size_t)g * gb;
        const int8_t *xg = x + g * group;
        __m512i sa = _mm512_set1_epi32(xoff ? xoff[g] : qpack_xoff(i4, lsum, g)), sb = _mm512_setzero_si512();
        if (i4)
            for (int64_t p = 0; p < group / 8; p++) {
                if (pf) _mm_prefetch((const char *)(o + p * 64) + NB_QPACK_PF, _MM_HINT_T1);
                const __m512i v = _mm512_loadu_si512(o + p * 64);
                sa = _mm512_dpbusd_epi32(sa, _mm512_and_si512(v, m4), bcast4(xg + 8 * p));
                sb = _mm512_dpbusd_epi32(sb, _mm512_and_si512(_mm512_srli_epi16(v, 4), m4), bcast4(xg + 8 * p + 4));
            }
        else
            for (int64_t k = 0; k < group / 4; k += 2) { /* group / 4 is even */
                if (pf) _mm_prefetch((const char *)(o + k * 64) + NB_QPACK_PF, _MM_HINT_T1);
                if (pf) _mm_prefetch((const char *)(o + k * 64 + 64) + NB_QPACK_PF, _MM_HINT_T1);
                sa = _mm512_dpbusd_epi32(sa, _mm512_loadu_si512(o + k * 64), bcast4(xg + 4 * k));
                sb = _mm512_dpbusd_epi32(sb, _mm512_loadu_si512(o + k * 64 + 64), bcast4(xg + 4 * k + 4));
            }
        const __m512 f = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(sa, sb)), _mm512_loadu_ps(sc + g * 16));
        acc = _mm512_fmadd_ps(f, _mm512_set1_ps(xs[g]), acc);
    }
    return acc;
}

static inline __attribute__((always_inline)) void qpack_rows(const int i4, const int pf, const void *pk, int64_t rows,
                                                              int64_t n, int64_t group, int64_t r0, int64_t nr,
                                                              const int8_t *x, const float *xs, const int32_t *lsum,
                                                              float *y) {
    const int64_t ng = (n + group - 1) / group, nb = (rows + 15) / 16; /* a short last group: zero codes */
    const size_t gb = (size_t)(i4 ? group / 8 : group / 4) * 64;
    const uint8_t *codes = pk;
    const float *sc = (const float *)(codes + (size_t)nb * ng * gb);
    int32_t buf[512]; /* the groups' offsets, once per call (computed per group and block past 512 groups) */
    const int32_t *xoff = NULL;
    if (ng <= 512) {
        for (int64_t g = 0; g < ng; g++) buf[g] = qpack_xoff(i4, lsum, g);
        xoff = buf;
    }
    for (int64_t b = r0 / 16; b * 16 < r0 + nr; b++) {
        const __m512 acc = qpack_block(i4, pf, codes + (size_t)b * ng * gb, sc + (size_t)b * ng * 16, ng, group, gb, x,
                                       xs, xoff, lsum);
        const int64_t lo = b * 16 < r0 ? r0 : b * 16, hi = b * 16 + 16 > r0 + nr ? r0 + nr : b * 16 + 16;
        if (lo == b * 16 && hi == b * 16 + 16) _mm512_storeu_ps(y + (lo - r0), acc);
        else {
            float t[16];
            _mm512_storeu_ps(t, acc);
            for (int64_t r = lo; r < hi; r++) y[r - r0] = t[r - b * 16];
        }
    }
}

void nb_matvec_qpack_avx512(int i4, const void *pk, int64_t rows, int64_t n, int64_t group, int64_t r0, int64_t nr,
                            const int8_t *x, const float *xs, const int32_t *lsum, float *y) {
    const int pf = nb_qdot_prefetch();
    if (i4) {
        if (pf) qpack_rows(1, 1, pk, rows, n, group, r0, nr, x, xs, lsum, y);
        else qpack_rows(1, 0, pk, rows, n, group, r0, nr, x, xs, lsum, y);
    } else {
        if (pf) qpack_rows(0, 1, pk, rows, n, group, r0, nr, x, xs, lsum, y);
        else qpack_rows(0, 0, pk, rows, n, group, r0, nr, x, xs, lsum, y);
    }
}

/* ---- activation side ---- */

/* nb_quantize_act_i8_ref, 16 at a time: amax is order-free, the scale and its inverse are the same
   scalar expressions, codes are rint(x * inv) clamped (vrndscaleps, nearest-even = rintf in the
   default rounding mode). A group holding a non-finite value goes to the scalar twin. */
void nb_quantize_act_i8_avx512(const float *x, int8_t *q, float *s, int64_t n, int64_t group) {
    const __m512 lim = _mm512_set1_ps(127.0f), nlim = _mm512_set1_ps(-127.0f), big = _mm512_set1_ps(3.402823466e38f);
    for (int64_t g0 = 0, g = 0; g0 < n; g0 += group, g++) {
        const int64_t len = n - g0 < group ? n - g0 : group;
        __m512 mx = _mm512_setzero_ps();
        __mmask16 ok = 0xffff;
        for (int64_t j = 0; j < len; j += 16) {
            const __mmask16 m = len - j >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (len - j)) - 1);
            __m512 a = _mm512_abs_ps(_mm512_maskz_loadu_ps(m, x + g0 + j));
            ok &= _mm512_cmp_ps_mask(a, big, _CMP_LE_OQ) | (__mmask16)~m; /* false for inf, NaN */
            mx = _mm512_max_ps(mx, a);
        }
        if (ok != 0xffff) {
            nb_quantize_act_i8_ref(x + g0, q + g0, s + g, len, len);
            continue;
        }
        const float amax = _mm512_reduce_max_ps(mx), sc = amax / 127.0f;
        s[g] = sc;
        const __m512 inv = _mm512_set1_ps(sc != 0.0f ? 1.0f / sc : 0.0f);
        for (int64_t j = 0; j < len; j += 16) {
            const __mmask16 m = len - j >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (len - j)) - 1);
            __m512 v = _mm512_roundscale_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + g0 + j), inv),
                                            _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            v = _mm512_min_ps(_mm512_max_ps(v, nlim), lim);
            _mm_mask_storeu_epi8(q + g0 + j, m, _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(v)));
        }
    }
}

/* lane sums: vpdpbusd of ones (u8) with the codes sums each 4 consecutive codes into a lane */
void nb_act_lanesums_avx512(int64_t n, int64_t group, const int8_t *x, int32_t *lsum) {
    const __m512i ones = _mm512_set1_epi8(1);
    for (int64_t g0 = 0, g = 0; g0 < n; g0 += group, g++) {
        __m512i a = _mm512_setzero_si512();
        __m256i b = _mm256_setzero_si256();
        int64_t j = 0;
        for (; j + 64 <= group; j += 64) a = _mm512_dpbusd_epi32(a, ones, _mm512_loadu_si512(x + g0 + j));
        if (j < group) b = _mm256_dpbusd_epi32(b, _mm512_castsi512_si256(ones), _mm256_loadu_si256((const __m256i *)(x + g0 + j)));
        b = _mm256_add_epi32(b, _mm256_add_epi32(_mm512_castsi512_si256(a), _mm512_extracti64x4_epi64(a, 1)));
        _mm256_storeu_si256((__m256i *)(lsum + g * 8), b);
    }
}

/* ---- ggml Q8_0 / Q4_0 rows x one Q8_0 activation row, four rows side by side ----
   Q4_0 nibbles are already w + 8 (unsigned); Q8_0 codes become w + 128 by flipping the sign bit.
   The per-block scale is the scalar twin's product fp16(w.d) * fp16(x.d). */
NB_ALWAYS __m256i ld_q4_0_u(const uint8_t *qs) {
    const __m256i b = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)qs));
    return _mm256_and_si256(_mm256_srlv_epi64(b, _mm256_set_epi64x(4, 4, 0, 0)), _mm256_set1_epi8(15));
}

NB_ALWAYS void rows_q(const int R, const int q4, const int pf, int64_t nb, const uint8_t *w, size_t rb, const nb_block_q8_0 *x,
                      const int32_t *lsum, float *y) {
    const int sh = q4 ? 3 : 7;
    __m256 acc[4];
    for (int r = 0; r < R; r++) acc[r] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const __m256i xv = _mm256_loadu_si256((const __m256i *)x[b].qs);
        const __m256i c = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(_mm256_loadu_si256((const __m256i *)(lsum + b * 8)), sh));
        const float dx = h2f(x[b].d);
        for (int r = 0; r < R; r++) {
            __m256i u;
            float dw;
            if (pf)
                _mm_prefetch((const char *)(w + r * rb) + (q4 ? sizeof(nb_block_q4_0) : sizeof(nb_block_q8_0)) * b +
                                 NB_LANES_PF * rb, _MM_HINT_T1);
            if (q4) {
                const nb_block_q4_0 *wb = (const nb_block_q4_0 *)(w + r * rb) + b;
                u = ld_q4_0_u(wb->qs);
                dw = h2f(wb->d);
            } else {
                const nb_block_q8_0 *wb = (const nb_block_q8_0 *)(w + r * rb) + b;
                u = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)wb->qs), _mm256_set1_epi8((char)0x80));
                dw = h2f(wb->d);
            }
            acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_dpbusd_epi32(c, u, xv)), _mm256_set1_ps(dw * dx), acc[r]);
        }
    }
    for (int r = 0; r < R; r++) y[r] = tree8(acc[r]);
}

NB_ALWAYS void matvec_q(const int q4, int64_t rows, int64_t n, const uint8_t *w, const nb_block_q8_0 *x,
                        const int32_t *lsum, float *y) {
    const int64_t nb = n / NB_QK;
    const size_t rb = (size_t)nb * (q4 ? sizeof(nb_block_q4_0) : sizeof(nb_block_q8_0));
    int64_t r = 0;
    if (nb_qdot_prefetch()) {
        for (; r + 4 <= rows; r += 4) rows_q(4, q4, 1, nb, w + r * rb, rb, x, lsum, y + r);
        for (; r < rows; r++) rows_q(1, q4, 1, nb, w + r * rb, rb, x, lsum, y + r);
    } else {
        for (; r + 4 <= rows; r += 4) rows_q(4, q4, 0, nb, w + r * rb, rb, x, lsum, y + r);
        for (; r < rows; r++) rows_q(1, q4, 0, nb, w + r * rb, rb, x, lsum, y + r);
    }
}

void nb_matvec_q8_0_avx512(int64_t rows, int64_t n, const nb_block_q8_0 *w, const nb_block_q8_0 *x,
                           const int32_t *lsum, float *y) {
    matvec_q(0, rows, n, (const uint8_t *)w, x, lsum, y);
}

void nb_matvec_q4_0_avx512(int64_t rows, int64_t n, const nb_block_q4_0 *w, const nb_block_q8_0 *x,
                           const int32_t *lsum, float *y) {
    matvec_q(1, rows, n, (const uint8_t *)w, x, lsum, y);
}
