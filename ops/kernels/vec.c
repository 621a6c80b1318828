/* vec.c: scalar reference row kernels (the spec) and the dispatcher. */
#include "vec.h"

#include <math.h>
#include <stddef.h>

static float dot_ref(const float *a, const float *b, int64_t n) {
    float s = 0.0f;
    for (int64_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

static void axpy_ref(float *y, float a, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] += a * x[i];
}

static void scal_ref(float *y, float a, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] *= a;
}

static float max_ref(const float *x, int64_t n) {
    float m = -INFINITY;
    for (int64_t i = 0; i < n; i++) {
        if (x[i] != x[i]) return x[i]; /* NaN wins */
        if (x[i] > m) m = x[i];
    }
    return m;
}

static float expsum_ref(float *y, const float *x, float m, int64_t n) {
    float s = 0.0f;
    for (int64_t i = 0; i < n; i++) {
        float e = expf(x[i] - m);
        if (y) y[i] = e;
        s += e;
    }
    return s;
}

static void softmax_bwd_ref(float *dx, const float *y, const float *dy, int64_t n) {
    float d = dot_ref(y, dy, n);
    for (int64_t i = 0; i < n; i++) dx[i] += y[i] * (dy[i] - d);
}

static void mul_sub_ref(float *y, const float *p, float d, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = p[i] * (y[i] - d);
}

static void xent_bwd_ref(float *dx, const float *x, float lse, float g, int64_t n) {
    for (int64_t i = 0; i < n; i++) dx[i] += g * expf(x[i] - lse);
}

static float rmsnorm_fwd_ref(float *y, const float *x, const float *w, float eps, int64_t n) {
    float ss = dot_ref(x, x, n);
    float r = 1.0f / sqrtf(ss / (float)n + eps);
    for (int64_t i = 0; i < n; i++) y[i] = x[i] * r * w[i];
    return r;
}

/* y_i = x_i r w_i, dr/dx_k = -r^3 x_k / n:
   dx_k = r (dy_k w_k - x_k r^2 (sum_i dy_i w_i x_i) / n) */
static void rmsnorm_bwd_ref(float *dx, float *dw, const float *dy, const float *x, const float *w, float r,
                            int64_t n) {
    float s = 0.0f;
    for (int64_t i = 0; i < n; i++) s += dy[i] * w[i] * x[i];
    float c = r * r * r * s / (float)n;
    for (int64_t i = 0; i < n; i++) {
        dx[i] += r * dy[i] * w[i] - c * x[i];
        dw[i] += dy[i] * x[i] * r;
    }
}

static inline float sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

static void silu_fwd_ref(float *y, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = x[i] * sigmoid(x[i]);
}

static void silu_bwd_ref(float *dx, const float *dy, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        float s = sigmoid(x[i]);
        dx[i] += dy[i] * s * (1.0f + x[i] * (1.0f - s));
    }
}

static void swiglu_fwd_ref(float *y, const float *g, const float *u, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = g[i] * sigmoid(g[i]) * u[i];
}

static void swiglu_bwd_ref(float *dg, float *du, const float *dy, const float *g, const float *u, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        float s = sigmoid(g[i]);
        if (dg) dg[i] += dy[i] * u[i] * s * (1.0f + g[i] * (1.0f - s));
        if (du) du[i] += dy[i] * g[i] * s;
    }
}

static void rope_ref(float *y, const float *x, const float *c, const float *s, int64_t n, int acc) {
    for (int64_t i = 0; i + 1 < n; i += 2) {
        float v0 = x[i] * c[i] + x[i + 1] * s[i];
        float v1 = x[i + 1] * c[i + 1] + x[i] * s[i + 1];
        y[i] = acc ? y[i] + v0 : v0;
        y[i + 1] = acc ? y[i + 1] + v1 : v1;
    }
}

const nb_vec_kernels nb_vec_ref = {
    "scalar",       dot_ref,        axpy_ref,       scal_ref,        max_ref,        expsum_ref,
    softmax_bwd_ref, mul_sub_ref,   xent_bwd_ref,   rmsnorm_fwd_ref, rmsnorm_bwd_ref, silu_fwd_ref,
    silu_bwd_ref,   swiglu_fwd_ref, swiglu_bwd_ref, rope_ref,
};

static const nb_vec_kernels *table(nb_simd_level l) {
#if NB_HAVE_AVX512
    if (l == NB_SIMD_AVX512) return &nb_vec_avx512;
#endif
#if NB_HAVE_AVX2
    if (l == NB_SIMD_AVX2) return &nb_vec_avx2;
#endif
    return l == NB_SIMD_SCALAR ? &nb_vec_ref : NULL;
}

const nb_vec_kernels *nb_vec_level(nb_simd_level l) { return l > nb_simd_detect() ? NULL : table(l); }

/* nb_simd_active() is already capped by the CPU and cached: no cpuid per call */
const nb_vec_kernels *nb_vec(void) {
    const nb_vec_kernels *k = table(nb_simd_active());
    return k ? k : &nb_vec_ref;
}
