/* qdot_avx512.c: AVX-512 VNNI twins of the integer dot kernels (qdot.h): vpdpbusd does the
   u8 x s8 products and their 4-way sums in one instruction. Same integer sums and float order as
   the scalar twins, so results are bit-identical. */
#include <immintrin.h>
#include <math.h>

#include "qdot.h"
#include "qdot_x86.h"

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
    int32_t s = hsum_i32(acc8);
    for (; i < n; i++) s += (int32_t)a[i] * b[i];
    return s;
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
        int32_t s = hsum_i32(v);
        for (; j < len; j++) s += nb_i4_get(w, g0 + j) * x[g0 + j];
        if (wz) {
            int32_t sx = 0;
            for (int64_t k = 0; k < len; k++) sx += x[g0 + k];
            s -= (int32_t)wz[g] * sx;
        }
        acc = fmaf((float)s * ws[g], xs[g], acc);
    }
    return acc;
}

/* lane order (see nb_dot_i8_i8_ref): int lanes per group, two independent chains */
float nb_dot_i8_i8_lanes_avx512(int64_t n, int64_t group, const int8_t *w, const float *ws, const int8_t *x,
                              const float *xs) {
    __m256 acc = _mm256_setzero_ps();
    if (group == 32) { /* one chunk per group: the common QAT group size */
        for (int64_t j = 0, g = 0; j < n; j += 32, g++) {
            __m256i v = dp_i8(_mm256_setzero_si256(), _mm256_loadu_si256((const __m256i *)(w + j)), _mm256_loadu_si256((const __m256i *)(x + j)));
            acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(v), _mm256_set1_ps(ws[g] * xs[g]), acc);
        }
        return hsum_f8(acc);
    }
    for (int64_t g0 = 0, g = 0; g0 < n; g0 += group, g++) {
        __m256i v = _mm256_setzero_si256(), v2 = _mm256_setzero_si256();
        int64_t j = 0;
        for (; j + 64 <= group; j += 64) {
            v = dp_i8(v, _mm256_loadu_si256((const __m256i *)(w + g0 + j)), _mm256_loadu_si256((const __m256i *)(x + g0 + j)));
            v2 = dp_i8(v2, _mm256_loadu_si256((const __m256i *)(w + g0 + j + 32)), _mm256_loadu_si256((const __m256i *)(x + g0 + j + 32)));
        }
        if (j < group) v = dp_i8(v, _mm256_loadu_si256((const __m256i *)(w + g0 + j)), _mm256_loadu_si256((const __m256i *)(x + g0 + j)));
        v = _mm256_add_epi32(v, v2);
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(v), _mm256_set1_ps(ws[g] * xs[g]), acc);
    }
    return hsum_f8(acc);
}

float nb_dot_i4_i8_lanes_avx512(int64_t n, int64_t group, const uint8_t *w, const float *ws, const int8_t *x,
                              const float *xs) {
    __m256 acc = _mm256_setzero_ps();
    if (group == 32) { /* one chunk per group: the common QAT group size */
        for (int64_t j = 0, g = 0; j < n; j += 32, g++) {
            __m256i v = dp_i8(_mm256_setzero_si256(), unpack_i4(w + j / 2), _mm256_loadu_si256((const __m256i *)(x + j)));
            acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(v), _mm256_set1_ps(ws[g] * xs[g]), acc);
        }
        return hsum_f8(acc);
    }
    for (int64_t g0 = 0, g = 0; g0 < n; g0 += group, g++) {
        __m256i v = _mm256_setzero_si256(), v2 = _mm256_setzero_si256();
        int64_t j = 0;
        for (; j + 64 <= group; j += 64) {
            v = dp_i8(v, unpack_i4(w + (g0 + j) / 2), _mm256_loadu_si256((const __m256i *)(x + g0 + j)));
            v2 = dp_i8(v2, unpack_i4(w + (g0 + j) / 2 + 16), _mm256_loadu_si256((const __m256i *)(x + g0 + j + 32)));
        }
        if (j < group) v = dp_i8(v, unpack_i4(w + (g0 + j) / 2), _mm256_loadu_si256((const __m256i *)(x + g0 + j)));
        v = _mm256_add_epi32(v, v2);
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(v), _mm256_set1_ps(ws[g] * xs[g]), acc);
    }
    return hsum_f8(acc);
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
