/* attention.c: fused causal self-attention with grouped kv heads, flash-attention style: for
   small heads the forward keeps only the log-sum-exp of each score row and the backward recomputes
   the scores; for heads of KEEP_H or more it keeps the causal strips of probabilities instead. */
#include "ops.h"

#include <math.h>

#include "../autograd/gradcheck.h"
#include "kernels/attn.h"
#include "oputil.h"

/* Shapes: q, out (B, T, nh, H); k, v (B, T, nkv, H); query head h reads kv head h / (nh / nkv).
   Query blocks of TQ = NB_ATTN_TQ rows; each is scored against keys 0..t0+TQ-1 in a transposed
   strip S (keys, TQ) that lives only in per-thread scratch (kernels/attn.h), softmax down its
   columns, vectorised over the queries:
     S   = K Qs^T,  Qs = q / sqrt(H)         (q block transposed to (H, TQ), k read in place)
     P   = exp(S - lse) on j <= t, 0 beyond;  lse = m + log sum_j exp(s_j - m) is all we keep
     O   = P^T V / l
   backward, recomputing S and P from lse, with D = <p, dp> (= <dO, O>) per query:
     dP  = V dO^T,  dS = P o (dP - D) / sqrt(H)
     dq += dS^T K,  dk += dS Q,  dv += P dO
   The forward runs one task per (b, h). The backward runs one task per (b, kv head) that takes
   the group's query heads in order and accumulates straight into dk, dv: no races, no per-head
   buffers, and the same bits for any thread count. With the head dim under one vector
   (tiny models: H = 8), P^T V and dS^T K are computed transposed ((H, TQ), vectorised over
   queries) and transposed back. Every kernel gives the same bits at every SIMD level.
   From H = KEEP_H on, the forward writes its normalised P strips into a tape buffer (B nh strips
   of TQ x the sum of the blocks' key counts: about T^2/2 floats per head, half a dense T x T;
   only while that is at most 4 T H floats, four times q) and the backward reads them instead of
   recomputing S = K Qs^T and its exp: one product in seven less, worth more than the memory
   traffic once a product costs 2 H >= 64 flops per element (measured: a loss at H = 8). */
#define TQ NB_ATTN_TQ
#define KEEP_H 32

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

/* per-thread scratch: the forward's (nb_attn_forward_rows); the backward's S, dP (T, TQ),
   Qt, dOt, Zt (H, TQ) and one vector of TQ */
static int64_t scratch_floats(const att_geom *g) {
    int64_t f = nb_attn_scratch_floats(g->T, g->H), bw = 2 * g->T * TQ + 3 * g->H * TQ + TQ + 64;
    return f > bw ? f : bw;
}

static void attention_forward(nb_node *n) {
    att_geom g;
    geom(n, &g);
    const float *Q = n->in[0]->data, *K = n->in[1]->data, *V = n->in[2]->data;
    float *O = n->out->data, *lse = n->p[0], *scr = n->p[1], *kept = n->p[2];
    int64_t per = scratch_floats(&g), tasks = g.B * g.NH, T = g.T, H = g.H, kf = nb_attn_kept_floats(g.T);
    const nb_attn_kernels *kk = nb_attn();
#pragma omp parallel for schedule(static) if (tasks > 1 && g.B * g.NH * T * T * H > NB_OMP_MIN)
    for (int64_t task = 0; task < tasks; task++) {
        int64_t b = task / g.NH, h = task % g.NH, kv = h / g.rep, okv = (b * T * g.NKV + kv) * H;
        int64_t oq = (b * T * g.NH + h) * H;
        nb_attn_forward_rows(kk, Q + oq, g.NH * H, K + okv, V + okv, g.NKV * H, O + oq, g.NH * H, 0, T, H,
                             lse + task * T, kept ? kept + task * kf : NULL, scr + omp_tid() * per);
    }
}

static void attention_backward(nb_node *n) {
    att_geom g;
    geom(n, &g);
    nb_tensor *q = n->in[0], *k = n->in[1], *v = n->in[2];
    const float *Q = q->data, *K = k->data, *V = v->data, *dO = n->out->grad;
    const float *lse = n->p[0], *kept = n->p[2];
    int64_t T = g.T, H = g.H, per = scratch_floats(&g), tasks = g.B * g.NKV, kf = nb_attn_kept_floats(g.T);
    int64_t ldkv = g.NKV * H, ldq = g.NH * H;
    /* scratch sized for the thread count now (it may differ from the forward's) */
    float *scr = nb_tape_alloc(n->tape, (size_t)(omp_threads() * per) * sizeof(float));
    if (!scr) return;
    float *dQ = q->requires_grad ? q->grad : NULL, *dK = k->requires_grad ? k->grad : NULL;
    float *dV = v->requires_grad ? v->grad : NULL;
    const nb_attn_kernels *kk = nb_attn();
    int sh = H < kk->lanes; /* dS^T K transposed, as the forward's P^T V */
#pragma omp parallel for schedule(static) if (tasks > 1 && g.B * g.NH * T * T * H > NB_OMP_MIN / 4)
    for (int64_t task = 0; task < tasks; task++) {
        int64_t b = task / g.NKV, kv = task % g.NKV;
        float *P = scr + omp_tid() * per, *dP = P + T * TQ;
        float *Qt = dP + T * TQ, *dOt = Qt + H * TQ, *Zt = dOt + H * TQ, *ls = Zt + H * TQ;
        int64_t okv = (b * T * g.NKV + kv) * H; /* row 0 of this kv head in k, v */
        for (int64_t h = kv * g.rep; h < (kv + 1) * g.rep; h++) {
            const float *lh = lse + (b * g.NH + h) * T;
            for (int64_t t0 = 0; t0 < T; t0 += TQ) {
                int64_t m = T - t0 < TQ ? T - t0 : TQ, nk = t0 + m, oq = ((b * T + t0) * g.NH + h) * H;
                if (kept) { /* P as the forward left it */
                    P = (float *)kept + (b * g.NH + h) * kf + nb_attn_kept_at(t0);
                } else { /* S, then P from the saved lse */
                    kk->load_t(Qt, Q + oq, ldq, H, m, g.scale);
                    for (int64_t i = 0; i < TQ; i++) ls[i] = i < m ? lh[t0 + i] : 0.0f;
                    nb_attn_scores(kk, P, K + okv, ldkv, Qt, H, t0, nk);
                    kk->probs(P, nk, t0, ls);
                }
                kk->load_t(dOt, dO + oq, ldq, H, m, 1.0f);
                nb_attn_scores(kk, dP, V + okv, ldkv, dOt, H, t0, nk); /* dP = V dO^T */
                kk->dscores(dP, P, nk, g.scale);                 /* dS (scaled) */
                if (dQ && sh) {
                    nb_attn_over_keys_t(kk, K + okv, ldkv, dP, Zt, H, t0, m);
                    for (int64_t i = 0; i < m; i++)
                        for (int64_t d = 0; d < H; d++) dQ[oq + i * ldq + d] += Zt[d * TQ + i];
                } else if (dQ) {
                    nb_attn_over_keys(kk, dP, K + okv, ldkv, dQ + oq, ldq, H, t0, m, 1);
                }
                if (dK) nb_attn_over_queries(kk, dP, Q + oq, ldq, dK + okv, ldkv, H, t0, m);
                if (dV) nb_attn_over_queries(kk, P, dO + oq, ldq, dV + okv, ldkv, H, t0, m);
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
    /* only a step that will run backward keeps P, and only while the strips stay within a few
       times the size of q (they grow as T^2: long sequences recompute instead) */
    if (g.H >= KEEP_H && y->requires_grad && nb_attn_kept_floats(g.T) <= 4 * g.T * g.H) {
        n->p[2] = nb_tape_alloc(t, (size_t)(g.B * g.NH * nb_attn_kept_floats(g.T)) * sizeof(float));
        if (!n->p[2]) return NULL;
    }
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
    ATT("attention_h32_gqa", 1, 4, 4, 2, 32), /* H of two vectors: the direct P^T V path */
    ATT("attention_blocks", 1, 37, 2, 1, 5),  /* two query blocks, the second one short */
    ATT("attention_kept_p", 1, 37, 2, 1, 32), /* H >= KEEP_H: the backward reads the kept P strips */
    {0},
};
