/* qgemm_avx512.c: the integer forward kernel (AVX-512 VNNI, 6 rows x 32 columns per tile) and the
   activation-code packing. */
#include "qgemm.h"

#include <immintrin.h>
#include <math.h>
#include <string.h>

#define QMR 6
#define REP6(X) X(0) X(1) X(2) X(3) X(4) X(5)

static inline int32_t ld32(const uint8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* ROWS (<= 6) rows x 32 columns: per group, int32 sums (started at the offset correction) by
   vpdpbusd over the group's quads, then f += float(sum) * scale; finally C = f * s_r. */
static inline __attribute__((always_inline)) void qbody(const int ROWS, int64_t ng, int64_t gq, const uint8_t *A,
                                                        int64_t lda, const float *xs, const uint8_t *P, float *C,
                                                        int64_t ldc, int nr) {
#define DECL(i) __m512 f##i##0 = _mm512_setzero_ps(), f##i##1 = _mm512_setzero_ps(); __m512i a##i##0, a##i##1;
    REP6(DECL)
#undef DECL
    for (int64_t g = 0; g < ng; g++) {
        __m512i z0 = _mm512_loadu_si512((const void *)P), z1 = _mm512_loadu_si512((const void *)(P + 64));
        __m512 s0 = _mm512_loadu_ps((const float *)(P + 128)), s1 = _mm512_loadu_ps((const float *)(P + 192));
        P += 256;
#define INIT(i) if (i < ROWS) a##i##0 = z0, a##i##1 = z1;
        REP6(INIT)
#undef INIT
        const uint8_t *ak = A + g * gq * 4;
        for (int64_t q = 0; q < gq; q++, P += 128, ak += 4) {
            __m512i b0 = _mm512_loadu_si512((const void *)P), b1 = _mm512_loadu_si512((const void *)(P + 64));
#define DP(i)                                                                 \
    if (i < ROWS) {                                                           \
        __m512i x = _mm512_set1_epi32(ld32(ak + (int64_t)i * lda));           \
        a##i##0 = _mm512_dpbusd_epi32(a##i##0, x, b0);                        \
        a##i##1 = _mm512_dpbusd_epi32(a##i##1, x, b1);                        \
    }
            REP6(DP)
#undef DP
        }
#define ACC(i)                                                                \
    if (i < ROWS) {                                                           \
        f##i##0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(a##i##0), s0, f##i##0);  \
        f##i##1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(a##i##1), s1, f##i##1);  \
    }
        REP6(ACC)
#undef ACC
    }
    __mmask16 m0 = nr >= 16 ? 0xffff : (__mmask16)((1u << nr) - 1);
    __mmask16 m1 = nr >= 32 ? 0xffff : nr > 16 ? (__mmask16)((1u << (nr - 16)) - 1) : 0;
#define ST(i)                                                                 \
    if (i < ROWS) {                                                           \
        __m512 r = _mm512_set1_ps(xs[i]);                                     \
        _mm512_mask_storeu_ps(C + (int64_t)i * ldc, m0, _mm512_mul_ps(f##i##0, r)); \
        _mm512_mask_storeu_ps(C + (int64_t)i * ldc + 16, m1, _mm512_mul_ps(f##i##1, r)); \
    }
    REP6(ST)
#undef ST
}

static __attribute__((noinline)) void qtile(int rows, int64_t ng, int64_t gq, const uint8_t *A, int64_t lda,
                                            const float *xs, const uint8_t *P, float *C, int64_t ldc, int nr) {
    switch (rows) {
    case 6: qbody(6, ng, gq, A, lda, xs, P, C, ldc, nr); break;
    case 5: qbody(5, ng, gq, A, lda, xs, P, C, ldc, nr); break;
    case 4: qbody(4, ng, gq, A, lda, xs, P, C, ldc, nr); break;
    case 3: qbody(3, ng, gq, A, lda, xs, P, C, ldc, nr); break;
    case 2: qbody(2, ng, gq, A, lda, xs, P, C, ldc, nr); break;
    default: qbody(1, ng, gq, A, lda, xs, P, C, ldc, nr); break;
    }
}

void nb_qgemm_rows_avx512(int64_t M, int64_t N, int64_t K, int64_t G, const uint8_t *xa, const float *xs,
                          const void *wp, float *C, int64_t ldc) {
    int64_t ng = K / G, gq = G / 4, pb = ng * (256 + 32 * G);
    for (int64_t n0 = 0; n0 < N; n0 += 32) {
        const uint8_t *P = (const uint8_t *)wp + (n0 / 32) * pb;
        int nr = N - n0 < 32 ? (int)(N - n0) : 32;
        for (int64_t m = 0; m < M; m += QMR) {
            int rows = M - m < QMR ? (int)(M - m) : QMR;
            qtile(rows, ng, gq, xa + m * K, K, xs + m, P, C + m * ldc + n0, ldc, nr);
        }
    }
}

void nb_qgemm_pack_x_avx512(const float *X, int64_t M, int64_t K, float *xs, uint8_t *dst) {
    const __m512 lo = _mm512_set1_ps(-128.0f), hi = _mm512_set1_ps(127.0f);
    const __m512i off = _mm512_set1_epi32(128);
    for (int64_t m = 0; m < M; m++) {
        __m512 inv = _mm512_set1_ps(xs[m] != 0.0f ? 1.0f / xs[m] : 0.0f);
        const float *x = X + m * K;
        uint8_t *d = dst + m * K;
        __mmask16 nan = 0;
        for (int64_t k = 0; k < K; k += 16) {
            __mmask16 mk = K - k >= 16 ? 0xffff : (__mmask16)((1u << (K - k)) - 1);
            __m512 xv = _mm512_maskz_loadu_ps(mk, x + k);
            nan |= _mm512_cmp_ps_mask(xv, xv, _CMP_UNORD_Q);
            __m512 v = _mm512_mul_ps(xv, inv);
            v = _mm512_roundscale_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            v = _mm512_min_ps(_mm512_max_ps(v, lo), hi);
            __m512i q = _mm512_add_epi32(_mm512_cvtps_epi32(v), off);
            _mm512_mask_cvtepi32_storeu_epi8(d + k, mk, q);
        }
        if (nan) xs[m] = NAN;
    }
}

/* nb_qgemm_pack_w for panels [p0, p1): 16 inputs of a column at a time, their 16 codes stored as
   4 quads 128 bytes apart. Same codes and sums as the scalar loop. */
void nb_qgemm_pack_w_avx512(const float *W, int64_t N, int64_t K, int64_t G, const float *scale, int tensor,
                            int qmin, int qmax, void *dst, int64_t p0, int64_t p1) {
    int64_t ng = K / G, gb = 256 + 32 * G;
    const __m512 lo = _mm512_set1_ps((float)qmin), hi = _mm512_set1_ps((float)qmax);
    for (int64_t p = p0; p < p1; p++)
        for (int64_t g = 0; g < ng; g++) {
            uint8_t *blk = (uint8_t *)dst + (p * ng + g) * gb;
            int32_t *corr = (int32_t *)blk;
            float *sc = (float *)(blk + 128);
            uint8_t *codes = blk + 256;
            for (int j = 0; j < 32; j++) {
                int64_t n = p * 32 + j;
                if (n >= N) {
                    corr[j] = 0;
                    sc[j] = 0.0f;
                    for (int64_t q = 0; q < G / 4; q++) memset(codes + q * 128 + j * 4, 0, 4);
                    continue;
                }
                float s = scale[tensor ? 0 : n * ng + g];
                __m512 inv = _mm512_set1_ps(s != 0.0f ? 1.0f / s : 0.0f);
                const float *w = W + n * K + g * G;
                __m512i sum = _mm512_setzero_si512();
                __mmask16 nan = 0;
                for (int64_t k = 0; k < G; k += 16) {
                    __mmask16 mk = G - k >= 16 ? 0xffff : (__mmask16)((1u << (G - k)) - 1);
                    __m512 wv = _mm512_maskz_loadu_ps(mk, w + k);
                    nan |= _mm512_cmp_ps_mask(wv, wv, _CMP_UNORD_Q);
                    __m512 v = _mm512_mul_ps(wv, inv);
                    v = _mm512_roundscale_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
                    __m512i q = _mm512_maskz_mov_epi32(mk, _mm512_cvtps_epi32(_mm512_min_ps(_mm512_max_ps(v, lo), hi)));
                    sum = _mm512_add_epi32(sum, q);
                    __m128i b = _mm512_cvtepi32_epi8(q);
                    int nq = G - k >= 16 ? 4 : (int)((G - k) / 4);
                    uint8_t *d = codes + (k / 4) * 128 + j * 4;
                    int32_t qq[4];
                    _mm_storeu_si128((__m128i *)qq, b);
                    for (int i = 0; i < nq; i++) memcpy(d + i * 128, &qq[i], 4);
                }
                corr[j] = -128 * _mm512_reduce_add_epi32(sum);
                sc[j] = nan ? NAN : s; /* a NaN weight makes its outputs NaN, as in fp32 */
            }
        }
}
