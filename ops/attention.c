/* attention.c: fused causal self-attention with grouped kv heads, flash-attention style:
   the forward keeps only the log-sum-exp of each score row, the backward recomputes the scores. */
#include "ops.h"

#include <math.h>
#include <string.h>

#include "../autograd/gradcheck.h"
#include "kernels/vec.h"
#include "oputil.h"

/* Shapes: q, out (B, T, nh, H); k, v (B, T, nkv, H); query head h reads kv head h / (nh / nkv).
   One task per (b, h); within it, query tiles of TQ rows against the keys 0..t (causal), with
   small register-blocked GEMMs (nb_vec mm) on a TQ x T score tile that lives only in scratch:
     S   = Qs K^T,  Qs = q / sqrt(H)            (K copied transposed to (H, T) once per task)
     P   = exp(S - lse) on j <= t, 0 beyond;  lse = m + log sum_j exp(s_j - m) is all we keep
     O   = P V / l
   backward, recomputing S and P from lse, with D = <p, dp> (= <dO, O>):
     dP  = dO V^T,  dS = P o (dP - D)
     dq += dS K / sqrt(H),  dk^T += Qs^T dS,  dv^T += dO^T P
   Products whose output width is H use the dot-product kernel (mm_nt, vectorised over keys)
   when H is small (tiny models: H = 8 would fill half a vector), the broadcast kernel (mm)
   otherwise. Query heads that share a kv head write their dk^T, dv^T into separate per-head
   (H, T) buffers,
   summed in head order afterwards: no races, and the same bits for any thread count. */
#define TQ 16

typedef struct att_geom {
    int64_t B, T, NH, NKV, H, rep;
    float scale;
} att_geom;

static void geom(const nb_node *n, att_geom *g) {
    const nb_tensor *q = n->in[0], *k = n->in[1];
    g->B = q->shape[0];
    g->T = q->shape[1];
    g->NH = q->shape[2];
    g->H = q->shape[3];
    g->NKV = k->shape[2];
    g->rep = g->NH / g->NKV;
    g->scale = 1.0f / sqrtf((float)g->H);
}

/* dst (H, T) <- src rows j of kv head `kv` of batch b: dst[d T + j] = src[((b T + j) NKV + kv) H + d] */
static void transpose_in(float *dst, const float *src, const att_geom *g, int64_t b, int64_t kv) {
    for (int64_t j = 0; j < g->T; j++) {
        const float *row = src + ((b * g->T + j) * g->NKV + kv) * g->H;
        for (int64_t d = 0; d < g->H; d++) dst[d * g->T + j] = row[d];
    }
}

#define SMALL_H 32 /* below: P V and dS K as dot products over the keys */

/* per-thread scratch: Kt, Vt (H, T), S, dS (TQ, T), Qs (TQ, H), one value per tile row */
static int64_t scratch_floats(const att_geom *g) { return 2 * g->H * g->T + 2 * TQ * g->T + TQ * g->H + TQ + 64; }

/* Qs = q rows t0..t0+m of head h, times scale */
static void load_qs(float *Qs, const float *Q, const att_geom *g, int64_t b, int64_t h, int64_t t0, int64_t m) {
    for (int64_t r = 0; r < m; r++) {
        const float *q = Q + ((b * g->T + t0 + r) * g->NH + h) * g->H;
        for (int64_t d = 0; d < g->H; d++) Qs[r * g->H + d] = q[d] * g->scale;
    }
}

static void attention_forward(nb_node *n) {
    att_geom g;
    geom(n, &g);
    const float *Q = n->in[0]->data, *K = n->in[1]->data, *V = n->in[2]->data;
    float *O = n->out->data, *lse = n->p[0], *scr = n->p[1];
    int64_t per = scratch_floats(&g), tasks = g.B * g.NH, T = g.T, H = g.H;
    int64_t ldkv = g.NKV * H, ldq = g.NH * H;
    const nb_vec_kernels *kk = nb_vec();
#pragma omp parallel for schedule(static) if (tasks > 1 && g.B * g.NH * T * T * H > NB_OMP_MIN)
    for (int64_t task = 0; task < tasks; task++) {
        int64_t b = task / g.NH, h = task % g.NH, kv = h / g.rep;
        float *Kt = scr + omp_tid() * per, *Vt = Kt + H * T, *S = Vt + H * T, *Qs = S + 2 * TQ * T, *il = Qs + TQ * H;
        const float *Vb = V + (b * T * g.NKV + kv) * H;
        transpose_in(Kt, K, &g, b, kv);
        if (H < SMALL_H) transpose_in(Vt, V, &g, b, kv);
        for (int64_t t0 = 0; t0 < T; t0 += TQ) {
            int64_t m = T - t0 < TQ ? T - t0 : TQ, nk = t0 + m;
            load_qs(Qs, Q, &g, b, h, t0, m);
            kk->mm(0, m, nk, H, 1.0f, Qs, H, Kt, T, S, T, 0);
            for (int64_t r = 0; r < m; r++) {
                float *s = S + r * T;
                int64_t nr = t0 + r + 1; /* causal: keys 0..t */
                float mx = kk->max(s, nr);
                float l = kk->expsum(s, s, mx, nr); /* s now holds unnormalised p */
                for (int64_t j = nr; j < nk; j++) s[j] = 0.0f;
                lse[(b * g.NH + h) * T + t0 + r] = mx + logf(l);
                il[r] = 1.0f / l;
            }
            float *Ob = O + ((b * T + t0) * g.NH + h) * H;
            if (H < SMALL_H)
                kk->mm_nt(m, H, nk, 1.0f, S, T, Vt, T, Ob, ldq, 0);
            else
                kk->mm(0, m, H, nk, 1.0f, S, T, Vb, ldkv, Ob, ldq, 0);
            for (int64_t r = 0; r < m; r++) kk->scal(Ob + r * ldq, il[r], H);
        }
    }
}

static void attention_backward(nb_node *n) {
    att_geom g;
    geom(n, &g);
    nb_tensor *q = n->in[0], *k = n->in[1], *v = n->in[2];
    const float *Q = q->data, *K = k->data, *V = v->data, *dO = n->out->grad;
    const float *lse = n->p[0];
    int64_t T = g.T, H = g.H, per = scratch_floats(&g), tasks = g.B * g.NH;
    int64_t ldkv = g.NKV * H, ldq = g.NH * H;
    int need_kv = k->requires_grad || v->requires_grad;
    /* scratch sized for the thread count now (it may differ from the forward's) */
    float *scr = nb_tape_alloc(n->tape, (size_t)(omp_threads() * per) * sizeof(float));
    if (!scr) return;
    /* per-head dk^T, dv^T: (B, NH, 2, H, T) */
    float *dkv = need_kv ? nb_tape_alloc(n->tape, (size_t)(tasks * 2 * H * T) * sizeof(float)) : NULL;
    if (need_kv && !dkv) return;
    float *dQ = q->requires_grad ? q->grad : NULL;
    const nb_vec_kernels *kk = nb_vec();
#pragma omp parallel for schedule(static) if (tasks > 1 && g.B * g.NH * T * T * H > NB_OMP_MIN / 4)
    for (int64_t task = 0; task < tasks; task++) {
        int64_t b = task / g.NH, h = task % g.NH, kv = h / g.rep;
        float *Kt = scr + omp_tid() * per, *Vt = Kt + H * T, *P = Vt + H * T, *dS = P + TQ * T, *Qs = dS + TQ * T;
        float *dKh = need_kv ? dkv + task * 2 * H * T : NULL, *dVh = need_kv ? dKh + H * T : NULL;
        const float *Kb = K + (b * T * g.NKV + kv) * H;
        if (need_kv) memset(dKh, 0, (size_t)(2 * H * T) * sizeof(float));
        transpose_in(Kt, K, &g, b, kv);
        transpose_in(Vt, V, &g, b, kv);
        for (int64_t t0 = 0; t0 < T; t0 += TQ) {
            int64_t m = T - t0 < TQ ? T - t0 : TQ, nk = t0 + m;
            load_qs(Qs, Q, &g, b, h, t0, m);
            kk->mm(0, m, nk, H, 1.0f, Qs, H, Kt, T, P, T, 0);
            for (int64_t r = 0; r < m; r++) { /* P recomputed from the saved lse */
                float *p = P + r * T;
                int64_t nr = t0 + r + 1;
                kk->expsum(p, p, lse[(b * g.NH + h) * T + t0 + r], nr);
                for (int64_t j = nr; j < nk; j++) p[j] = 0.0f;
            }
            const float *dOb = dO + ((b * T + t0) * g.NH + h) * H;
            kk->mm(0, m, nk, H, 1.0f, dOb, ldq, Vt, T, dS, T, 0); /* dP */
            for (int64_t r = 0; r < m; r++) {
                /* D = <dO, O> = <p, dp>; the latter makes sum_j ds_j vanish to rounding (exactly
                   for T = 1), so q gets no spurious gradient from a constant softmax */
                float D = kk->dot(P + r * T, dS + r * T, t0 + r + 1);
                kk->mul_sub(dS + r * T, P + r * T, D, nk); /* ds = p (dp - D), 0 past the diagonal */
            }
            float *dQb = dQ ? dQ + ((b * T + t0) * g.NH + h) * H : NULL;
            if (dQ && H < SMALL_H) kk->mm_nt(m, H, nk, g.scale, dS, T, Kt, T, dQb, ldq, 1);
            else if (dQ) kk->mm(0, m, H, nk, g.scale, dS, T, Kb, ldkv, dQb, ldq, 1);
            if (need_kv) {
                kk->mm(1, H, nk, m, 1.0f, Qs, H, dS, T, dKh, T, 1);
                kk->mm(1, H, nk, m, 1.0f, dOb, ldq, P, T, dVh, T, 1);
            }
        }
    }
    if (!need_kv) return;
    /* dk[b, j, kv, d] += dKh[b, h][d, j] for the group's heads h, in head order; likewise dv */
    float *dK = k->requires_grad ? k->grad : NULL, *dV = v->requires_grad ? v->grad : NULL;
#pragma omp parallel for schedule(static) if (g.B * T * g.NKV * H * g.rep > NB_OMP_MIN)
    for (int64_t bk = 0; bk < g.B * g.NKV; bk++) {
        int64_t b = bk / g.NKV, kv = bk % g.NKV;
        for (int64_t r = 0; r < g.rep; r++) {
            const float *src = dkv + (b * g.NH + kv * g.rep + r) * 2 * H * T;
            for (int64_t j = 0; j < T; j++) {
                int64_t o = ((b * T + j) * g.NKV + kv) * H;
                for (int64_t d = 0; d < H; d++) {
                    if (dK) dK[o + d] += src[d * T + j];
                    if (dV) dV[o + d] += src[H * T + d * T + j];
                }
            }
        }
    }
}

const nb_op nb_op_attention = {"attention", attention_forward, attention_backward};

nb_tensor *nb_attention(nb_tape *t, nb_tensor *q, nb_tensor *k, nb_tensor *v) {
    if (bad_f32(t, "attention", "q", q, 0) || bad_f32(t, "attention", "k", k, 0) || bad_f32(t, "attention", "v", v, 0))
        return NULL;
    char b1[64], b2[64], b3[64];
    if (q->ndim != 4 || k->ndim != 4 || v->ndim != 4 || !nb_same_shape(k, v) || q->shape[0] != k->shape[0] ||
        q->shape[1] != k->shape[1] || q->shape[3] != k->shape[3] || q->shape[2] % k->shape[2])
        return nb_tape_fail(t, NB_ESHAPE,
                            "attention: q %s, k %s, v %s: expected q (B, T, nh, H) and k, v (B, T, nkv, H) with nh %% nkv == 0",
                            SHAPE(q, b1), SHAPE(k, b2), SHAPE(v, b3));
    att_geom g;
    nb_node tmp = {.in = {q, k, v}};
    geom(&tmp, &g);
    nb_tensor *y = nb_tape_tensor(t, 4, q->shape);
    float *lse = nb_tape_alloc(t, (size_t)(g.B * g.NH * g.T) * sizeof(float));
    float *scr = nb_tape_alloc(t, (size_t)(omp_threads() * scratch_floats(&g)) * sizeof(float));
    nb_node *n = nb_tape_push(t, &nb_op_attention, y, q, k, v);
    if (!n || !lse || !scr) return NULL;
    n->p[0] = lse;
    n->p[1] = scr;
    attention_forward(n);
    return y;
}

/* ---- gradient-check cases ---- */
static nb_tensor *c_att(nb_tape *t, nb_tensor **in) { return nb_attention(t, in[0], in[1], in[2]); }

#define ATT(nm, B, T, NH, NKV, H) \
    {.name = nm, .n_in = 3, .ndim = {4, 4, 4}, .shape = {{B, T, NH, H}, {B, T, NKV, H}, {B, T, NKV, H}}, .apply = c_att, .eps = 1e-2}

const nb_opcase nb_opcases_attention[] = {
    ATT("attention_mha", 1, 3, 2, 2, 4),
    ATT("attention_gqa_4_2", 2, 4, 4, 2, 4),
    ATT("attention_t1", 1, 1, 2, 1, 6),
    ATT("attention_mqa_odd", 1, 5, 3, 1, 3),
    ATT("attention_long_t", 1, 19, 2, 1, 2),
    ATT("attention_h32_gqa", 1, 4, 4, 2, 32), /* H >= SMALL_H: the broadcast-kernel path */
    {0},
};
