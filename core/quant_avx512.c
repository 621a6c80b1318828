/* quant_avx512.c: AVX-512 twins of the quantizer's segment kernels (bit-identical to _ref). */
#include <immintrin.h>

#include "quant.h"

static inline __m512 fq16(__m512 x, __m512 vs, __m512 vi, __m512 vz, __m512 lo, __m512 hi) {
    __m512 v = _mm512_roundscale_ps(_mm512_mul_ps(x, vi), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    v = _mm512_min_ps(_mm512_max_ps(_mm512_add_ps(v, vz), lo), hi);
    return _mm512_mul_ps(_mm512_sub_ps(v, vz), vs);
}

void nb_qseg_fq_avx512(const float *x, float *y, int64_t n, float s, float inv, float z, float qmin, float qmax) {
    const __m512 vs = _mm512_set1_ps(s), vi = _mm512_set1_ps(inv), vz = _mm512_set1_ps(z);
    const __m512 lo = _mm512_set1_ps(qmin), hi = _mm512_set1_ps(qmax);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, fq16(_mm512_loadu_ps(x + i), vs, vi, vz, lo, hi));
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        _mm512_mask_storeu_ps(y + i, m, fq16(_mm512_maskz_loadu_ps(m, x + i), vs, vi, vz, lo, hi));
    }
}

void nb_qseg_minmax_avx512(const float *x, int64_t n, float *lo, float *hi) {
    if (n < 16) {
        nb_qseg_minmax_ref(x, n, lo, hi);
        return;
    }
    __m512 a = _mm512_loadu_ps(x), b = a;
    int64_t i = 16;
    for (; i + 16 <= n; i += 16) {
        __m512 v = _mm512_loadu_ps(x + i);
        a = _mm512_min_ps(v, a);
        b = _mm512_max_ps(v, b);
    }
    if (i < n) { /* the last 16 elements overlap ones already seen: harmless for min/max */
        __m512 v = _mm512_loadu_ps(x + n - 16);
        a = _mm512_min_ps(v, a);
        b = _mm512_max_ps(v, b);
    }
    *lo = _mm512_reduce_min_ps(a);
    *hi = _mm512_reduce_max_ps(b);
}
