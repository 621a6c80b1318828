/* attn_x86.h: the body of the AVX2 and AVX-512 attention kernels (attn_avx2.c, attn_avx512.c),
   written once over a few vector macros that each includer defines:
     VW lanes; VF vector; VM lane mask; vfull() all lanes; vfirst(r) lanes [0, r); vfrom(c) lanes >= c
     (c may be <= 0 or >= VW); vload/vloadm(p, m)/vstore/vstorem(p, m, v); vbcast(p) broadcast *p;
     vset1, vzero, vadd, vsub, vmul, vmax, vfma(a, b, c) = a b + c, vfnma(a, b, c) = c - a b;
     vmaxm(m, a, b) = max(a, b) on m, a elsewhere; vzerom(m, a) = a on m, 0 elsewhere;
     vround(x) to nearest even; vpow2mul(p, n) = p 2^n for integral n in [-126, 127];
     MR1..MR4: rows of a register tile with 1..4 vectors of columns (16, 12, 8, 6, 4, 3, 2 or 1).
   Only fused multiply-adds that the reference spells fmaf are fused here: no mul followed by add. */

#define TQ NB_ATTN_TQ
#define QV (TQ / VW) /* vectors per strip row */
#define INLINE static inline __attribute__((always_inline))

/* exp(x) for x <= 0 or NaN (the strips: S - max, S - lse): the upper clamp of the reference is a
   no-op there. vpow2mul(p, n) = p 2^n, correctly rounded (exact unless the result is subnormal). */
INLINE VF vexp_neg(VF x) {
    x = vmax(vset1(-87.0f), x);
    VF n = vround(vmul(x, vset1(1.44269504088896341f)));
    VF r = vfnma(n, vset1(0.693359375f), x);
    r = vfnma(n, vset1(-2.12194440e-4f), r);
    VF p = vset1(1.9875691500E-4f);
    p = vfma(p, r, vset1(1.3981999507E-3f));
    p = vfma(p, r, vset1(8.3334519073E-3f));
    p = vfma(p, r, vset1(4.1665795894E-2f));
    p = vfma(p, r, vset1(1.6666665459E-1f));
    p = vfma(p, r, vset1(5.0000001201E-1f));
    p = vfma(p, vmul(r, r), vadd(r, vset1(1.0f)));
    return vpow2mul(p, n);
}

INLINE VF vexp(VF x) { return vexp_neg(vmin(vset1(88.0f), x)); }

/* One MR x NV register tile: C rows [0, MR) x vectors [0, NV) (the last one masked by ml).
   Row r of op(A) at step k is A[r rs + k ks]: (rs, ks) = (1, lda) for A^T, (lda, 1) for A.
   A macro rather than a function of MR, NV so the accumulators are a fixed-size array that the
   compiler keeps in registers (one function per shape, inlined into each layout's loop). */
#define DEF_TILE(MR, NV)                                                                                    \
    INLINE void tile_##MR##_##NV(const int64_t rs, const int64_t ks, int64_t K, const float *A, const float *B, \
                                 int64_t ldb, VM ml, float *C, int64_t ldc, int acc) {                      \
        VF c[MR][NV];                                                                                       \
        _Pragma("GCC unroll 16") for (int r = 0; r < MR; r++)                                               \
            _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) c[r][v] = vzero();                         \
        for (int64_t k = 0; k < K; k++) {                                                                   \
            const float *b = B + k * ldb, *a = A + k * ks;                                                  \
            VF y[NV];                                                                                       \
            _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) y[v] =                                      \
                v == NV - 1 ? vloadm(b + v * VW, ml) : vload(b + v * VW);                                   \
            _Pragma("GCC unroll 16") for (int r = 0; r < MR; r++) {                                         \
                VF x = vbcast(a + r * rs);                                                                  \
                _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) c[r][v] = vfma(x, y[v], c[r][v]);      \
            }                                                                                               \
        }                                                                                                   \
        _Pragma("GCC unroll 16") for (int r = 0; r < MR; r++) {                                             \
            float *cr = C + r * ldc;                                                                        \
            _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) {                                          \
                VM m = v == NV - 1 ? ml : vfull();                                                          \
                VF o = c[r][v];                                                                             \
                if (acc) o = vadd(vloadm(cr + v * VW, m), o);                                               \
                vstorem(cr + v * VW, m, o);                                                                 \
            }                                                                                               \
        }                                                                                                   \
    }
#define DEF_NV(NV)                                                                                 \
    DEF_TILE(16, NV) DEF_TILE(12, NV) DEF_TILE(8, NV) DEF_TILE(6, NV) DEF_TILE(4, NV) DEF_TILE(3, NV) \
        DEF_TILE(2, NV) DEF_TILE(1, NV)
DEF_NV(1)
DEF_NV(2)
DEF_NV(3)
DEF_NV(4)

#define TILE(NV, mr, ...)                                    \
    switch (mr) {                                            \
    case 16: tile_16_##NV(__VA_ARGS__); break;               \
    case 12: tile_12_##NV(__VA_ARGS__); break;               \
    case 8: tile_8_##NV(__VA_ARGS__); break;                 \
    case 6: tile_6_##NV(__VA_ARGS__); break;                 \
    case 4: tile_4_##NV(__VA_ARGS__); break;                 \
    case 3: tile_3_##NV(__VA_ARGS__); break;                 \
    case 2: tile_2_##NV(__VA_ARGS__); break;                 \
    default: tile_1_##NV(__VA_ARGS__); break;                \
    }

/* rows [i, M) of one column chunk in tiles of MR rows, then of 8, 4, 2, 1 below MR */
#define ROWS(MR, NV, rs, ks)                                                                         \
    do {                                                                                             \
        _Pragma("GCC unroll 8") for (int mr_ = (MR); mr_ >= 1; mr_ = mr_ == (MR) && (MR) > 8 ? 8 : mr_ / 2) { \
            if (mr_ < (MR) && (mr_ & (mr_ - 1))) continue;                                           \
            for (; i + mr_ <= M; i += mr_) {                                                         \
                const float *a_ = A + i * (ta ? 1 : lda);                                            \
                float *c_ = C + i * ldc;                                                             \
                TILE(NV, mr_, rs, ks, K, a_, B, ldb, ml, c_, ldc, acc)                               \
            }                                                                                        \
        }                                                                                            \
    } while (0)

/* the three layouts of A: transposed (rows contiguous), a strip (row stride TQ), any stride */
#define LAYOUTS(MR, NV)                          \
    do {                                         \
        if (ta) ROWS(MR, NV, 1, lda);            \
        else if (lda == TQ) ROWS(MR, NV, TQ, 1); \
        else ROWS(MR, NV, lda, 1);               \
    } while (0)

static void mm(int ta, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B, int64_t ldb,
               float *C, int64_t ldc, int acc) {
    for (int64_t n0 = 0; n0 < N; n0 += 4 * VW, B += 4 * VW, C += 4 * VW) {
        int64_t nc = N - n0 < 4 * VW ? N - n0 : 4 * VW;
        int nv = (int)((nc + VW - 1) / VW);
        VM ml = vfirst(nc - (nv - 1) * VW);
        int64_t i = 0;
        switch (nv) {
        case 1: LAYOUTS(MR1, 1); break;
        case 2: LAYOUTS(MR2, 2); break;
        case 3: LAYOUTS(MR3, 3); break;
        default: LAYOUTS(MR4, 4); break;
        }
    }
}

/* Rows j <= t0 are live for every query of the block; row j > t0 only for lanes i >= j - t0,
   and a whole vector v is dead when j - t0 >= (v + 1) VW (exp skipped, 0 stored). */
static void softmax(float *S, int64_t nk, int64_t t0, float *mx, float *l) {
    VF m[QV], s[QV];
    int64_t j0 = nk < t0 + 1 ? nk : t0 + 1; /* rows [0, j0) unmasked */
    for (int v = 0; v < QV; v++) m[v] = vset1(-INFINITY), s[v] = vzero();
    for (int64_t j = 0; j < j0; j++)
        for (int v = 0; v < QV; v++) m[v] = vmax(m[v], vload(S + j * TQ + v * VW));
    for (int64_t j = j0; j < nk; j++)
        for (int v = 0; v < QV; v++)
            if (j - t0 < (v + 1) * VW) m[v] = vmaxm(vfrom(j - t0 - v * VW), m[v], vload(S + j * TQ + v * VW));
    for (int64_t j = 0; j < j0; j++)
        for (int v = 0; v < QV; v++) {
            VF e = vexp_neg(vsub(vload(S + j * TQ + v * VW), m[v]));
            vstore(S + j * TQ + v * VW, e);
            s[v] = vadd(s[v], e);
        }
    for (int64_t j = j0; j < nk; j++)
        for (int v = 0; v < QV; v++) {
            VF e = vzero();
            if (j - t0 < (v + 1) * VW) e = vzerom(vfrom(j - t0 - v * VW), vexp_neg(vsub(vload(S + j * TQ + v * VW), m[v])));
            vstore(S + j * TQ + v * VW, e);
            s[v] = vadd(s[v], e);
        }
    for (int v = 0; v < QV; v++) vstore(mx + v * VW, m[v]), vstore(l + v * VW, s[v]);
}

static void colscale(float *S, int64_t nk, const float *sc) {
    VF s[QV];
    for (int v = 0; v < QV; v++) s[v] = vload(sc + v * VW);
    for (int64_t j = 0; j < nk; j++)
        for (int v = 0; v < QV; v++) vstore(S + j * TQ + v * VW, vmul(vload(S + j * TQ + v * VW), s[v]));
}

static void probs(float *S, int64_t nk, int64_t t0, const float *lse) {
    VF ls[QV];
    int64_t j0 = nk < t0 + 1 ? nk : t0 + 1;
    for (int v = 0; v < QV; v++) ls[v] = vload(lse + v * VW);
    for (int64_t j = 0; j < j0; j++)
        for (int v = 0; v < QV; v++) vstore(S + j * TQ + v * VW, vexp_neg(vsub(vload(S + j * TQ + v * VW), ls[v])));
    for (int64_t j = j0; j < nk; j++)
        for (int v = 0; v < QV; v++) {
            VF e = vzero();
            if (j - t0 < (v + 1) * VW) e = vzerom(vfrom(j - t0 - v * VW), vexp_neg(vsub(vload(S + j * TQ + v * VW), ls[v])));
            vstore(S + j * TQ + v * VW, e);
        }
}

static void dscores(float *dP, const float *P, int64_t nk, float scale) {
    VF D[QV], sc = vset1(scale);
    for (int v = 0; v < QV; v++) D[v] = vzero();
    for (int64_t j = 0; j < nk; j++)
        for (int v = 0; v < QV; v++) D[v] = vfma(vload(P + j * TQ + v * VW), vload(dP + j * TQ + v * VW), D[v]);
    for (int64_t j = 0; j < nk; j++)
        for (int v = 0; v < QV; v++) {
            VF t = vmul(vload(P + j * TQ + v * VW), vsub(vload(dP + j * TQ + v * VW), D[v]));
            vstore(dP + j * TQ + v * VW, vmul(t, sc));
        }
}

/* 8 x 8 blocks transposed in registers (256-bit, both levels have them), edges scalar */
static void load_t(float *Xt, const float *X, int64_t ld, int64_t H, int64_t m, float s) {
    __m256 sc = _mm256_set1_ps(s);
    int64_t d = 0;
    for (; d + 8 <= H; d += 8) {
        int64_t i = 0;
        for (; i + 8 <= m; i += 8) {
            const float *x = X + i * ld + d;
            __m256 r0 = _mm256_loadu_ps(x), r1 = _mm256_loadu_ps(x + ld), r2 = _mm256_loadu_ps(x + 2 * ld);
            __m256 r3 = _mm256_loadu_ps(x + 3 * ld), r4 = _mm256_loadu_ps(x + 4 * ld), r5 = _mm256_loadu_ps(x + 5 * ld);
            __m256 r6 = _mm256_loadu_ps(x + 6 * ld), r7 = _mm256_loadu_ps(x + 7 * ld);
            __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
            __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
            __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
            __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
            __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
            __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
            __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
            __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
            float *o = Xt + d * TQ + i;
            _mm256_storeu_ps(o, _mm256_mul_ps(_mm256_permute2f128_ps(u0, u4, 0x20), sc));
            _mm256_storeu_ps(o + TQ, _mm256_mul_ps(_mm256_permute2f128_ps(u1, u5, 0x20), sc));
            _mm256_storeu_ps(o + 2 * TQ, _mm256_mul_ps(_mm256_permute2f128_ps(u2, u6, 0x20), sc));
            _mm256_storeu_ps(o + 3 * TQ, _mm256_mul_ps(_mm256_permute2f128_ps(u3, u7, 0x20), sc));
            _mm256_storeu_ps(o + 4 * TQ, _mm256_mul_ps(_mm256_permute2f128_ps(u0, u4, 0x31), sc));
            _mm256_storeu_ps(o + 5 * TQ, _mm256_mul_ps(_mm256_permute2f128_ps(u1, u5, 0x31), sc));
            _mm256_storeu_ps(o + 6 * TQ, _mm256_mul_ps(_mm256_permute2f128_ps(u2, u6, 0x31), sc));
            _mm256_storeu_ps(o + 7 * TQ, _mm256_mul_ps(_mm256_permute2f128_ps(u3, u7, 0x31), sc));
        }
        for (int64_t dd = d; dd < d + 8; dd++)
            for (int64_t ii = i; ii < TQ; ii++) Xt[dd * TQ + ii] = ii < m ? X[ii * ld + dd] * s : 0.0f;
    }
    for (; d < H; d++)
        for (int64_t i = 0; i < TQ; i++) Xt[d * TQ + i] = i < m ? X[i * ld + d] * s : 0.0f;
}

static void vexp_n(float *y, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i += VW) {
        VM m = vfirst(n - i);
        vstorem(y + i, m, vexp(vloadm(x + i, m)));
    }
}

/* pv_l over this level's vectors */
#define PW VW
#define PF VF
#define PM VM
#define pfull vfull
#define pfirst vfirst
#define pload vload
#define ploadm vloadm
#define pstorem vstorem
#define pset1 vset1
#define pzero vzero
#define pfma vfma
#define PV_P(x) pv_##x
#include "attn_pv_x86.h"

/* mx = max of s[0, n) (any order: the same value for finite scores), e[j] = nb_attn_exp(s[j] - mx) */
static float max_exp(float *e, const float *s, int64_t n) {
    VF m = vset1(-INFINITY);
    int64_t j = 0;
    for (; j + VW <= n; j += VW) m = vmax(m, vload(s + j));
    if (j < n) m = vmaxm(vfirst(n - j), m, vloadm(s + j, vfirst(n - j)));
    float mv[VW], mx = -INFINITY;
    vstore(mv, m);
    for (int i = 0; i < VW; i++) mx = mx > mv[i] ? mx : mv[i];
    const VF mb = vset1(mx);
    for (j = 0; j < n; j += VW) {
        const VM k = vfirst(n - j);
        vstorem(e + j, k, vexp(vsub(vloadm(s + j, k), mb)));
    }
    return mx;
}
