/* activation.c: SiLU, GELU (tanh), SwiGLU (fused), softmax over the last dim, inverted dropout. */
#include "ops.h"

#include <math.h>

#include "../autograd/gradcheck.h"
#include "kernels/vec.h"
#include "oputil.h"

/* Flat elementwise kernels run on chunks of this many elements (one chunk per task). */
#define CHUNK 8192
#define CHUNK_LEN(lo, N) ((N) - (lo) < CHUNK ? (N) - (lo) : CHUNK)

/* ---- silu: y = x sigmoid(x) ---- */
static void silu_forward(nb_node *n) {
    const float *X = n->in[0]->data;
    float *Y = n->out->data;
    int64_t N = nb_numel(n->out);
    const nb_vec_kernels *k = nb_vec();
#pragma omp parallel for schedule(static) if (N > NB_OMP_MIN)
    for (int64_t lo = 0; lo < N; lo += CHUNK) k->silu_fwd(Y + lo, X + lo, CHUNK_LEN(lo, N));
}

static void silu_backward(nb_node *n) { /* dx += dy s (1 + x (1 - s)) */
    const float *X = n->in[0]->data, *dY = n->out->grad;
    float *dX = n->in[0]->grad;
    int64_t N = nb_numel(n->out);
    const nb_vec_kernels *k = nb_vec();
#pragma omp parallel for schedule(static) if (N > NB_OMP_MIN)
    for (int64_t lo = 0; lo < N; lo += CHUNK) k->silu_bwd(dX + lo, dY + lo, X + lo, CHUNK_LEN(lo, N));
}

const nb_op nb_op_silu = {"silu", silu_forward, silu_backward};

static nb_tensor *unary(nb_tape *t, const nb_op *op, nb_tensor *x) {
    if (bad_f32(t, op->name, "x", x, 1)) return NULL;
    nb_tensor *y = nb_tape_tensor(t, x->ndim, x->shape);
    nb_node *n = nb_tape_push(t, op, y, x, NULL, NULL);
    if (!n) return NULL;
    op->forward(n);
    return y;
}

nb_tensor *nb_silu(nb_tape *t, nb_tensor *x) { return unary(t, &nb_op_silu, x); }

/* ---- gelu, tanh approximation (GPT-2): y = x/2 (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3) ---- */
#define GELU_K 0.7978845608028654f /* sqrt(2/pi) */
#define GELU_A 0.044715f

static void gelu_forward(nb_node *n) {
    const float *X = n->in[0]->data;
    float *Y = n->out->data;
    int64_t N = nb_numel(n->out);
#pragma omp parallel for schedule(static) if (N > NB_OMP_MIN / 4)
    for (int64_t i = 0; i < N; i++) {
        float x = X[i];
        Y[i] = 0.5f * x * (1.0f + tanhf(GELU_K * (x + GELU_A * x * x * x)));
    }
}

/* dy/dx = (1 + th)/2 + x/2 (1 - th^2) sqrt(2/pi) (1 + 3 0.044715 x^2) */
static void gelu_backward(nb_node *n) {
    const float *X = n->in[0]->data, *dY = n->out->grad;
    float *dX = n->in[0]->grad;
    int64_t N = nb_numel(n->out);
#pragma omp parallel for schedule(static) if (N > NB_OMP_MIN / 4)
    for (int64_t i = 0; i < N; i++) {
        float x = X[i], th = tanhf(GELU_K * (x + GELU_A * x * x * x));
        float d = 0.5f * (1.0f + th) + 0.5f * x * (1.0f - th * th) * GELU_K * (1.0f + 3.0f * GELU_A * x * x);
        dX[i] += dY[i] * d;
    }
}

const nb_op nb_op_gelu = {"gelu", gelu_forward, gelu_backward};

nb_tensor *nb_gelu(nb_tape *t, nb_tensor *x) { return unary(t, &nb_op_gelu, x); }

/* ---- swiglu: y = silu(g) u, one pass (no silu(g) temporary) ---- */
static void swiglu_forward(nb_node *n) {
    const float *G = n->in[0]->data, *U = n->in[1]->data;
    float *Y = n->out->data;
    int64_t N = nb_numel(n->out);
    const nb_vec_kernels *k = nb_vec();
#pragma omp parallel for schedule(static) if (N > NB_OMP_MIN)
    for (int64_t lo = 0; lo < N; lo += CHUNK) k->swiglu_fwd(Y + lo, G + lo, U + lo, CHUNK_LEN(lo, N));
}

static void swiglu_backward(nb_node *n) { /* dg += dy u silu'(g), du += dy silu(g) */
    nb_tensor *g = n->in[0], *u = n->in[1];
    const float *G = g->data, *U = u->data, *dY = n->out->grad;
    float *dG = g->requires_grad ? g->grad : NULL, *dU = u->requires_grad ? u->grad : NULL;
    int64_t N = nb_numel(n->out);
    const nb_vec_kernels *k = nb_vec();
#pragma omp parallel for schedule(static) if (N > NB_OMP_MIN)
    for (int64_t lo = 0; lo < N; lo += CHUNK)
        k->swiglu_bwd(dG ? dG + lo : NULL, dU ? dU + lo : NULL, dY + lo, G + lo, U + lo, CHUNK_LEN(lo, N));
}

const nb_op nb_op_swiglu = {"swiglu", swiglu_forward, swiglu_backward};

nb_tensor *nb_swiglu(nb_tape *t, nb_tensor *gate, nb_tensor *up) {
    if (bad_f32(t, "swiglu", "gate", gate, 1) || bad_f32(t, "swiglu", "up", up, 1)) return NULL;
    if (!nb_same_shape(gate, up)) return fail_shapes(t, "swiglu", "gate and up differ", gate, up);
    nb_tensor *y = nb_tape_tensor(t, gate->ndim, gate->shape);
    nb_node *n = nb_tape_push(t, &nb_op_swiglu, y, gate, up, NULL);
    if (!n) return NULL;
    swiglu_forward(n);
    return y;
}

/* ---- softmax over the last dim: y = exp(x - max) / sum; backward uses y (the output) ---- */
static void softmax_forward(nb_node *n) {
    const nb_tensor *x = n->in[0];
    int64_t C = nb_cols(x), R = nb_rows(x);
    const float *X = x->data;
    float *Y = n->out->data;
    const nb_vec_kernels *k = nb_vec();
#pragma omp parallel for schedule(static) if (R * C > NB_OMP_MIN / 4)
    for (int64_t r = 0; r < R; r++) {
        float m = k->max(X + r * C, C);
        float s = k->expsum(Y + r * C, X + r * C, m, C);
        k->scal(Y + r * C, 1.0f / s, C);
    }
}

static void softmax_backward(nb_node *n) { /* dx += y (dy - <y, dy>) */
    nb_tensor *x = n->in[0];
    int64_t C = nb_cols(x), R = nb_rows(x);
    const float *Y = n->out->data, *dY = n->out->grad;
    float *dX = x->grad;
    const nb_vec_kernels *k = nb_vec();
#pragma omp parallel for schedule(static) if (R * C > NB_OMP_MIN / 4)
    for (int64_t r = 0; r < R; r++) k->softmax_bwd(dX + r * C, Y + r * C, dY + r * C, C);
}

const nb_op nb_op_softmax = {"softmax", softmax_forward, softmax_backward};

nb_tensor *nb_softmax(nb_tape *t, nb_tensor *x) {
    if (bad_f32(t, "softmax", "x", x, 0)) return NULL;
    return unary(t, &nb_op_softmax, x);
}

/* ---- dropout: keep element i when uniform(hash(seed, stream, base + i)) >= p, scale 1/(1-p).
   The mask is a pure function of the tape's rng state at the call and of i: nothing is stored,
   the backward redraws it, and threads draw any element independently. ---- */
static inline int keep(const nb_node *n, int64_t i) {
    uint64_t h = nb_rng_hash((uint64_t)n->i[1], (uint64_t)n->i[2], (uint64_t)n->i[0] + (uint64_t)i);
    return (float)(h >> 40) * (1.0f / 16777216.0f) >= n->f[0];
}

static void dropout_forward(nb_node *n) {
    const float *X = n->in[0]->data;
    float *Y = n->out->data, sc = n->f[1];
    int64_t N = nb_numel(n->out);
#pragma omp parallel for schedule(static) if (N > NB_OMP_MIN / 4)
    for (int64_t i = 0; i < N; i++) Y[i] = keep(n, i) ? X[i] * sc : 0.0f;
}

static void dropout_backward(nb_node *n) {
    const float *dY = n->out->grad;
    float *dX = n->in[0]->grad, sc = n->f[1];
    int64_t N = nb_numel(n->out);
#pragma omp parallel for schedule(static) if (N > NB_OMP_MIN / 4)
    for (int64_t i = 0; i < N; i++)
        if (keep(n, i)) dX[i] += dY[i] * sc;
}

const nb_op nb_op_dropout = {"dropout", dropout_forward, dropout_backward};

nb_tensor *nb_dropout(nb_tape *t, nb_tensor *x, float p) {
    if (bad_f32(t, "dropout", "x", x, 1)) return NULL;
    if (!(p >= 0.0f && p < 1.0f)) return nb_tape_fail(t, NB_EINVAL, "dropout: p must be in [0, 1), got %g", (double)p);
    if (!t->training || p == 0.0f) return x; /* identity: no copy, no node */
    nb_tensor *y = nb_tape_tensor(t, x->ndim, x->shape);
    nb_node *n = nb_tape_push(t, &nb_op_dropout, y, x, NULL, NULL);
    if (!n) return NULL;
    n->f[0] = p;
    n->f[1] = 1.0f / (1.0f - p);
    n->i[0] = (int64_t)t->rng.counter;
    n->i[1] = (int64_t)t->rng.seed;
    n->i[2] = (int64_t)t->rng.stream;
    t->rng.counter += (uint64_t)nb_numel(x);
    dropout_forward(n);
    return y;
}

/* ---- gradient-check cases ---- */
static nb_tensor *c_silu(nb_tape *t, nb_tensor **in) { return nb_silu(t, in[0]); }
static nb_tensor *c_gelu(nb_tape *t, nb_tensor **in) { return nb_gelu(t, in[0]); }
static nb_tensor *c_swiglu(nb_tape *t, nb_tensor **in) { return nb_swiglu(t, in[0], in[1]); }
static nb_tensor *c_softmax(nb_tape *t, nb_tensor **in) { return nb_softmax(t, in[0]); }
static nb_tensor *c_dropout(nb_tape *t, nb_tensor **in) {
    t->training = 1;
    return nb_dropout(t, in[0], 0.3f);
}
/* inputs spread wider so the exp tails are exercised */
static void init_wide(nb_tensor **in, nb_rng *r) {
    float *x = in[0]->data;
    for (int64_t i = 0; i < nb_numel(in[0]); i++) x[i] = 3.0f * nb_rng_normal(r);
}

const nb_opcase nb_opcases_activation[] = {
    {.name = "silu", .n_in = 1, .ndim = {2}, .shape = {{3, 7}}, .apply = c_silu},
    {.name = "silu_wide", .n_in = 1, .ndim = {1}, .shape = {{33}}, .apply = c_silu, .init = init_wide},
    {.name = "gelu", .n_in = 1, .ndim = {2}, .shape = {{2, 9}}, .apply = c_gelu},
    {.name = "swiglu", .n_in = 2, .ndim = {2, 2}, .shape = {{3, 5}, {3, 5}}, .apply = c_swiglu},
    {.name = "swiglu_odd", .n_in = 2, .ndim = {1, 1}, .shape = {{17}, {17}}, .apply = c_swiglu, .init = init_wide},
    {.name = "swiglu_up_only", .n_in = 2, .ndim = {1, 1}, .shape = {{7}, {7}}, .nondiff = 1, .apply = c_swiglu},
    {.name = "softmax", .n_in = 1, .ndim = {2}, .shape = {{3, 7}}, .apply = c_softmax},
    {.name = "softmax_wide_33", .n_in = 1, .ndim = {3}, .shape = {{2, 1, 33}}, .apply = c_softmax, .init = init_wide, .eps = 1e-2},
    {.name = "softmax_c1", .n_in = 1, .ndim = {2}, .shape = {{4, 1}}, .apply = c_softmax},
    {.name = "dropout", .n_in = 1, .ndim = {2}, .shape = {{4, 9}}, .apply = c_dropout},
    {0},
};
