/* quant_avx2.c: AVX2 twins of the quantizer's segment kernels (bit-identical to the _ref ones). */
#include <immintrin.h>

#include "quant.h"

void nb_qseg_fq_avx2(const float *x, float *y, int64_t n, float s, float inv, float z, float qmin, float qmax) {
    const __m256 vs = _mm256_set1_ps(s), vi = _mm256_set1_ps(inv), vz = _mm256_set1_ps(z);
    const __m256 lo = _mm256_set1_ps(qmin), hi = _mm256_set1_ps(qmax);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_mul_ps(_mm256_loadu_ps(x + i), vi);
        v = _mm256_add_ps(_mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC), vz);
        v = _mm256_min_ps(_mm256_max_ps(v, lo), hi);
        _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_sub_ps(v, vz), vs));
    }
    if (i < n) nb_qseg_fq_ref(x + i, y + i, n - i, s, inv, z, qmin, qmax);
}

void nb_qseg_minmax_avx2(const float *x, int64_t n, float *lo, float *hi) {
    if (n < 16) {
        nb_qseg_minmax_ref(x, n, lo, hi);
        return;
    }
    __m256 a = _mm256_loadu_ps(x), b = a;
    int64_t i = 8;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        a = _mm256_min_ps(v, a);
        b = _mm256_max_ps(v, b);
    }
    float la[8], hb[8];
    _mm256_storeu_ps(la, a);
    _mm256_storeu_ps(hb, b);
    float l = la[0], h = hb[0];
    for (int k = 1; k < 8; k++) {
        l = la[k] < l ? la[k] : l;
        h = hb[k] > h ? hb[k] : h;
    }
    for (; i < n; i++) {
        l = x[i] < l ? x[i] : l;
        h = x[i] > h ? x[i] : h;
    }
    *lo = l;
    *hi = h;
}
