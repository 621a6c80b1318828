/* matmul.c: batched matrix multiply and the linear layer, forward and backward. */
#include "ops.h"

#include "fakequant.h"
#include "kernels/gemm.h"
#include "kernels/qgemm.h"
#include "../autograd/gradcheck.h"

/* Geometry of one call: batch count and per-batch sizes. */
typedef struct mm_geom {
    int64_t batch, M, N, K;
    int64_t sa, sb, sc; /* element strides between batches (sb = 0: b shared) */
} mm_geom;

static void geom(const nb_node *n, mm_geom *g) {
    const nb_tensor *a = n->in[0], *b = n->in[1];
    int ta = (int)n->i[0], tb = (int)n->i[1];
    int ra = a->ndim - 2;
    g->M = ta ? a->shape[ra + 1] : a->shape[ra];
    g->K = ta ? a->shape[ra] : a->shape[ra + 1];
    g->N = tb ? b->shape[b->ndim - 2] : b->shape[b->ndim - 1];
    g->batch = nb_numel(a) / (g->M * g->K != 0 ? g->M * g->K : 1);
    if (g->M * g->K == 0) g->batch = 1;
    g->sa = g->M * g->K;
    g->sb = b->ndim == 2 ? 0 : g->K * g->N;
    g->sc = g->M * g->N;
}

static void matmul_forward(nb_node *n) {
    mm_geom g;
    geom(n, &g);
    if (n->p[0]) { /* a fake-quantized linear layer in integers (qlinear_prepare) */
        nb_qgemm(g.batch * g.M, g.N, g.K, n->i[2], n->p[1], n->p[2], n->p[0], n->out->data, g.N);
        return;
    }
    int ta = (int)n->i[0], tb = (int)n->i[1];
    const float *A = n->in[0]->data, *B = n->in[1]->data;
    float *C = n->out->data;
    int64_t lda = ta ? g.M : g.K, ldb = tb ? g.K : g.N;
    if (g.sb == 0 && !ta) /* shared b: one big GEMM over all rows */
        nb_sgemm(0, tb, g.batch * g.M, g.N, g.K, A, lda, B, ldb, 0.0f, C, g.N);
    else /* per-batch products (attention): small ones run one per thread */
        nb_sgemm_batched(ta, tb, g.batch, g.M, g.N, g.K, A, lda, g.sa, B, ldb, g.sb, 0.0f, C, g.N, g.sc);
}

/* C = op(A) op(B):  dA = dC op(B)^T (then transposed back if ta),  dB = op(A)^T dC (likewise). */
static void matmul_backward(nb_node *n) {
    mm_geom g;
    geom(n, &g);
    int ta = (int)n->i[0], tb = (int)n->i[1];
    nb_tensor *a = n->in[0], *b = n->in[1];
    const float *A = a->data, *B = b->data, *dC = n->out->grad;
    int64_t lda = ta ? g.M : g.K, ldb = tb ? g.K : g.N;
    if (a->requires_grad) { /* each batch writes its own dA block */
        if (!ta) /* dA (M,K) += dC (M,N) op(B)^T (N,K) */
            nb_sgemm_batched(0, !tb, g.batch, g.M, g.K, g.N, dC, g.N, g.sc, B, ldb, g.sb, 1.0f, a->grad, lda, g.sa);
        else /* dA (K,M) += op(B) (K,N) dC^T (N,M) */
            nb_sgemm_batched(tb, 1, g.batch, g.K, g.M, g.N, B, ldb, g.sb, dC, g.N, g.sc, 1.0f, a->grad, lda, g.sa);
    }
    if (b->requires_grad) {
        if (g.sb == 0 && !ta) {
            int64_t R = g.batch * g.M;
            if (!tb) /* dB (K,N) += A^T (K,R) dC (R,N) */
                nb_sgemm(1, 0, g.K, g.N, R, A, lda, dC, g.N, 1.0f, b->grad, ldb);
            else /* dB (N,K) += dC^T (N,R) A (R,K) */
                nb_sgemm(1, 0, g.N, g.K, R, dC, g.N, A, lda, 1.0f, b->grad, ldb);
        } else if (g.sb != 0) { /* each batch writes its own dB block */
            if (!tb) /* dB (K,N) += op(A)^T (K,M) dC (M,N) */
                nb_sgemm_batched(!ta, 0, g.batch, g.K, g.N, g.M, A, lda, g.sa, dC, g.N, g.sc, 1.0f, b->grad, ldb, g.sb);
            else /* dB (N,K) += dC^T (N,M) op(A) (M,K) */
                nb_sgemm_batched(1, ta, g.batch, g.N, g.K, g.M, dC, g.N, g.sc, A, lda, g.sa, 1.0f, b->grad, ldb, g.sb);
        } else { /* shared b with ta: every batch adds into the same dB, in batch order */
            for (int64_t z = 0; z < g.batch; z++) {
                const float *Az = A + z * g.sa, *dCz = dC + z * g.sc;
                float *dB = b->grad + z * g.sb;
                if (!tb) /* dB (K,N) += op(A)^T (K,M) dC (M,N) */
                    nb_sgemm(!ta, 0, g.K, g.N, g.M, Az, lda, dCz, g.N, 1.0f, dB, ldb);
                else /* dB (N,K) += dC^T (N,M) op(A) (M,K) */
                    nb_sgemm(1, ta, g.N, g.K, g.M, dCz, g.N, Az, lda, 1.0f, dB, ldb);
            }
        }
    }
}

const nb_op nb_op_matmul = {"matmul", matmul_forward, matmul_backward};

/* x W^T where x and W are the recorded outputs of integer fake-quants (per-token activations,
   symmetric grouped / per-channel weights): pack W's codes (once per step: each weight is read by
   one linear) and let the forward run in int8 (qgemm.h). The backward is matmul's, on the
   fake-quant values. Leaves the node alone when anything does not fit. */
static void qlinear_prepare(nb_node *n) {
    nb_tape *t = n->tape;
    nb_tensor *x = n->in[0], *w = n->in[1];
    nb_qspec ws;
    const float *wsc, *xs;
    const uint8_t *xa;
    int tensor;
    if (!nb_qgemm_available() || !t->recording || w->ndim != 2) return;
    if (!nb_fakequant_weight_codes(t, w, &ws, &wsc, &tensor)) return;
    int64_t N = w->shape[0], K = w->shape[1];
    int64_t G = ws.gran == NB_QGRAN_GROUP ? ws.group_size : K;
    if (K % 4 || G <= 0 || G % 4 || K % G || K > 16384) return; /* int32 sums stay exact below 2^31 */
    if (!nb_fakequant_token_codes(t, x, &xs, &xa)) return;
    void *wp = nb_tape_alloc(t, nb_qgemm_packed_bytes(N, K, G));
    if (!wp) return;
    int qmin, qmax;
    nb_qspec_range(&ws, &qmin, &qmax);
    nb_qgemm_pack_w(w->data, N, K, G, wsc, tensor, qmin, qmax, wp);
    n->p[0] = wp;
    n->p[1] = (void *)xa;
    n->p[2] = (void *)xs;
    n->i[2] = G;
}

static nb_tensor *matmul_make(nb_tape *t, nb_tensor *a, nb_tensor *b, int ta, int tb, int qlinear);

nb_tensor *nb_matmul(nb_tape *t, nb_tensor *a, nb_tensor *b, int ta, int tb) { return matmul_make(t, a, b, ta, tb, 0); }

static nb_tensor *matmul_make(nb_tape *t, nb_tensor *a, nb_tensor *b, int ta, int tb, int qlinear) {
    if (nb_tape_bad(t, a, b, NULL) || !b) return nb_tape_fail(t, NB_EINVAL, "matmul: NULL input");
    char s1[64], s2[64];
    if (a->ndim < 2 || b->ndim < 2 || !nb_is_contiguous(a) || !nb_is_contiguous(b))
        return nb_tape_fail(t, NB_ESHAPE, "matmul: operands must be contiguous with >= 2 dims, got %s and %s",
                            nb_shape_str(a, s1, 64), nb_shape_str(b, s2, 64));
    int ra = a->ndim - 2, rb = b->ndim - 2;
    int64_t M = ta ? a->shape[ra + 1] : a->shape[ra], K = ta ? a->shape[ra] : a->shape[ra + 1];
    int64_t Kb = tb ? b->shape[rb + 1] : b->shape[rb], N = tb ? b->shape[rb] : b->shape[rb + 1];
    int batched_ok = b->ndim == 2 || (b->ndim == a->ndim && nb_numel(a) / (M * K != 0 ? M * K : 1) == nb_numel(b) / (Kb * N != 0 ? Kb * N : 1));
    for (int i = 0; b->ndim > 2 && i < ra; i++) batched_ok &= a->shape[i] == b->shape[i];
    if (K != Kb || !batched_ok)
        return nb_tape_fail(t, NB_ESHAPE, "matmul: %s%s times %s%s: inner sizes %lld and %lld", nb_shape_str(a, s1, 64),
                            ta ? "^T" : "", nb_shape_str(b, s2, 64), tb ? "^T" : "", (long long)K, (long long)Kb);
    int64_t shape[NB_MAX_DIMS];
    for (int i = 0; i < ra; i++) shape[i] = a->shape[i];
    shape[ra] = M;
    shape[ra + 1] = N;
    nb_tensor *y = nb_tape_tensor(t, a->ndim, shape);
    nb_node *n = nb_tape_push(t, &nb_op_matmul, y, a, b, NULL);
    if (!n) return NULL;
    n->i[0] = ta;
    n->i[1] = tb;
    if (qlinear) qlinear_prepare(n);
    if (t->status != NB_OK) return NULL;
    matmul_forward(n);
    return y;
}

nb_tensor *nb_linear(nb_tape *t, nb_tensor *x, nb_tensor *w) { return matmul_make(t, x, w, 0, 1, 1); }

/* ---- gradient-check cases ---- */
static nb_tensor *mm_nn(nb_tape *t, nb_tensor **in) { return nb_matmul(t, in[0], in[1], 0, 0); }
static nb_tensor *mm_tn(nb_tape *t, nb_tensor **in) { return nb_matmul(t, in[0], in[1], 1, 0); }
static nb_tensor *mm_nt(nb_tape *t, nb_tensor **in) { return nb_matmul(t, in[0], in[1], 0, 1); }
static nb_tensor *mm_tt(nb_tape *t, nb_tensor **in) { return nb_matmul(t, in[0], in[1], 1, 1); }

const nb_opcase nb_opcases_matmul[] = {
    {.name = "matmul_nn", .n_in = 2, .ndim = {2, 2}, .shape = {{5, 7}, {7, 3}}, .apply = mm_nn},
    {.name = "matmul_tn", .n_in = 2, .ndim = {2, 2}, .shape = {{7, 5}, {7, 3}}, .apply = mm_tn},
    {.name = "matmul_nt", .n_in = 2, .ndim = {2, 2}, .shape = {{5, 7}, {3, 7}}, .apply = mm_nt},
    {.name = "matmul_tt", .n_in = 2, .ndim = {2, 2}, .shape = {{7, 5}, {3, 7}}, .apply = mm_tt},
    {.name = "linear_3d", .n_in = 2, .ndim = {3, 2}, .shape = {{2, 3, 6}, {4, 6}}, .apply = mm_nt},
    {.name = "matmul_batched", .n_in = 2, .ndim = {3, 3}, .shape = {{2, 3, 4}, {2, 4, 5}}, .apply = mm_nn},
    {.name = "matmul_batched_tt", .n_in = 2, .ndim = {3, 3}, .shape = {{2, 4, 3}, {2, 5, 4}}, .apply = mm_tt},
    {0},
};
