/* qgemm.c: integer forward of fake-quantized linear layers: packing, scalar twins, dispatcher. */
#include "qgemm.h"

#include <math.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "../../core/simd.h"

static int in_parallel(void) {
#ifdef _OPENMP
    return omp_in_parallel();
#else
    return 1;
#endif
}

#define QP 32 /* columns per panel */

static int64_t group_bytes(int64_t G) { return 256 + QP * G; }

size_t nb_qgemm_packed_bytes(int64_t N, int64_t K, int64_t G) {
    return (size_t)((N + QP - 1) / QP) * (size_t)(K / G) * (size_t)group_bytes(G);
}

void nb_qgemm_pack_w_ref(const float *W, int64_t N, int64_t K, int64_t G, const float *scale, int tensor, int qmin,
                         int qmax, void *dst) {
    int64_t ng = K / G, np = (N + QP - 1) / QP, gb = group_bytes(G);
    for (int64_t p = 0; p < np; p++)
        for (int64_t g = 0; g < ng; g++) {
            uint8_t *blk = (uint8_t *)dst + (p * ng + g) * gb;
            int32_t *corr = (int32_t *)blk;
            float *sc = (float *)(blk + 128);
            int8_t *codes = (int8_t *)(blk + 256);
            for (int j = 0; j < QP; j++) {
                int64_t n = p * QP + j;
                if (n >= N) {
                    corr[j] = 0;
                    sc[j] = 0.0f;
                    for (int64_t k = 0; k < G; k++) codes[(k >> 2) * 128 + j * 4 + (k & 3)] = 0;
                    continue;
                }
                float s = scale[tensor ? 0 : n * ng + g], inv = s != 0.0f ? 1.0f / s : 0.0f;
                const float *w = W + n * K + g * G;
                int32_t sum = 0;
                int nan = 0;
                for (int64_t k = 0; k < G; k++) {
                    nan |= isnan(w[k]);
                    float v = rintf(w[k] * inv);
                    if (v != v) v = (float)qmin; /* NaN (or inf * 0): qmin, as the SIMD clamp gives */
                    v = v < (float)qmin ? (float)qmin : v > (float)qmax ? (float)qmax : v;
                    int q = (int)v;
                    codes[(k >> 2) * 128 + j * 4 + (k & 3)] = (int8_t)q;
                    sum += q;
                }
                corr[j] = -128 * sum;
                sc[j] = nan ? NAN : s;
            }
        }
}

void nb_qgemm_pack_x_ref(const float *X, int64_t M, int64_t K, float *xs, uint8_t *dst) {
    for (int64_t m = 0; m < M; m++) {
        float inv = xs[m] != 0.0f ? 1.0f / xs[m] : 0.0f;
        int nan = 0;
        for (int64_t k = 0; k < K; k++) {
            nan |= isnan(X[m * K + k]);
            float v = rintf(X[m * K + k] * inv);
            if (v != v) v = -128.0f; /* NaN (or inf * 0): -128, as the SIMD clamp gives */
            v = v < -128.0f ? -128.0f : v > 127.0f ? 127.0f : v;
            dst[m * K + k] = (uint8_t)((int)v + 128);
        }
        if (nan) xs[m] = NAN;
    }
}

void nb_qgemm_ref(int64_t M, int64_t N, int64_t K, int64_t G, const int8_t *xq, const float *xs, const int8_t *wq,
                  const float *ws, float *C, int64_t ldc) {
    int64_t ng = K / G;
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < N; n++) {
            float f = 0.0f;
            for (int64_t g = 0; g < ng; g++) {
                int32_t s = 0;
                for (int64_t k = g * G; k < (g + 1) * G; k++) s += (int32_t)xq[m * K + k] * wq[n * K + k];
                f = fmaf((float)s, ws[n * ng + g], f);
            }
            C[m * ldc + n] = f * xs[m];
        }
}

void nb_qgemm_rows_packed_ref(int64_t M, int64_t N, int64_t K, int64_t G, const uint8_t *xa, const float *xs,
                              const void *wp, float *C, int64_t ldc) {
    int64_t ng = K / G, gb = group_bytes(G);
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < N; n++) {
            int64_t p = n / QP, j = n % QP;
            float f = 0.0f;
            for (int64_t g = 0; g < ng; g++) {
                const uint8_t *blk = (const uint8_t *)wp + (p * ng + g) * gb;
                int32_t s;
                memcpy(&s, blk + 4 * j, 4);
                float sc;
                memcpy(&sc, blk + 128 + 4 * j, 4);
                const int8_t *codes = (const int8_t *)(blk + 256);
                for (int64_t k = 0; k < G; k++)
                    s += (int32_t)xa[m * K + g * G + k] * codes[(k >> 2) * 128 + j * 4 + (k & 3)];
                f = fmaf((float)s, sc, f);
            }
            C[m * ldc + n] = f * xs[m];
        }
}

int nb_qgemm_available(void) {
#if NB_HAVE_AVX512
    return nb_simd_has_vnni();
#else
    return 0;
#endif
}

void nb_qgemm_pack_x(const float *X, int64_t M, int64_t K, float *xs, uint8_t *dst) {
#if NB_HAVE_AVX512
    if (nb_simd_active() == NB_SIMD_AVX512) {
#pragma omp parallel for schedule(static) if (M * K >= (1 << 18) && !in_parallel())
        for (int64_t m = 0; m < M; m += 64)
            nb_qgemm_pack_x_avx512(X + m * K, M - m < 64 ? M - m : 64, K, xs + m, dst + m * K);
        return;
    }
#endif
    nb_qgemm_pack_x_ref(X, M, K, xs, dst);
}

void nb_qgemm_pack_w(const float *W, int64_t N, int64_t K, int64_t G, const float *scale, int tensor, int qmin,
                     int qmax, void *dst) {
#if NB_HAVE_AVX512
    if (nb_simd_active() == NB_SIMD_AVX512) {
        int64_t np = (N + QP - 1) / QP;
#pragma omp parallel for schedule(static) if (N * K >= (1 << 16) && np > 1 && !in_parallel())
        for (int64_t p = 0; p < np; p++) nb_qgemm_pack_w_avx512(W, N, K, G, scale, tensor, qmin, qmax, dst, p, p + 1);
        return;
    }
#endif
    nb_qgemm_pack_w_ref(W, N, K, G, scale, tensor, qmin, qmax, dst);
}

/* Rows per work item: whole 6-row tiles, enough of them to amortise the panel loads. */
#define QROWS 96

void nb_qgemm(int64_t M, int64_t N, int64_t K, int64_t G, const uint8_t *xa, const float *xs, const void *wp,
              float *C, int64_t ldc) {
    if (M <= 0 || N <= 0) return;
    void (*f)(int64_t, int64_t, int64_t, int64_t, const uint8_t *, const float *, const void *, float *, int64_t) =
        nb_qgemm_rows_packed_ref;
#if NB_HAVE_AVX512
    if (nb_simd_has_vnni()) f = nb_qgemm_rows_avx512;
#endif
    int64_t nblk = (M + QROWS - 1) / QROWS;
    int par = nblk > 1 && M * N * K >= ((int64_t)1 << 19) && !in_parallel();
#pragma omp parallel for schedule(dynamic, 1) if (par)
    for (int64_t b = 0; b < nblk; b++) {
        int64_t m0 = b * QROWS, m1 = m0 + QROWS < M ? m0 + QROWS : M;
        f(m1 - m0, N, K, G, xa + m0 * K, xs + m0, wp, C + m0 * ldc, ldc);
    }
}
