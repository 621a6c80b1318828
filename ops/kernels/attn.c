/* attn.c: scalar reference attention kernels (the spec: plain loops, explicit fmaf) and the dispatcher. */
#include "attn.h"

#include <math.h>
#include <stddef.h>
#include <string.h>

#define TQ NB_ATTN_TQ

float nb_attn_exp(float x) {
    if (x != x) return x;
    x = -87.0f > x ? -87.0f : x; /* the max / min of the SIMD twins: a > b ? a : b */
    x = 88.0f < x ? 88.0f : x;
    float n = nearbyintf(x * 1.44269504088896341f);
    float r = fmaf(-n, 0.693359375f, x);
    r = fmaf(-n, -2.12194440e-4f, r);
    float p = 1.9875691500E-4f;
    p = fmaf(p, r, 1.3981999507E-3f);
    p = fmaf(p, r, 8.3334519073E-3f);
    p = fmaf(p, r, 4.1665795894E-2f);
    p = fmaf(p, r, 1.6666665459E-1f);
    p = fmaf(p, r, 5.0000001201E-1f);
    float rr = r * r, r1 = r + 1.0f;
    p = fmaf(p, rr, r1);
    uint32_t bits = (uint32_t)((int32_t)n + 127) << 23; /* n in [-126, 127] */
    float two_n;
    memcpy(&two_n, &bits, sizeof(two_n));
    return p * two_n;
}

static void mm_ref(int ta, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B, int64_t ldb,
                   float *C, int64_t ldc, int acc) {
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < N; n++) {
            float c = 0.0f;
            for (int64_t k = 0; k < K; k++) c = fmaf(ta ? A[k * lda + m] : A[m * lda + k], B[k * ldb + n], c);
            C[m * ldc + n] = acc ? C[m * ldc + n] + c : c;
        }
}

static void softmax_ref(float *S, int64_t nk, int64_t t0, float *mx, float *l, int norm) {
    for (int64_t i = 0; i < TQ; i++) {
        float m = -INFINITY, s = 0.0f;
        for (int64_t j = 0; j < nk && j <= t0 + i; j++) m = m > S[j * TQ + i] ? m : S[j * TQ + i];
        for (int64_t j = 0; j < nk; j++) {
            float e = j <= t0 + i ? nb_attn_exp(S[j * TQ + i] - m) : 0.0f;
            S[j * TQ + i] = e;
            s += e;
        }
        mx[i] = m;
        l[i] = s;
        if (norm)
            for (int64_t j = 0; j < nk; j++) S[j * TQ + i] *= 1.0f / s;
    }
}

static void probs_ref(float *S, int64_t nk, int64_t t0, const float *lse) {
    for (int64_t j = 0; j < nk; j++)
        for (int64_t i = 0; i < TQ; i++) S[j * TQ + i] = j <= t0 + i ? nb_attn_exp(S[j * TQ + i] - lse[i]) : 0.0f;
}

static void dscores_ref(float *dP, const float *P, int64_t nk, float scale) {
    for (int64_t i = 0; i < TQ; i++) {
        float D = 0.0f;
        for (int64_t j = 0; j < nk; j++) D = fmaf(P[j * TQ + i], dP[j * TQ + i], D);
        for (int64_t j = 0; j < nk; j++) {
            float t = P[j * TQ + i] * (dP[j * TQ + i] - D);
            dP[j * TQ + i] = t * scale;
        }
    }
}

static void load_t_ref(float *Xt, const float *X, int64_t ld, int64_t H, int64_t m, float s) {
    for (int64_t d = 0; d < H; d++)
        for (int64_t i = 0; i < TQ; i++) Xt[d * TQ + i] = i < m ? X[i * ld + d] * s : 0.0f;
}

static void exp_ref(float *y, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = nb_attn_exp(x[i]);
}

const nb_attn_kernels nb_attn_ref = {"scalar", 1, mm_ref, softmax_ref, probs_ref, dscores_ref, load_t_ref, exp_ref};

static const nb_attn_kernels *table(nb_simd_level l) {
#if NB_HAVE_AVX512
    if (l == NB_SIMD_AVX512) return &nb_attn_avx512;
#endif
#if NB_HAVE_AVX2
    if (l == NB_SIMD_AVX2) return &nb_attn_avx2;
#endif
    return l == NB_SIMD_SCALAR ? &nb_attn_ref : NULL;
}

const nb_attn_kernels *nb_attn_level(nb_simd_level l) { return l > nb_simd_detect() ? NULL : table(l); }

const nb_attn_kernels *nb_attn(void) {
    const nb_attn_kernels *k = table(nb_simd_active());
    return k ? k : &nb_attn_ref;
}
