/* vec.h: the row kernels behind the non-GEMM ops (norms, softmax, activations, cross-entropy,
   rope, attention). One table of function pointers per SIMD level; nb_vec_ref is the spec (plain
   loops, fp32 accumulation in index order) and the SIMD tables must agree with it to fp32
   rounding. All pointers may be unaligned; n may be 0. Outputs never alias inputs unless stated.
   Determinism: each kernel's summation order is fixed for a given SIMD level (it differs between
   levels), and no kernel threads: callers split rows between threads. */
#ifndef NB_VEC_H
#define NB_VEC_H

#include <stdint.h>

#include "../../core/simd.h"

typedef struct nb_vec_kernels {
    const char *name;
    /* sum_i a[i] b[i] */
    float (*dot)(const float *a, const float *b, int64_t n);
    /* y += a x */
    void (*axpy)(float *y, float a, const float *x, int64_t n);
    /* y *= a */
    void (*scal)(float *y, float a, int64_t n);
    /* max_i x[i] (-inf when n == 0; NaN in x gives NaN) */
    float (*max)(const float *x, int64_t n);
    /* y[i] = exp(x[i] - m) (y may be NULL: only the sum; y may equal x), returns sum_i exp(x[i] - m) */
    float (*expsum)(float *y, const float *x, float m, int64_t n);
    /* softmax backward: dx += y * (dy - sum_i y[i] dy[i]) */
    void (*softmax_bwd)(float *dx, const float *y, const float *dy, int64_t n);
    /* y[i] = p[i] * (y[i] - d) (in place; attention's dS = P o (dP - D)) */
    void (*mul_sub)(float *y, const float *p, float d, int64_t n);
    /* cross-entropy backward without the one-hot: dx += g * exp(x - lse) */
    void (*xent_bwd)(float *dx, const float *x, float lse, float g, int64_t n);
    /* y = x * r * w with r = 1 / sqrt(mean(x^2) + eps); returns r */
    float (*rmsnorm_fwd)(float *y, const float *x, const float *w, float eps, int64_t n);
    /* dx += r * (dy w - x r^2 mean(dy w x)),  dw += dy x r */
    void (*rmsnorm_bwd)(float *dx, float *dw, const float *dy, const float *x, const float *w, float r, int64_t n);
    /* y = x * sigmoid(x) */
    void (*silu_fwd)(float *y, const float *x, int64_t n);
    /* dx += dy * s (1 + x (1 - s)),  s = sigmoid(x) */
    void (*silu_bwd)(float *dx, const float *dy, const float *x, int64_t n);
    /* y = silu(g) * u */
    void (*swiglu_fwd)(float *y, const float *g, const float *u, int64_t n);
    /* dg += dy u silu'(g),  du += dy silu(g) (either may be NULL) */
    void (*swiglu_bwd)(float *dg, float *du, const float *dy, const float *g, const float *u, int64_t n);
    /* rotation of interleaved pairs: y[2i] (+)= x[2i] c[2i] + x[2i+1] s[2i],
       y[2i+1] (+)= x[2i+1] c[2i+1] + x[2i] s[2i+1]; n even; acc: add into y instead of storing */
    void (*rope)(float *y, const float *x, const float *c, const float *s, int64_t n, int acc);
} nb_vec_kernels;

extern const nb_vec_kernels nb_vec_ref;
#if NB_HAVE_AVX2
extern const nb_vec_kernels nb_vec_avx2;
#endif
#if NB_HAVE_AVX512
extern const nb_vec_kernels nb_vec_avx512;
#endif

/* The table of the active SIMD level (nb_simd_active()). */
const nb_vec_kernels *nb_vec(void);
/* The table of a given level, or NULL when this build or CPU lacks it. */
const nb_vec_kernels *nb_vec_level(nb_simd_level l);

#endif
