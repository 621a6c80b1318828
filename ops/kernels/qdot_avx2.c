/* qdot_avx2.c: AVX2 twins of the integer dot kernels (qdot.h). Integer sums are exact; the float
   per-block terms are added in block order, so results equal the scalar twins bit for bit. */
#include <immintrin.h>
#include <math.h>

#include "qdot.h"
#include "qdot_x86.h"

/* Signed int8 x int8 -> 8 int32 partial sums of 32 products. abs() goes to a (weights, may hold
   -128: |-128| = 128 as unsigned), the sign moves to b (activations, within -127..127). Pair sums
   fit int16: 2 * 128 * 127 = 32512. */
static inline __m256i mul_sum_i8(__m256i a, __m256i b) {
    __m256i ax = _mm256_abs_epi8(a);
    __m256i sb = _mm256_sign_epi8(b, a);
    __m256i p16 = _mm256_maddubs_epi16(ax, sb);
    return _mm256_madd_epi16(p16, _mm256_set1_epi16(1));
}

int32_t nb_isum_i8_avx2(int64_t n, const int8_t *a, const int8_t *b) {
    __m256i acc = _mm256_setzero_si256();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32)
        acc = _mm256_add_epi32(acc, mul_sum_i8(_mm256_loadu_si256((const __m256i *)(a + i)),
                                               _mm256_loadu_si256((const __m256i *)(b + i))));
    int32_t s = hsum_i32(acc);
    for (; i < n; i++) s += (int32_t)a[i] * b[i];
    return s;
}

float nb_dot_q8_0_q8_0_avx2(int64_t n, const nb_block_q8_0 *w, const nb_block_q8_0 *x) {
    __m256 acc = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / NB_QK; b++) {
        __m256i p = mul_sum_i8(_mm256_loadu_si256((const __m256i *)w[b].qs), _mm256_loadu_si256((const __m256i *)x[b].qs));
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(h2f(w[b].d) * h2f(x[b].d)), acc);
    }
    return hsum_f8(acc);
}

float nb_dot_q4_0_q8_0_avx2(int64_t n, const nb_block_q4_0 *w, const nb_block_q8_0 *x) {
    __m256 acc = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / NB_QK; b++) {
        __m256i p = mul_sum_i8(unpack_q4_0(w[b].qs), _mm256_loadu_si256((const __m256i *)x[b].qs));
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(h2f(w[b].d) * h2f(x[b].d)), acc);
    }
    return hsum_f8(acc);
}

float nb_dot_i4_i8_avx2(int64_t n, int64_t group, const uint8_t *w, const float *ws, const int8_t *wz,
                        const int8_t *x, const float *xs) {
    float acc = 0.0f;
    for (int64_t g0 = 0, g = 0; g0 < n; g0 += group, g++) {
        int64_t len = n - g0 < group ? n - g0 : group;
        __m256i v = _mm256_setzero_si256();
        int64_t j = 0;
        for (; j + 32 <= len; j += 32)
            v = _mm256_add_epi32(v, mul_sum_i8(unpack_i4(w + (g0 + j) / 2), _mm256_loadu_si256((const __m256i *)(x + g0 + j))));
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

static float tree16(float *s) {
    for (int w = 8; w >= 1; w /= 2)
        for (int j = 0; j < w; j++) s[j] += s[j + w];
    return s[0];
}

float nb_dot_f32_avx2(int64_t n, const float *w, const float *x) {
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i), _mm256_loadu_ps(x + i), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 8), _mm256_loadu_ps(x + i + 8), a1);
    }
    float s[16];
    _mm256_storeu_ps(s, a0);
    _mm256_storeu_ps(s + 8, a1);
    for (; i < n; i++) s[i & 15] = fmaf(w[i], x[i], s[i & 15]);
    return tree16(s);
}

float nb_dot_f16_avx2(int64_t n, const uint16_t *w, const float *x) {
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256 w0 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w + i)));
        __m256 w1 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w + i + 8)));
        a0 = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x + i), a0);
        a1 = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x + i + 8), a1);
    }
    float s[16];
    _mm256_storeu_ps(s, a0);
    _mm256_storeu_ps(s + 8, a1);
    for (; i < n; i++) s[i & 15] = fmaf(_cvtsh_ss(w[i]), x[i], s[i & 15]);
    return tree16(s);
}

void nb_quantize_act_q8_0_avx2(const float *x, nb_block_q8_0 *y, int64_t n) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    for (int64_t b = 0; b < n / NB_QK; b++) {
        const float *xb = x + b * NB_QK;
        int finite = 1;
        for (int j = 0; j < NB_QK; j++) finite &= isfinite(xb[j]);
        if (!finite) { /* the twin's NaN-scale rule for a diverged row */
            nb_quantize_act_q8_0_ref(xb, y + b, NB_QK);
            continue;
        }
        __m256 v[4], m = _mm256_setzero_ps();
        for (int k = 0; k < 4; k++) {
            v[k] = _mm256_loadu_ps(xb + 8 * k);
            m = _mm256_max_ps(m, _mm256_andnot_ps(sign, v[k]));
        }
        __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        h = _mm_max_ps(h, _mm_movehl_ps(h, h));
        h = _mm_max_ss(h, _mm_movehdup_ps(h));
        float amax = _mm_cvtss_f32(h);
        y[b].d = _cvtss_sh(amax / 127.0f, 0);
        __m256 id = _mm256_set1_ps(amax != 0.0f ? 127.0f / amax : 0.0f);
        int32_t t[32];
        for (int k = 0; k < 4; k++) {
            __m256 r = _mm256_round_ps(_mm256_mul_ps(v[k], id), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            _mm256_storeu_si256((__m256i *)(t + 8 * k), _mm256_cvtps_epi32(r));
        }
        for (int j = 0; j < 32; j++) y[b].qs[j] = (int8_t)t[j];
    }
}
