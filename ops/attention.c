/* attention.c: fused causal self-attention with grouped kv heads, flash-attention style:
   the forward keeps only the log-sum-exp of each score row, the backward recomputes the scores. */
#include "ops.h"

#include <math.h>
#include <string.h>

#include "../autograd/gradcheck.h"
#include "kernels/vec.h"
#include "oputil.h"

/* Shapes: q, out (B, T, nh, H); k, v (B, T, nkv, H); query head h reads kv head h / (nh / nkv).
   One task per (b, h). A task copies its kv head transposed to (H, T) so that every inner loop
   runs over the keys j (contiguous, vectorised over up to T lanes) instead of over the short
   head dim H:
     s_j   = sum_d q_d k_jd / sqrt(H)          (gemv_t over Kt)
     p_j   = exp(s_j - lse),  lse = m + log sum_j exp(s_j - m)
     o_d   = sum_j p_j v_jd                     (dot with Vt rows)
   backward, with D = <dO, O>:
     dp_j  = sum_d dO_d v_jd                    (gemv_t over Vt)
     ds_j  = p_j (dp_j - D)
     dq_d += sum_j ds_j k_jd / sqrt(H)          (dot with Kt rows)
     dk_jd += ds_j q_d / sqrt(H),  dv_jd += p_j dO_d   (axpy into per-head (H, T) buffers)
   Query heads that share a kv head write their dk, dv into separate per-head buffers, summed in
   head order afterwards: no races, and the same bits for any thread count. */
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

/* per-thread scratch: Kt, Vt (H, T), s, p (T), qs (H) */
static int64_t scratch_floats(const att_geom *g) { return 2 * g->H * g->T + 2 * g->T + g->H + 32; }

static void attention_forward(nb_node *n) {
    att_geom g;
    geom(n, &g);
    const float *Q = n->in[0]->data, *K = n->in[1]->data, *V = n->in[2]->data;
    float *O = n->out->data, *lse = n->p[0], *scr = n->p[1];
    int64_t per = scratch_floats(&g), tasks = g.B * g.NH;
    const nb_vec_kernels *kk = nb_vec();
#pragma omp parallel for schedule(static) if (tasks > 1 && g.B * g.NH * g.T * g.T * g.H > NB_OMP_MIN)
    for (int64_t task = 0; task < tasks; task++) {
        int64_t b = task / g.NH, h = task % g.NH, kv = h / g.rep, T = g.T, H = g.H;
        float *Kt = scr + omp_tid() * per, *Vt = Kt + H * T, *s = Vt + H * T, *qs = s + T;
        transpose_in(Kt, K, &g, b, kv);
        transpose_in(Vt, V, &g, b, kv);
        for (int64_t t = 0; t < T; t++) {
            const float *q = Q + ((b * T + t) * g.NH + h) * H;
            float *o = O + ((b * T + t) * g.NH + h) * H;
            int64_t nk = t + 1; /* causal: keys 0..t */
            for (int64_t d = 0; d < H; d++) qs[d] = q[d] * g.scale;
            kk->gemv_t(s, Kt, T, qs, H, nk);
            float m = kk->max(s, nk);
            float l = kk->expsum(s, s, m, nk); /* s now holds unnormalised p */
            float il = 1.0f / l;
            for (int64_t d = 0; d < H; d++) o[d] = kk->dot(s, Vt + d * T, nk) * il;
            lse[(b * g.NH + h) * T + t] = m + logf(l);
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
    int need_kv = k->requires_grad || v->requires_grad;
    /* scratch sized for the thread count now (it may differ from the forward's) */
    float *scr = nb_tape_alloc(n->tape, (size_t)(omp_threads() * per) * sizeof(float));
    if (!scr) return;
    /* per-head dk, dv in the transposed layout: (B, NH, 2, H, T) */
    float *dkv = need_kv ? nb_tape_alloc(n->tape, (size_t)(tasks * 2 * H * T) * sizeof(float)) : NULL;
    if (need_kv && !dkv) return;
    float *dQ = q->requires_grad ? q->grad : NULL;
    const nb_vec_kernels *kk = nb_vec();
#pragma omp parallel for schedule(static) if (tasks > 1 && g.B * g.NH * T * T * H > NB_OMP_MIN / 4)
    for (int64_t task = 0; task < tasks; task++) {
        int64_t b = task / g.NH, h = task % g.NH, kv = h / g.rep;
        float *Kt = scr + omp_tid() * per, *Vt = Kt + H * T, *p = Vt + H * T, *ds = p + T, *qs = ds + T;
        float *dKt = need_kv ? dkv + task * 2 * H * T : NULL, *dVt = need_kv ? dKt + H * T : NULL;
        if (need_kv) memset(dKt, 0, (size_t)(2 * H * T) * sizeof(float));
        transpose_in(Kt, K, &g, b, kv);
        transpose_in(Vt, V, &g, b, kv);
        for (int64_t t = 0; t < T; t++) {
            int64_t row = ((b * T + t) * g.NH + h) * H, nk = t + 1;
            const float *qr = Q + row, *dor = dO + row;
            for (int64_t d = 0; d < H; d++) qs[d] = qr[d] * g.scale;
            kk->gemv_t(p, Kt, T, qs, H, nk);
            kk->expsum(p, p, lse[(b * g.NH + h) * T + t], nk); /* p = softmax row, recomputed */
            kk->gemv_t(ds, Vt, T, dor, H, nk); /* dp */
            /* D = <dO, O> = <p, dp>; the latter makes sum_j ds_j vanish to rounding (exactly
               for T = 1), so q gets no spurious gradient from a constant softmax */
            float D = kk->dot(p, ds, nk);
            kk->mul_sub(ds, p, D, nk); /* ds = p (dp - D) */
            if (dQ)
                for (int64_t d = 0; d < H; d++) dQ[row + d] += g.scale * kk->dot(ds, Kt + d * T, nk);
            if (need_kv)
                for (int64_t d = 0; d < H; d++) {
                    kk->axpy(dKt + d * T, qs[d], ds, nk);
                    kk->axpy(dVt + d * T, dor[d], p, nk);
                }
        }
    }
    if (!need_kv) return;
    /* dk[b, j, kv, d] += sum over the group's heads (in order) of dKt[b, h][d, j]; likewise dv */
    float *dK = k->requires_grad ? k->grad : NULL, *dV = v->requires_grad ? v->grad : NULL;
#pragma omp parallel for schedule(static) if (g.B * T * g.NKV * H * g.rep > NB_OMP_MIN)
    for (int64_t bj = 0; bj < g.B * T; bj++) {
        int64_t b = bj / T, j = bj % T;
        for (int64_t kv = 0; kv < g.NKV; kv++)
            for (int64_t d = 0; d < H; d++) {
                float sk = 0.0f, sv = 0.0f;
                for (int64_t r = 0; r < g.rep; r++) {
                    const float *src = dkv + (b * g.NH + kv * g.rep + r) * 2 * H * T;
                    sk += src[d * T + j];
                    sv += src[H * T + d * T + j];
                }
                int64_t o = ((b * T + j) * g.NKV + kv) * H + d;
                if (dK) dK[o] += sk;
                if (dV) dV[o] += sv;
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
    {0},
};
