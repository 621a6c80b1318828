/* norm.c: RMSNorm (llama) and LayerNorm over the last dim, forward and backward. */
#include "ops.h"

#include <math.h>
#include <string.h>

#include "../autograd/gradcheck.h"
#include "kernels/vec.h"
#include "oputil.h"

/* Parameter gradients of a norm are sums over rows. Rows are cut into fixed chunks of
   NB_CHUNK_ROWS; each chunk sums into its own zeroed partial (C floats), then the partials are
   added in chunk order: bitwise the same result for any thread count. */
typedef struct partials {
    int64_t n_chunks, C;
    float *p; /* (n_chunks, C) */
} partials;

static int partials_make(nb_tape *t, partials *q, int64_t R, int64_t C, int count) {
    q->n_chunks = (R + NB_CHUNK_ROWS - 1) / NB_CHUNK_ROWS;
    q->C = C;
    q->p = nb_tape_alloc(t, (size_t)(q->n_chunks * C * count) * sizeof(float) + 64);
    if (!q->p) return 0;
    memset(q->p, 0, (size_t)(q->n_chunks * C * count) * sizeof(float));
    return 1;
}

/* dst[c] += sum over chunks k of src[k][c] (in k order); columns may run in parallel */
static void partials_sum(const float *src, int64_t n_chunks, int64_t C, float *dst) {
#pragma omp parallel for schedule(static) if (n_chunks * C > 4 * NB_OMP_MIN)
    for (int64_t c = 0; c < C; c++) {
        float s = 0.0f;
        for (int64_t k = 0; k < n_chunks; k++) s += src[k * C + c];
        dst[c] += s;
    }
}

/* ---- rmsnorm: y = x r w, r = 1 / sqrt(mean(x^2) + eps); saves r per row ---- */
static void rmsnorm_forward(nb_node *n) {
    const nb_tensor *x = n->in[0];
    int64_t C = nb_cols(x), R = nb_rows(x);
    const float *X = x->data, *w = n->in[1]->data;
    float *Y = n->out->data, *rs = n->p[0], eps = n->f[0];
    const nb_vec_kernels *k = nb_vec();
#pragma omp parallel for schedule(static) if (R * C > NB_OMP_MIN)
    for (int64_t r = 0; r < R; r++) rs[r] = k->rmsnorm_fwd(Y + r * C, X + r * C, w, eps, C);
}

static void rmsnorm_backward(nb_node *n) {
    nb_tape *t = n->tape;
    nb_tensor *x = n->in[0], *w = n->in[1];
    int64_t C = nb_cols(x), R = nb_rows(x);
    const float *X = x->data, *W = w->data, *dY = n->out->grad, *rs = n->p[0];
    partials q;
    /* the kernel always writes both dx and dw: scratch for the one that is not wanted */
    if (!partials_make(t, &q, R, C, x->requires_grad ? 1 : 2)) return;
    float *dX = x->requires_grad ? x->grad : q.p + q.n_chunks * C;
    int64_t dx_step = x->requires_grad ? C : 0;
    const nb_vec_kernels *k = nb_vec();
#pragma omp parallel for schedule(static) if (R * C > NB_OMP_MIN)
    for (int64_t ch = 0; ch < q.n_chunks; ch++) {
        int64_t r1 = (ch + 1) * NB_CHUNK_ROWS < R ? (ch + 1) * NB_CHUNK_ROWS : R;
        float *dw = q.p + ch * C;
        for (int64_t r = ch * NB_CHUNK_ROWS; r < r1; r++) {
            /* with no dx wanted, each chunk scribbles on its own scratch row */
            float *dx = x->requires_grad ? dX + r * dx_step : dX + ch * C;
            k->rmsnorm_bwd(dx, dw, dY + r * C, X + r * C, W, rs[r], C);
        }
    }
    if (w->requires_grad) partials_sum(q.p, q.n_chunks, C, w->grad);
}

const nb_op nb_op_rmsnorm = {"rmsnorm", rmsnorm_forward, rmsnorm_backward};

static int check_norm(nb_tape *t, const char *op, nb_tensor *x, nb_tensor *w, nb_tensor *b, int has_b, float eps) {
    if (bad_f32(t, op, "x", x, 0) || bad_f32(t, op, "w", w, 0) || (has_b && bad_f32(t, op, "b", b, 0))) return 0;
    if (w->ndim != 1 || w->shape[0] != nb_cols(x)) {
        fail_shapes(t, op, "w must be (C) for x (..., C)", w, x);
        return 0;
    }
    if (has_b && (b->ndim != 1 || b->shape[0] != nb_cols(x))) {
        fail_shapes(t, op, "b must be (C) for x (..., C)", b, x);
        return 0;
    }
    if (!(eps >= 0.0f) || !isfinite(eps)) {
        nb_tape_fail(t, NB_EINVAL, "%s: eps must be finite and >= 0, got %g", op, (double)eps);
        return 0;
    }
    return 1;
}

nb_tensor *nb_rmsnorm(nb_tape *t, nb_tensor *x, nb_tensor *w, float eps) {
    if (!check_norm(t, "rmsnorm", x, w, NULL, 0, eps)) return NULL;
    nb_tensor *y = nb_tape_tensor(t, x->ndim, x->shape);
    float *rs = nb_tape_alloc(t, (size_t)nb_rows(x) * sizeof(float));
    nb_node *n = nb_tape_push(t, &nb_op_rmsnorm, y, x, w, NULL);
    if (!n || !rs) return NULL;
    n->f[0] = eps;
    n->p[0] = rs;
    rmsnorm_forward(n);
    return y;
}

/* ---- layernorm: y = (x - mu) r w + b, r = 1 / sqrt(var + eps) (biased var); saves mu, r ---- */
static void layernorm_forward(nb_node *n) {
    const nb_tensor *x = n->in[0];
    int64_t C = nb_cols(x), R = nb_rows(x);
    const float *X = x->data, *w = n->in[1]->data, *b = n->i[0] ? n->in[2]->data : NULL;
    float *Y = n->out->data, *mu = n->p[0], *rs = n->p[1], eps = n->f[0];
#pragma omp parallel for schedule(static) if (R * C > NB_OMP_MIN)
    for (int64_t r = 0; r < R; r++) {
        const float *xr = X + r * C;
        float *yr = Y + r * C;
        float m = 0.0f, v = 0.0f;
        for (int64_t c = 0; c < C; c++) m += xr[c];
        m /= (float)C;
        for (int64_t c = 0; c < C; c++) v += (xr[c] - m) * (xr[c] - m);
        float s = 1.0f / sqrtf(v / (float)C + eps);
        for (int64_t c = 0; c < C; c++) yr[c] = (xr[c] - m) * s * w[c] + (b ? b[c] : 0.0f);
        mu[r] = m;
        rs[r] = s;
    }
}

/* xh = (x - mu) r, g = dy w:  dx += r (g - mean(g) - xh mean(g xh)),  dw += dy xh,  db += dy */
static void layernorm_backward(nb_node *n) {
    nb_tape *t = n->tape;
    nb_tensor *x = n->in[0], *w = n->in[1], *b = n->i[0] ? n->in[2] : NULL;
    int64_t C = nb_cols(x), R = nb_rows(x);
    const float *X = x->data, *W = w->data, *dY = n->out->grad, *mu = n->p[0], *rs = n->p[1];
    partials q;
    if (!partials_make(t, &q, R, C, 2)) return;
    float *pw = q.p, *pb = q.p + q.n_chunks * C;
    float *dX = x->requires_grad ? x->grad : NULL;
#pragma omp parallel for schedule(static) if (R * C > NB_OMP_MIN)
    for (int64_t ch = 0; ch < q.n_chunks; ch++) {
        int64_t r1 = (ch + 1) * NB_CHUNK_ROWS < R ? (ch + 1) * NB_CHUNK_ROWS : R;
        float *dw = pw + ch * C, *db = pb + ch * C;
        for (int64_t r = ch * NB_CHUNK_ROWS; r < r1; r++) {
            const float *xr = X + r * C, *dy = dY + r * C;
            float m = mu[r], s = rs[r], sg = 0.0f, sgx = 0.0f;
            for (int64_t c = 0; c < C; c++) {
                float xh = (xr[c] - m) * s, g = dy[c] * W[c];
                sg += g;
                sgx += g * xh;
                dw[c] += dy[c] * xh;
                db[c] += dy[c];
            }
            sg /= (float)C;
            sgx /= (float)C;
            if (dX)
                for (int64_t c = 0; c < C; c++) {
                    float xh = (xr[c] - m) * s;
                    dX[r * C + c] += s * (dy[c] * W[c] - sg - xh * sgx);
                }
        }
    }
    if (w->requires_grad) partials_sum(pw, q.n_chunks, C, w->grad);
    if (b && b->requires_grad) partials_sum(pb, q.n_chunks, C, b->grad);
}

const nb_op nb_op_layernorm = {"layernorm", layernorm_forward, layernorm_backward};

nb_tensor *nb_layernorm(nb_tape *t, nb_tensor *x, nb_tensor *w, nb_tensor *b, float eps) {
    if (!check_norm(t, "layernorm", x, w, b, b != NULL, eps)) return NULL;
    nb_tensor *y = nb_tape_tensor(t, x->ndim, x->shape);
    float *mu = nb_tape_alloc(t, (size_t)nb_rows(x) * sizeof(float));
    float *rs = nb_tape_alloc(t, (size_t)nb_rows(x) * sizeof(float));
    nb_node *n = nb_tape_push(t, &nb_op_layernorm, y, x, w, b);
    if (!n || !mu || !rs) return NULL;
    n->f[0] = eps;
    n->i[0] = b != NULL;
    n->p[0] = mu;
    n->p[1] = rs;
    layernorm_forward(n);
    return y;
}

/* ---- gradient-check cases ---- */
static nb_tensor *c_rms(nb_tape *t, nb_tensor **in) { return nb_rmsnorm(t, in[0], in[1], 1e-5f); }
static nb_tensor *c_ln(nb_tape *t, nb_tensor **in) { return nb_layernorm(t, in[0], in[1], in[2], 1e-5f); }
static nb_tensor *c_ln_nob(nb_tape *t, nb_tensor **in) { return nb_layernorm(t, in[0], in[1], NULL, 1e-5f); }

const nb_opcase nb_opcases_norm[] = {
    {.name = "rmsnorm", .n_in = 2, .ndim = {2, 1}, .shape = {{3, 8}, {8}}, .apply = c_rms},
    {.name = "rmsnorm_odd_3d", .n_in = 2, .ndim = {3, 1}, .shape = {{2, 3, 17}, {17}}, .apply = c_rms},
    {.name = "rmsnorm_many_rows", .n_in = 2, .ndim = {2, 1}, .shape = {{130, 3}, {3}}, .apply = c_rms},
    {.name = "rmsnorm_w_only", .n_in = 2, .ndim = {2, 1}, .shape = {{4, 5}, {5}}, .nondiff = 1, .apply = c_rms},
    {.name = "layernorm", .n_in = 3, .ndim = {2, 1, 1}, .shape = {{3, 8}, {8}, {8}}, .apply = c_ln},
    {.name = "layernorm_odd_nobias", .n_in = 2, .ndim = {3, 1}, .shape = {{2, 3, 7}, {7}}, .apply = c_ln_nob},
    {.name = "layernorm_many_rows", .n_in = 3, .ndim = {2, 1, 1}, .shape = {{70, 4}, {4}, {4}}, .apply = c_ln},
    {0},
};
