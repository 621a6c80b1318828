/* vec_avx2.c: AVX2+FMA twins of the row kernels in vec.c (8 lanes, masked-load tails). */
#include "vec.h"

#include <immintrin.h>
#include <math.h>

#define W 8

/* lanes [0, r) set; r >= W gives all lanes */
static inline __m256i tail(int64_t r) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(r < W ? r : W)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
#define LD(m, p) _mm256_maskload_ps((p), (m))
#define ST(p, m, v) _mm256_maskstore_ps((p), (m), (v))

static inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* exp(x): Cephes polynomial on r = x - n ln2, then 2^n built in the exponent bits. x is clamped
   to [-87.3, 88.37] (so exp(-inf) gives ~1e-38, not 0); NaN propagates. */
static inline __m256 exp8(__m256 x) {
    x = _mm256_min_ps(_mm256_set1_ps(88.3762626647949f), _mm256_max_ps(_mm256_set1_ps(-87.3365478515625f), x));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500E-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507E-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073E-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894E-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459E-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201E-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    /* n in [-126, 128]: split 2^n = 2^(n/2) 2^(n - n/2) so both halves are normal */
    __m256i ni = _mm256_cvtps_epi32(n);
    __m256i h = _mm256_srai_epi32(ni, 1);
    __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(h, _mm256_set1_epi32(127)), 23));
    __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(_mm256_sub_epi32(ni, h), _mm256_set1_epi32(127)), 23));
    return _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
}

/* 1 / (1 + exp(-x)) by reciprocal estimate + one Newton step (exp8 caps -x at 88.4, so 1 + e
   is finite) */
static inline __m256 sigmoid8(__m256 x) {
    __m256 one = _mm256_set1_ps(1.0f);
    __m256 d = _mm256_add_ps(one, exp8(_mm256_sub_ps(_mm256_setzero_ps(), x))), r = _mm256_rcp_ps(d);
    return _mm256_mul_ps(r, _mm256_fnmadd_ps(d, r, _mm256_set1_ps(2.0f)));
}

static float dot(const float *a, const float *b, int64_t n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps(), s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 4 * W <= n; i += 4 * W) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + W), _mm256_loadu_ps(b + i + W), s1);
        s2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 2 * W), _mm256_loadu_ps(b + i + 2 * W), s2);
        s3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 3 * W), _mm256_loadu_ps(b + i + 3 * W), s3);
    }
    for (; i + W <= n; i += W) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    if (i < n) {
        __m256i m = tail(n - i);
        s1 = _mm256_fmadd_ps(LD(m, a + i), LD(m, b + i), s1);
    }
    return hsum(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
}

static void axpy(float *y, float a, const float *x, int64_t n) {
    __m256 av = _mm256_set1_ps(a);
    int64_t i = 0;
    for (; i + W <= n; i += W) _mm256_storeu_ps(y + i, _mm256_fmadd_ps(av, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    if (i < n) {
        __m256i m = tail(n - i);
        ST(y + i, m, _mm256_fmadd_ps(av, LD(m, x + i), LD(m, y + i)));
    }
}

static void scal(float *y, float a, int64_t n) {
    __m256 av = _mm256_set1_ps(a);
    for (int64_t i = 0; i < n; i += W) {
        __m256i m = tail(n - i);
        ST(y + i, m, _mm256_mul_ps(av, LD(m, y + i)));
    }
}

static float vmax(const float *x, int64_t n) {
    __m256 m = _mm256_set1_ps(-INFINITY), nan = _mm256_setzero_ps();
    __m256 ninf = _mm256_set1_ps(-INFINITY);
    for (int64_t i = 0; i < n; i += W) {
        __m256i t = tail(n - i);
        __m256 v = _mm256_blendv_ps(ninf, LD(t, x + i), _mm256_castsi256_ps(t));
        nan = _mm256_or_ps(nan, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
        m = _mm256_max_ps(m, v);
    }
    if (_mm256_movemask_ps(nan)) return NAN;
    __m128 r = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    r = _mm_max_ps(r, _mm_movehl_ps(r, r));
    r = _mm_max_ss(r, _mm_movehdup_ps(r));
    return _mm_cvtss_f32(r);
}

static float expsum(float *y, const float *x, float mx, int64_t n) {
    __m256 mv = _mm256_set1_ps(mx), s = _mm256_setzero_ps();
    for (int64_t i = 0; i < n; i += W) {
        __m256i m = tail(n - i);
        __m256 e = _mm256_and_ps(exp8(_mm256_sub_ps(LD(m, x + i), mv)), _mm256_castsi256_ps(m));
        if (y) ST(y + i, m, e);
        s = _mm256_add_ps(s, e);
    }
    return hsum(s);
}

static void softmax_bwd(float *dx, const float *y, const float *dy, int64_t n) {
    __m256 d = _mm256_set1_ps(dot(y, dy, n));
    for (int64_t i = 0; i < n; i += W) {
        __m256i m = tail(n - i);
        __m256 g = _mm256_mul_ps(LD(m, y + i), _mm256_sub_ps(LD(m, dy + i), d));
        ST(dx + i, m, _mm256_add_ps(LD(m, dx + i), g));
    }
}

static void mul_sub(float *y, const float *p, float d, int64_t n) {
    __m256 dv = _mm256_set1_ps(d);
    for (int64_t i = 0; i < n; i += W) {
        __m256i m = tail(n - i);
        ST(y + i, m, _mm256_mul_ps(LD(m, p + i), _mm256_sub_ps(LD(m, y + i), dv)));
    }
}

static void xent_bwd(float *dx, const float *x, float lse, float g, int64_t n) {
    __m256 lv = _mm256_set1_ps(lse), gv = _mm256_set1_ps(g);
    for (int64_t i = 0; i < n; i += W) {
        __m256i m = tail(n - i);
        __m256 e = exp8(_mm256_sub_ps(LD(m, x + i), lv));
        ST(dx + i, m, _mm256_add_ps(LD(m, dx + i), _mm256_mul_ps(gv, e)));
    }
}

static float rmsnorm_fwd(float *y, const float *x, const float *w, float eps, int64_t n) {
    float r = 1.0f / sqrtf(dot(x, x, n) / (float)n + eps);
    __m256 rv = _mm256_set1_ps(r);
    for (int64_t i = 0; i < n; i += W) {
        __m256i m = tail(n - i);
        ST(y + i, m, _mm256_mul_ps(_mm256_mul_ps(LD(m, x + i), rv), LD(m, w + i)));
    }
    return r;
}

static void rmsnorm_bwd(float *dx, float *dw, const float *dy, const float *x, const float *w, float r, int64_t n) {
    __m256 sv = _mm256_setzero_ps();
    for (int64_t i = 0; i < n; i += W) {
        __m256i m = tail(n - i);
        sv = _mm256_fmadd_ps(_mm256_mul_ps(LD(m, dy + i), LD(m, w + i)), LD(m, x + i), sv);
    }
    float c = r * r * r * hsum(sv) / (float)n;
    __m256 rv = _mm256_set1_ps(r), cv = _mm256_set1_ps(c);
    for (int64_t i = 0; i < n; i += W) {
        __m256i m = tail(n - i);
        __m256 vdy = LD(m, dy + i), vx = LD(m, x + i);
        __m256 g = _mm256_fnmadd_ps(cv, vx, _mm256_mul_ps(_mm256_mul_ps(rv, vdy), LD(m, w + i)));
        ST(dx + i, m, _mm256_add_ps(LD(m, dx + i), g));
        ST(dw + i, m, _mm256_add_ps(LD(m, dw + i), _mm256_mul_ps(_mm256_mul_ps(vdy, vx), rv)));
    }
}

static void silu_fwd(float *y, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i += W) {
        __m256i m = tail(n - i);
        __m256 v = LD(m, x + i);
        ST(y + i, m, _mm256_mul_ps(v, sigmoid8(v)));
    }
}

static void silu_bwd(float *dx, const float *dy, const float *x, int64_t n) {
    __m256 one = _mm256_set1_ps(1.0f);
    for (int64_t i = 0; i < n; i += W) {
        __m256i m = tail(n - i);
        __m256 v = LD(m, x + i), s = sigmoid8(v);
        __m256 d = _mm256_mul_ps(s, _mm256_fmadd_ps(v, _mm256_sub_ps(one, s), one));
        ST(dx + i, m, _mm256_add_ps(LD(m, dx + i), _mm256_mul_ps(LD(m, dy + i), d)));
    }
}

static void swiglu_fwd(float *y, const float *g, const float *u, int64_t n) {
    for (int64_t i = 0; i < n; i += W) {
        __m256i m = tail(n - i);
        __m256 v = LD(m, g + i);
        ST(y + i, m, _mm256_mul_ps(_mm256_mul_ps(v, sigmoid8(v)), LD(m, u + i)));
    }
}

static void swiglu_bwd(float *dg, float *du, const float *dy, const float *g, const float *u, int64_t n) {
    __m256 one = _mm256_set1_ps(1.0f);
    for (int64_t i = 0; i < n; i += W) {
        __m256i m = tail(n - i);
        __m256 v = LD(m, g + i), s = sigmoid8(v), vdy = LD(m, dy + i);
        if (dg) {
            __m256 d = _mm256_mul_ps(s, _mm256_fmadd_ps(v, _mm256_sub_ps(one, s), one));
            ST(dg + i, m, _mm256_add_ps(LD(m, dg + i), _mm256_mul_ps(_mm256_mul_ps(vdy, LD(m, u + i)), d)));
        }
        if (du) ST(du + i, m, _mm256_add_ps(LD(m, du + i), _mm256_mul_ps(_mm256_mul_ps(vdy, v), s)));
    }
}

static void rope(float *y, const float *x, const float *c, const float *s, int64_t n, int acc) {
    for (int64_t i = 0; i < n; i += W) {
        __m256i m = tail(n - i);
        __m256 v = LD(m, x + i);
        __m256 sw = _mm256_permute_ps(v, 0xB1); /* swap the two floats of each pair */
        __m256 r = _mm256_fmadd_ps(sw, LD(m, s + i), _mm256_mul_ps(v, LD(m, c + i)));
        if (acc) r = _mm256_add_ps(LD(m, y + i), r);
        ST(y + i, m, r);
    }
}

const nb_vec_kernels nb_vec_avx2 = {
    "avx2",      dot,        axpy,     scal,       vmax,       expsum,     softmax_bwd, mul_sub,  xent_bwd,
    rmsnorm_fwd, rmsnorm_bwd, silu_fwd, silu_bwd,  swiglu_fwd, swiglu_bwd, rope,
};
