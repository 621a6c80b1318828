/* vec_avx512.c: AVX-512 twins of the row kernels in vec.c (16 lanes, masked tails). */
#include "vec.h"

#include <immintrin.h>
#include <math.h>

#define W 16

static inline __mmask16 tail(int64_t r) { return (__mmask16)((1u << r) - 1u); }

/* exp(x): Cephes polynomial on r = x - n ln2, |r| <= ln2/2, then scalef by 2^n (handles
   overflow to inf and underflow to 0). NaN propagates (max/min return their second operand). */
static inline __m512 exp16(__m512 x) {
    x = _mm512_min_ps(_mm512_set1_ps(89.0f), _mm512_max_ps(_mm512_set1_ps(-104.0f), x));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500E-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507E-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073E-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894E-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459E-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201E-1f));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    return _mm512_scalef_ps(p, n);
}

/* 1 / (1 + exp(-x)) with a reciprocal estimate and one Newton step instead of a divide (the
   divide is the slowest instruction of SwiGLU); -x is capped at 87 so 1 + e stays finite. */
static inline __m512 sigmoid16(__m512 x) {
    __m512 one = _mm512_set1_ps(1.0f);
    __m512 e = exp16(_mm512_min_ps(_mm512_set1_ps(87.0f), _mm512_sub_ps(_mm512_setzero_ps(), x)));
    __m512 d = _mm512_add_ps(one, e), r = _mm512_rcp14_ps(d);
    return _mm512_mul_ps(r, _mm512_fnmadd_ps(d, r, _mm512_set1_ps(2.0f)));
}

static float dot(const float *a, const float *b, int64_t n) {
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps(), s2 = _mm512_setzero_ps(), s3 = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 4 * W <= n; i += 4 * W) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + W), _mm512_loadu_ps(b + i + W), s1);
        s2 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 2 * W), _mm512_loadu_ps(b + i + 2 * W), s2);
        s3 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 3 * W), _mm512_loadu_ps(b + i + 3 * W), s3);
    }
    for (; i + W <= n; i += W) s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
    if (i < n) {
        __mmask16 m = tail(n - i);
        s1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i), s1);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
}

static void axpy(float *y, float a, const float *x, int64_t n) {
    __m512 av = _mm512_set1_ps(a);
    int64_t i = 0;
    for (; i + W <= n; i += W)
        _mm512_storeu_ps(y + i, _mm512_fmadd_ps(av, _mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i)));
    if (i < n) {
        __mmask16 m = tail(n - i);
        _mm512_mask_storeu_ps(y + i, m,
                              _mm512_fmadd_ps(av, _mm512_maskz_loadu_ps(m, x + i), _mm512_maskz_loadu_ps(m, y + i)));
    }
}

static void scal(float *y, float a, int64_t n) {
    __m512 av = _mm512_set1_ps(a);
    int64_t i = 0;
    for (; i + W <= n; i += W) _mm512_storeu_ps(y + i, _mm512_mul_ps(av, _mm512_loadu_ps(y + i)));
    if (i < n) {
        __mmask16 m = tail(n - i);
        _mm512_mask_storeu_ps(y + i, m, _mm512_mul_ps(av, _mm512_maskz_loadu_ps(m, y + i)));
    }
}

static float vmax(const float *x, int64_t n) {
    __m512 m = _mm512_set1_ps(-INFINITY);
    __mmask16 nan = 0;
    int64_t i = 0;
    for (; i + W <= n; i += W) {
        __m512 v = _mm512_loadu_ps(x + i);
        nan |= _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
        m = _mm512_max_ps(m, v);
    }
    if (i < n) {
        __mmask16 t = tail(n - i);
        __m512 v = _mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), t, x + i);
        nan |= _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
        m = _mm512_max_ps(m, v);
    }
    if (nan) return NAN;
    return _mm512_reduce_max_ps(m);
}

static float expsum(float *y, const float *x, float mx, int64_t n) {
    __m512 mv = _mm512_set1_ps(mx), s = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + W <= n; i += W) {
        __m512 e = exp16(_mm512_sub_ps(_mm512_loadu_ps(x + i), mv));
        if (y) _mm512_storeu_ps(y + i, e);
        s = _mm512_add_ps(s, e);
    }
    if (i < n) {
        __mmask16 m = tail(n - i);
        __m512 e = _mm512_maskz_mov_ps(m, exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), mv)));
        if (y) _mm512_mask_storeu_ps(y + i, m, e);
        s = _mm512_add_ps(s, e);
    }
    return _mm512_reduce_add_ps(s);
}

static void softmax_bwd(float *dx, const float *y, const float *dy, int64_t n) {
    __m512 d = _mm512_set1_ps(dot(y, dy, n));
    int64_t i = 0;
    for (; i + W <= n; i += W) {
        __m512 g = _mm512_mul_ps(_mm512_loadu_ps(y + i), _mm512_sub_ps(_mm512_loadu_ps(dy + i), d));
        _mm512_storeu_ps(dx + i, _mm512_add_ps(_mm512_loadu_ps(dx + i), g));
    }
    if (i < n) {
        __mmask16 m = tail(n - i);
        __m512 g = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, y + i), _mm512_sub_ps(_mm512_maskz_loadu_ps(m, dy + i), d));
        _mm512_mask_storeu_ps(dx + i, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, dx + i), g));
    }
}

static void mul_sub(float *y, const float *p, float d, int64_t n) {
    __m512 dv = _mm512_set1_ps(d);
    int64_t i = 0;
    for (; i + W <= n; i += W)
        _mm512_storeu_ps(y + i, _mm512_mul_ps(_mm512_loadu_ps(p + i), _mm512_sub_ps(_mm512_loadu_ps(y + i), dv)));
    if (i < n) {
        __mmask16 m = tail(n - i);
        _mm512_mask_storeu_ps(y + i, m,
                              _mm512_mul_ps(_mm512_maskz_loadu_ps(m, p + i), _mm512_sub_ps(_mm512_maskz_loadu_ps(m, y + i), dv)));
    }
}

static void xent_bwd(float *dx, const float *x, float lse, float g, int64_t n) {
    __m512 lv = _mm512_set1_ps(lse), gv = _mm512_set1_ps(g);
    int64_t i = 0;
    for (; i + W <= n; i += W) {
        __m512 e = exp16(_mm512_sub_ps(_mm512_loadu_ps(x + i), lv));
        _mm512_storeu_ps(dx + i, _mm512_add_ps(_mm512_loadu_ps(dx + i), _mm512_mul_ps(gv, e)));
    }
    if (i < n) {
        __mmask16 m = tail(n - i);
        __m512 e = exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), lv));
        _mm512_mask_storeu_ps(dx + i, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, dx + i), _mm512_mul_ps(gv, e)));
    }
}

static float rmsnorm_fwd(float *y, const float *x, const float *w, float eps, int64_t n) {
    float r = 1.0f / sqrtf(dot(x, x, n) / (float)n + eps);
    __m512 rv = _mm512_set1_ps(r);
    int64_t i = 0;
    for (; i + W <= n; i += W)
        _mm512_storeu_ps(y + i, _mm512_mul_ps(_mm512_mul_ps(_mm512_loadu_ps(x + i), rv), _mm512_loadu_ps(w + i)));
    if (i < n) {
        __mmask16 m = tail(n - i);
        _mm512_mask_storeu_ps(y + i, m,
                              _mm512_mul_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), rv), _mm512_maskz_loadu_ps(m, w + i)));
    }
    return r;
}

static void rmsnorm_bwd(float *dx, float *dw, const float *dy, const float *x, const float *w, float r, int64_t n) {
    /* pass 1: s = sum dy w x */
    __m512 sv = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + W <= n; i += W)
        sv = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_loadu_ps(dy + i), _mm512_loadu_ps(w + i)), _mm512_loadu_ps(x + i), sv);
    if (i < n) {
        __mmask16 m = tail(n - i);
        sv = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(m, dy + i), _mm512_maskz_loadu_ps(m, w + i)),
                             _mm512_maskz_loadu_ps(m, x + i), sv);
    }
    float c = r * r * r * _mm512_reduce_add_ps(sv) / (float)n;
    __m512 rv = _mm512_set1_ps(r), cv = _mm512_set1_ps(c);
    /* pass 2: dx += r dy w - c x,  dw += dy x r */
    for (i = 0; i < n; i += W) {
        __mmask16 m = n - i >= W ? (__mmask16)0xffff : tail(n - i);
        __m512 vdy = _mm512_maskz_loadu_ps(m, dy + i), vx = _mm512_maskz_loadu_ps(m, x + i);
        __m512 g = _mm512_fnmadd_ps(cv, vx, _mm512_mul_ps(_mm512_mul_ps(rv, vdy), _mm512_maskz_loadu_ps(m, w + i)));
        _mm512_mask_storeu_ps(dx + i, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, dx + i), g));
        _mm512_mask_storeu_ps(dw + i, m,
                              _mm512_add_ps(_mm512_maskz_loadu_ps(m, dw + i), _mm512_mul_ps(_mm512_mul_ps(vdy, vx), rv)));
    }
}

static void silu_fwd(float *y, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i += W) {
        __mmask16 m = n - i >= W ? (__mmask16)0xffff : tail(n - i);
        __m512 v = _mm512_maskz_loadu_ps(m, x + i);
        _mm512_mask_storeu_ps(y + i, m, _mm512_mul_ps(v, sigmoid16(v)));
    }
}

static void silu_bwd(float *dx, const float *dy, const float *x, int64_t n) {
    __m512 one = _mm512_set1_ps(1.0f);
    for (int64_t i = 0; i < n; i += W) {
        __mmask16 m = n - i >= W ? (__mmask16)0xffff : tail(n - i);
        __m512 v = _mm512_maskz_loadu_ps(m, x + i), s = sigmoid16(v);
        __m512 d = _mm512_mul_ps(s, _mm512_fmadd_ps(v, _mm512_sub_ps(one, s), one));
        __m512 g = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, dy + i), d);
        _mm512_mask_storeu_ps(dx + i, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, dx + i), g));
    }
}

static void swiglu_fwd(float *y, const float *g, const float *u, int64_t n) {
    for (int64_t i = 0; i < n; i += W) {
        __mmask16 m = n - i >= W ? (__mmask16)0xffff : tail(n - i);
        __m512 v = _mm512_maskz_loadu_ps(m, g + i);
        _mm512_mask_storeu_ps(y + i, m, _mm512_mul_ps(_mm512_mul_ps(v, sigmoid16(v)), _mm512_maskz_loadu_ps(m, u + i)));
    }
}

static void swiglu_bwd(float *dg, float *du, const float *dy, const float *g, const float *u, int64_t n) {
    __m512 one = _mm512_set1_ps(1.0f);
    for (int64_t i = 0; i < n; i += W) {
        __mmask16 m = n - i >= W ? (__mmask16)0xffff : tail(n - i);
        __m512 v = _mm512_maskz_loadu_ps(m, g + i), s = sigmoid16(v);
        __m512 vdy = _mm512_maskz_loadu_ps(m, dy + i);
        if (dg) {
            __m512 d = _mm512_mul_ps(s, _mm512_fmadd_ps(v, _mm512_sub_ps(one, s), one));
            __m512 gr = _mm512_mul_ps(_mm512_mul_ps(vdy, _mm512_maskz_loadu_ps(m, u + i)), d);
            _mm512_mask_storeu_ps(dg + i, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, dg + i), gr));
        }
        if (du) {
            __m512 gr = _mm512_mul_ps(_mm512_mul_ps(vdy, v), s);
            _mm512_mask_storeu_ps(du + i, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, du + i), gr));
        }
    }
}

static void rope(float *y, const float *x, const float *c, const float *s, int64_t n, int acc) {
    for (int64_t i = 0; i < n; i += W) {
        __mmask16 m = n - i >= W ? (__mmask16)0xffff : tail(n - i);
        __m512 v = _mm512_maskz_loadu_ps(m, x + i);
        __m512 sw = _mm512_permute_ps(v, 0xB1); /* swap the two floats of each pair */
        __m512 r = _mm512_fmadd_ps(sw, _mm512_maskz_loadu_ps(m, s + i), _mm512_mul_ps(v, _mm512_maskz_loadu_ps(m, c + i)));
        if (acc) r = _mm512_add_ps(_mm512_maskz_loadu_ps(m, y + i), r);
        _mm512_mask_storeu_ps(y + i, m, r);
    }
}

const nb_vec_kernels nb_vec_avx512 = {
    "avx512",    dot,        axpy,     scal,       vmax,       expsum,     softmax_bwd, mul_sub,  xent_bwd,
    rmsnorm_fwd, rmsnorm_bwd, silu_fwd, silu_bwd,  swiglu_fwd, swiglu_bwd, rope,
};
