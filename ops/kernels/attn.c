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

static void softmax_ref(float *S, int64_t nk, int64_t t0, float *mx, float *l) {
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
    }
}

static void colscale_ref(float *S, int64_t nk, const float *s) {
    for (int64_t j = 0; j < nk; j++)
        for (int64_t i = 0; i < TQ; i++) S[j * TQ + i] *= s[i];
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

static void pv_l_ref(int n, const float *const *e, int64_t nk, const float *const *v, int64_t ldv, int64_t H,
                     float *const *o, float *l) {
    for (int h = 0; h < n; h++) {
        float s = 0.0f;
        for (int64_t d = 0; d < H; d++) o[h][d] = 0.0f;
        for (int64_t j = 0; j < nk; j++) {
            s += e[h][j];
            for (int64_t d = 0; d < H; d++) o[h][d] = fmaf(e[h][j], v[h][j * ldv + d], o[h][d]);
        }
        if (l) l[h] = s;
    }
}

static float max_exp_ref(float *e, const float *s, int64_t n) {
    float mx = -INFINITY;
    for (int64_t j = 0; j < n; j++) mx = mx > s[j] ? mx : s[j];
    for (int64_t j = 0; j < n; j++) e[j] = nb_attn_exp(s[j] - mx);
    return mx;
}

const nb_attn_kernels nb_attn_ref = {"scalar",    1,           mm_ref,     softmax_ref, colscale_ref,
                                     probs_ref,   dscores_ref, load_t_ref, exp_ref,     pv_l_ref, max_exp_ref};

/* ---- block products and the per-head forward ---- */
#define HQ (TQ / 2)

void nb_attn_scores(const nb_attn_kernels *kk, float *S, const float *X, int64_t ldx, const float *Yt, int64_t H,
                    int64_t t0, int64_t nk) {
    int64_t r = t0 + HQ < nk ? t0 + HQ : nk;
    kk->mm(0, r, TQ, H, X, ldx, Yt, TQ, S, TQ, 0);
    if (nk > r) {
        kk->mm(0, nk - r, HQ, H, X + r * ldx, ldx, Yt + HQ, TQ, S + r * TQ + HQ, TQ, 0);
        for (int64_t j = r; j < nk; j++)
            for (int64_t i = 0; i < HQ; i++) S[j * TQ + i] = 0.0f;
    }
}

/* queries below HQ stop at key t0 + HQ (the keys past it are masked for them) */
void nb_attn_over_keys(const nb_attn_kernels *kk, const float *P, const float *Y, int64_t ldy, float *C, int64_t ldc,
                       int64_t N, int64_t t0, int64_t m, int acc) {
    int64_t h = m < HQ ? m : HQ;
    kk->mm(1, h, N, t0 + h, P, TQ, Y, ldy, C, ldc, acc);
    if (m > HQ) kk->mm(1, m - HQ, N, t0 + m, P + HQ, TQ, Y, ldy, C + HQ * ldc, ldc, acc);
}

void nb_attn_over_keys_t(const nb_attn_kernels *kk, const float *Y, int64_t ldy, const float *P, float *Ct, int64_t N,
                         int64_t t0, int64_t m) {
    int64_t h = m < HQ ? m : HQ;
    kk->mm(1, N, HQ, t0 + h, Y, ldy, P, TQ, Ct, TQ, 0);
    if (m > HQ) kk->mm(1, N, HQ, t0 + m, Y, ldy, P + HQ, TQ, Ct + HQ, TQ, 0);
}

/* keys from t0 + HQ on start at query HQ */
void nb_attn_over_queries(const nb_attn_kernels *kk, const float *A, const float *Y, int64_t ldy, float *C,
                          int64_t ldc, int64_t N, int64_t t0, int64_t m) {
    int64_t r = t0 + (m < HQ ? m : HQ);
    kk->mm(0, r, N, m, A, TQ, Y, ldy, C, ldc, 1);
    if (m > HQ) kk->mm(0, m - HQ, N, m - HQ, A + r * TQ + HQ, TQ, Y + HQ * ldy, ldy, C + r * ldc, ldc, 1);
}

int64_t nb_attn_scratch_floats(int64_t nk, int64_t H) { return nk * TQ + 2 * H * TQ + 2 * TQ + 64; }
int64_t nb_attn_decode_scratch_floats(int64_t nk, int64_t H) { return 2 * nk + H * (TQ + 1) + 64; }
int64_t nb_attn_kept_floats(int64_t T) { return TQ * (T / TQ) * (T / TQ + 1) / 2 * TQ + (T % TQ ? T * TQ : 0); }
int64_t nb_attn_kept_at(int64_t t0) { return TQ * TQ * (t0 / TQ) * (t0 / TQ + 1) / 2; }

/* Query blocks of TQ from pos. Every product is a chain per output element, and the chains of
   row t only add exact zeros past key t, so where the blocks start does not matter. With the head
   dim under one vector, P^T V runs transposed ((H, TQ), vectorised over queries): the same chains. */
/* One query row at position t (decode): the arithmetic of the strips below for that row, without
   their 31 idle queries. Scores s_j = fma chain over d of qs[d] k_j[d] (the strip's chain with the
   operands of each fma swapped, the same bits), the keys transposed 32 at a time (load_t, times
   1.0f: exact) unless given transposed (kt: (H, >= nk), row stride ldkt: then one product over all
   keys); then mx = the max (any order: the same value for finite scores) and e_j =
   nb_attn_exp(s_j - mx) (max_exp). Returns mx; e is scratch + nk. Scratch: 2 nk + H (TQ + 1)
   floats (nb_attn_decode_scratch_floats, within nb_attn_scratch_floats). */
static float row_exps(const nb_attn_kernels *kk, const float *q, const float *k, const float *kt, int64_t ldkt,
                      int64_t ldkv, int64_t nk, int64_t H, float scale, float *scratch) {
    float *sc = scratch, *e = sc + nk, *Kt = e + nk, *qs = Kt + H * TQ;
    for (int64_t d = 0; d < H; d++) qs[d] = q[d] * scale;
    if (kt) kk->mm(0, 1, nk, H, qs, H, kt, ldkt, sc, nk, 0);
    else
        for (int64_t j0 = 0; j0 < nk; j0 += TQ) {
            int64_t m = nk - j0 < TQ ? nk - j0 : TQ;
            kk->load_t(Kt, k + j0 * ldkv, ldkv, H, m, 1.0f);
            kk->mm(0, 1, m, H, qs, H, Kt, TQ, sc + j0, m, 0);
        }
    return kk->max_exp(e, sc, nk);
}

/* then l = the sum of e_j in j order from 0 and o[d] = (fma chain over j of e_j v_j[d]) * (1 / l),
   o and l in one pass (pv_l) */
static void forward_one_row(const nb_attn_kernels *kk, const float *q, const float *k, const float *v, int64_t ldkv,
                            float *o, int64_t t, int64_t H, float scale, float *lse, float *scratch) {
    const int64_t nk = t + 1;
    const float mx = row_exps(kk, q, k, NULL, 0, ldkv, nk, H, scale, scratch), *e = scratch + nk;
    float l;
    kk->pv_l(1, &e, nk, &v, ldkv, H, &o, &l);
    const float il = 1.0f / l;
    for (int64_t d = 0; d < H; d++) o[d] *= il;
    if (lse) *lse = mx + logf(l);
}

void nb_attn_decode_heads(const nb_attn_kernels *kk, int64_t h0, int64_t h1, int64_t kv_mul, const float *q,
                          const float *kt, int64_t ldkt, const float *v, int64_t ldkv, float *o, int64_t t, int64_t H,
                          float *scratch, int64_t lds) {
    const int64_t nk = t + 1;
    const float scale = 1.0f / sqrtf((float)H);
    for (int64_t h0g = h0; h0g < h1; h0g += NB_ATTN_PV_HEADS) {
        const int n = (int)(h1 - h0g < NB_ATTN_PV_HEADS ? h1 - h0g : NB_ATTN_PV_HEADS);
        const float *e[NB_ATTN_PV_HEADS], *vh[NB_ATTN_PV_HEADS];
        float *oh[NB_ATTN_PV_HEADS], l[NB_ATTN_PV_HEADS];
        for (int i = 0; i < n; i++) {
            const int64_t h = h0g + i, g = h / kv_mul;
            float *sh = scratch + (h - h0) * lds;
            row_exps(kk, q + h * H, NULL, kt + g * H * ldkt, ldkt, ldkv, nk, H, scale, sh);
            e[i] = sh + nk, vh[i] = v + g * H, oh[i] = o + h * H;
        }
        kk->pv_l(n, e, nk, vh, ldkv, H, oh, l);
        for (int i = 0; i < n; i++) {
            const float il = 1.0f / l[i];
            for (int64_t d = 0; d < H; d++) oh[i][d] *= il;
        }
    }
}

void nb_attn_forward_rows(const nb_attn_kernels *kk, const float *q, int64_t ldq, const float *k, const float *v,
                          int64_t ldkv, float *o, int64_t ldo, int64_t pos, int64_t n, int64_t H, float *lse,
                          float *keep, float *scratch) {
    float scale = 1.0f / sqrtf((float)H);
    if (n == 1 && !keep) { /* decode: one row */
        forward_one_row(kk, q, k, v, ldkv, o, pos, H, scale, lse, scratch);
        return;
    }
    int sh = H < kk->lanes;
    float *Qt = scratch + (pos + n) * TQ, *Ot = Qt + H * TQ, *mx = Ot + H * TQ, *il = mx + TQ;
    for (int64_t b0 = 0; b0 < n; b0 += TQ) {
        int64_t m = n - b0 < TQ ? n - b0 : TQ, t0 = pos + b0, nk = t0 + m;
        float *S = keep ? keep + nb_attn_kept_at(t0) : scratch, *ob = o + b0 * ldo;
        kk->load_t(Qt, q + b0 * ldq, ldq, H, m, scale);
        nb_attn_scores(kk, S, k, ldkv, Qt, H, t0, nk); /* S = K Qs^T */
        kk->softmax(S, nk, t0, mx, il);
        for (int64_t i = 0; i < TQ; i++) {
            if (i < m && lse) lse[b0 + i] = mx[i] + logf(il[i]);
            il[i] = i < m ? 1.0f / il[i] : 0.0f;
        }
        if (sh) { /* Ot = V^T P, O = Ot^T / l */
            nb_attn_over_keys_t(kk, v, ldkv, S, Ot, H, t0, m);
            for (int64_t i = 0; i < m; i++)
                for (int64_t d = 0; d < H; d++) ob[i * ldo + d] = Ot[d * TQ + i] * il[i];
        } else { /* O = P^T V / l */
            nb_attn_over_keys(kk, S, v, ldkv, ob, ldo, H, t0, m, 0);
            for (int64_t i = 0; i < m; i++)
                for (int64_t d = 0; d < H; d++) ob[i * ldo + d] *= il[i];
        }
        if (keep) kk->colscale(S, nk, il); /* the probabilities, for the backward */
    }
}

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
