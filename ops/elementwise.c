/* elementwise.c: add/sub/mul with numpy broadcasting, scale, sum, mean and reshape. */
#include "ops.h"

#include <string.h>

#include "../autograd/gradcheck.h"
#include "oputil.h"

enum { OP_ADD, OP_SUB, OP_MUL };

/* Broadcast geometry over 4 dims aligned at the right: out shape o, element strides of a and b
   (0 along a dim where that input has size 1). */
typedef struct bgeom {
    int64_t o[4], sa[4], sb[4];
    int64_t rows; /* o[0] o[1] o[2] */
} bgeom;

static void pad4(const nb_tensor *x, int64_t *shape) {
    int off = 4 - x->ndim;
    for (int k = 0; k < 4; k++) shape[k] = k < off ? 1 : x->shape[k - off];
}

/* Returns 0 when the shapes do not broadcast. */
static int bgeom_make(const nb_tensor *a, const nb_tensor *b, bgeom *g) {
    int64_t as[4], bs[4];
    pad4(a, as);
    pad4(b, bs);
    for (int k = 0; k < 4; k++) {
        if (as[k] != bs[k] && as[k] != 1 && bs[k] != 1) return 0;
        g->o[k] = as[k] == 1 ? bs[k] : as[k];
    }
    int64_t ta = 1, tb = 1;
    for (int k = 3; k >= 0; k--) {
        g->sa[k] = as[k] == 1 ? 0 : ta;
        g->sb[k] = bs[k] == 1 ? 0 : tb;
        ta *= as[k];
        tb *= bs[k];
    }
    g->rows = g->o[0] * g->o[1] * g->o[2];
    return 1;
}

/* offsets of row r (over the first three dims) in a and b */
static inline void row_off(const bgeom *g, int64_t r, int64_t *oa, int64_t *ob) {
    int64_t i2 = r % g->o[2], i1 = (r / g->o[2]) % g->o[1], i0 = r / (g->o[2] * g->o[1]);
    *oa = i0 * g->sa[0] + i1 * g->sa[1] + i2 * g->sa[2];
    *ob = i0 * g->sb[0] + i1 * g->sb[1] + i2 * g->sb[2];
}

static void binary_forward(nb_node *n) {
    bgeom g;
    bgeom_make(n->in[0], n->in[1], &g);
    const float *A = n->in[0]->data, *B = n->in[1]->data;
    float *Y = n->out->data;
    int kind = (int)n->i[0];
    int64_t C = g.o[3], N = nb_numel(n->out);
    if (nb_numel(n->in[0]) == N && nb_numel(n->in[1]) == N) { /* same shape: one flat loop */
#pragma omp parallel for schedule(static) if (N > 4 * NB_OMP_MIN)
        for (int64_t i = 0; i < N; i++)
            Y[i] = kind == OP_ADD ? A[i] + B[i] : kind == OP_SUB ? A[i] - B[i] : A[i] * B[i];
        return;
    }
#pragma omp parallel for schedule(static) if (N > 4 * NB_OMP_MIN)
    for (int64_t r = 0; r < g.rows; r++) {
        int64_t oa, ob;
        row_off(&g, r, &oa, &ob);
        const float *a = A + oa, *b = B + ob;
        float *y = Y + r * C;
        int64_t sa = g.sa[3], sb = g.sb[3];
        if (kind == OP_ADD)
            for (int64_t c = 0; c < C; c++) y[c] = a[c * sa] + b[c * sb];
        else if (kind == OP_SUB)
            for (int64_t c = 0; c < C; c++) y[c] = a[c * sa] - b[c * sb];
        else
            for (int64_t c = 0; c < C; c++) y[c] = a[c * sa] * b[c * sb];
    }
}

/* dX[bcast] += coef * dY * (Y other operand, or 1): rows run in order, so a reduced (broadcast)
   input is summed deterministically; threads only when X has the output's full shape. */
static void reduce_into(const bgeom *g, float *dX, int x_is_a, const float *dY, const float *other, float coef,
                        int full) {
    int64_t C = g->o[3];
    int64_t sx = x_is_a ? g->sa[3] : g->sb[3], so = x_is_a ? g->sb[3] : g->sa[3];
#pragma omp parallel for schedule(static) if (full && g->rows * C > 4 * NB_OMP_MIN)
    for (int64_t r = 0; r < g->rows; r++) {
        int64_t oa, ob;
        row_off(g, r, &oa, &ob);
        float *dx = dX + (x_is_a ? oa : ob);
        const float *dy = dY + r * C;
        if (other) {
            const float *y = other + (x_is_a ? ob : oa);
            for (int64_t c = 0; c < C; c++) dx[c * sx] += coef * dy[c] * y[c * so];
        } else {
            for (int64_t c = 0; c < C; c++) dx[c * sx] += coef * dy[c];
        }
    }
}

/* da += dy, db += cb dy in one pass (three distinct buffers) */
static void add_both(float *restrict da, float *restrict db, const float *restrict dy, float cb, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        da[i] += dy[i];
        db[i] += cb * dy[i];
    }
}

static void binary_backward(nb_node *n) {
    bgeom g;
    bgeom_make(n->in[0], n->in[1], &g);
    nb_tensor *a = n->in[0], *b = n->in[1];
    int kind = (int)n->i[0];
    int64_t N = nb_numel(n->out);
    const float *dY = n->out->grad;
    if (nb_numel(a) == N && nb_numel(b) == N) { /* same shape (the residual adds): one flat pass */
        float *dA = a->requires_grad ? a->grad : NULL, *dB = b->requires_grad ? b->grad : NULL;
        const float *A = a->data, *B = b->data;
        float cb = kind == OP_SUB ? -1.0f : 1.0f;
#pragma omp parallel for schedule(static) if (N > 4 * NB_OMP_MIN)
        for (int64_t lo = 0; lo < N; lo += 4096) { /* the same sums as reduce_into, element by element */
            int64_t hi = lo + 4096 < N ? lo + 4096 : N;
            if (kind == OP_MUL) {
                if (dA)
                    for (int64_t i = lo; i < hi; i++) dA[i] += 1.0f * dY[i] * B[i];
                if (dB)
                    for (int64_t i = lo; i < hi; i++) dB[i] += 1.0f * dY[i] * A[i];
            } else if (dA && dB && dA != dB && dA != dY && dB != dY) {
                add_both(dA + lo, dB + lo, dY + lo, cb, hi - lo);
            } else if (dA && dB) {
                for (int64_t i = lo; i < hi; i++) dA[i] += dY[i];
                for (int64_t i = lo; i < hi; i++) dB[i] += cb * dY[i];
            } else if (dA) {
                for (int64_t i = lo; i < hi; i++) dA[i] += dY[i];
            } else if (dB) {
                for (int64_t i = lo; i < hi; i++) dB[i] += cb * dY[i];
            }
        }
        return;
    }
    if (a->requires_grad)
        reduce_into(&g, a->grad, 1, dY, kind == OP_MUL ? b->data : NULL, 1.0f, nb_numel(a) == N);
    if (b->requires_grad)
        reduce_into(&g, b->grad, 0, dY, kind == OP_MUL ? a->data : NULL, kind == OP_SUB ? -1.0f : 1.0f,
                    nb_numel(b) == N);
}

const nb_op nb_op_add = {"add", binary_forward, binary_backward};
const nb_op nb_op_sub = {"sub", binary_forward, binary_backward};
const nb_op nb_op_mul = {"mul", binary_forward, binary_backward};

static nb_tensor *binary(nb_tape *t, const nb_op *op, int kind, nb_tensor *a, nb_tensor *b) {
    if (bad_f32(t, op->name, "a", a, 1) || bad_f32(t, op->name, "b", b, 1)) return NULL;
    bgeom g;
    if (!bgeom_make(a, b, &g)) return fail_shapes(t, op->name, "shapes do not broadcast", a, b);
    int nd = a->ndim > b->ndim ? a->ndim : b->ndim;
    nb_tensor *y = nb_tape_tensor(t, nd, g.o + (4 - nd));
    nb_node *n = nb_tape_push(t, op, y, a, b, NULL);
    if (!n) return NULL;
    n->i[0] = kind;
    binary_forward(n);
    return y;
}

nb_tensor *nb_add(nb_tape *t, nb_tensor *a, nb_tensor *b) { return binary(t, &nb_op_add, OP_ADD, a, b); }
nb_tensor *nb_sub(nb_tape *t, nb_tensor *a, nb_tensor *b) { return binary(t, &nb_op_sub, OP_SUB, a, b); }
nb_tensor *nb_mul(nb_tape *t, nb_tensor *a, nb_tensor *b) { return binary(t, &nb_op_mul, OP_MUL, a, b); }

/* ---- scale: y = s a ---- */
static void scale_forward(nb_node *n) {
    const float *A = n->in[0]->data;
    float *Y = n->out->data, s = n->f[0];
    int64_t N = nb_numel(n->out);
#pragma omp parallel for schedule(static) if (N > 4 * NB_OMP_MIN)
    for (int64_t i = 0; i < N; i++) Y[i] = s * A[i];
}

static void scale_backward(nb_node *n) { /* da += s dy */
    float *dA = n->in[0]->grad, s = n->f[0];
    const float *dY = n->out->grad;
    int64_t N = nb_numel(n->out);
#pragma omp parallel for schedule(static) if (N > 4 * NB_OMP_MIN)
    for (int64_t i = 0; i < N; i++) dA[i] += s * dY[i];
}

const nb_op nb_op_scale = {"scale", scale_forward, scale_backward};

nb_tensor *nb_scale(nb_tape *t, nb_tensor *a, float s) {
    if (bad_f32(t, "scale", "a", a, 1)) return NULL;
    nb_tensor *y = nb_tape_tensor(t, a->ndim, a->shape);
    nb_node *n = nb_tape_push(t, &nb_op_scale, y, a, NULL, NULL);
    if (!n) return NULL;
    n->f[0] = s;
    scale_forward(n);
    return y;
}

/* ---- sum and mean: y = k sum(a), k = 1 or 1/N ---- */
#define SUM_CHUNK 4096

/* Sum in fixed chunks of SUM_CHUNK (double inside a chunk), then the chunks in order: the same
   bits for any thread count. */
static double sum_all(nb_tape *t, const float *x, int64_t N) {
    int64_t nc = (N + SUM_CHUNK - 1) / SUM_CHUNK;
    double *part = nc ? nb_tape_alloc(t, (size_t)nc * sizeof(double)) : NULL;
    if (nc && !part) return 0;
#pragma omp parallel for schedule(static) if (N > 4 * NB_OMP_MIN)
    for (int64_t c = 0; c < nc; c++) {
        int64_t lo = c * SUM_CHUNK, hi = lo + SUM_CHUNK < N ? lo + SUM_CHUNK : N;
        double s = 0;
        for (int64_t i = lo; i < hi; i++) s += x[i];
        part[c] = s;
    }
    double s = 0;
    for (int64_t c = 0; c < nc; c++) s += part[c];
    return s;
}

static void sum_forward(nb_node *n) {
    nb_f32(n->out)[0] = (float)(sum_all(n->tape, n->in[0]->data, nb_numel(n->in[0])) * n->f[0]);
}

static void sum_backward(nb_node *n) { /* da += k dy */
    float *dA = n->in[0]->grad, g = n->out->grad[0] * n->f[0];
    int64_t N = nb_numel(n->in[0]);
#pragma omp parallel for schedule(static) if (N > 4 * NB_OMP_MIN)
    for (int64_t i = 0; i < N; i++) dA[i] += g;
}

const nb_op nb_op_sum = {"sum", sum_forward, sum_backward};
const nb_op nb_op_mean = {"mean", sum_forward, sum_backward};

static nb_tensor *reduce(nb_tape *t, const nb_op *op, nb_tensor *a, int mean) {
    if (bad_f32(t, op->name, "a", a, !mean)) return NULL; /* the mean of nothing is undefined */
    nb_tensor *y = nb_tape_tensor(t, 1, (int64_t[]){1});
    nb_node *n = nb_tape_push(t, op, y, a, NULL, NULL);
    if (!n) return NULL;
    n->f[0] = mean ? 1.0f / (float)nb_numel(a) : 1.0f;
    sum_forward(n);
    return t->status == NB_OK ? y : NULL;
}

nb_tensor *nb_sum(nb_tape *t, nb_tensor *a) { return reduce(t, &nb_op_sum, a, 0); }
nb_tensor *nb_mean(nb_tape *t, nb_tensor *a) { return reduce(t, &nb_op_mean, a, 1); }

/* ---- reshape: a view sharing a's data and, while recording, a's gradient buffer too: gradient
   that flows into the view lands in a->grad directly, so the backward has nothing to do ---- */
static void reshape_forward(nb_node *n) { (void)n; }
static void reshape_backward(nb_node *n) { (void)n; /* shared gradient buffer */ }

const nb_op nb_op_reshape = {"reshape", reshape_forward, reshape_backward};

nb_tensor *nb_reshape(nb_tape *t, nb_tensor *a, int ndim, const int64_t *shape) {
    if (t->status != NB_OK) return NULL;
    if (!a || !shape) return nb_tape_fail(t, NB_EINVAL, "reshape: %s is NULL", a ? "shape" : "a");
    nb_tensor v;
    if (nb_view_reshape(a, ndim, shape, &v) != NB_OK) return nb_tape_fail(t, NB_ESHAPE, "%s", nb_errmsg());
    nb_tensor *y = nb_tape_alloc(t, sizeof *y);
    if (!y) return NULL;
    *y = v;
    y->grad = NULL;
    y->requires_grad = 0;
    y->name = NULL;
    if (a->dtype != NB_F32) return y; /* an id tensor: a plain view */
    if (t->recording && a->requires_grad && !(y->grad = nb_grad(t, a))) return NULL;
    return nb_tape_push(t, &nb_op_reshape, y, a, NULL, NULL) ? y : NULL;
}

/* ---- gradient-check cases ---- */
static nb_tensor *c_add(nb_tape *t, nb_tensor **in) { return nb_add(t, in[0], in[1]); }
static nb_tensor *c_sub(nb_tape *t, nb_tensor **in) { return nb_sub(t, in[0], in[1]); }
static nb_tensor *c_mul(nb_tape *t, nb_tensor **in) { return nb_mul(t, in[0], in[1]); }
static nb_tensor *c_scale(nb_tape *t, nb_tensor **in) { return nb_scale(t, in[0], -1.7f); }
static nb_tensor *c_sum(nb_tape *t, nb_tensor **in) { return nb_sum(t, in[0]); }
static nb_tensor *c_mean(nb_tape *t, nb_tensor **in) { return nb_mean(t, in[0]); }
/* reshape, then an op that mixes positions, so a wrong offset in the view would show */
static nb_tensor *c_reshape(nb_tape *t, nb_tensor **in) {
    nb_tensor *r = nb_reshape(t, in[0], 2, (int64_t[]){3, 4});
    return nb_mul(t, r, in[1]);
}

const nb_opcase nb_opcases_elementwise[] = {
    {.name = "add_same", .n_in = 2, .ndim = {2, 2}, .shape = {{3, 4}, {3, 4}}, .apply = c_add},
    {.name = "add_bcast_row", .n_in = 2, .ndim = {3, 1}, .shape = {{2, 3, 5}, {5}}, .apply = c_add},
    {.name = "add_bcast_both", .n_in = 2, .ndim = {3, 2}, .shape = {{4, 1, 3}, {5, 1}}, .apply = c_add},
    {.name = "add_bcast_4d", .n_in = 2, .ndim = {4, 4}, .shape = {{2, 1, 3, 1}, {1, 2, 1, 4}}, .apply = c_add},
    {.name = "sub_same", .n_in = 2, .ndim = {1, 1}, .shape = {{7}, {7}}, .apply = c_sub},
    {.name = "sub_bcast", .n_in = 2, .ndim = {3, 2}, .shape = {{2, 1, 4}, {3, 1}}, .apply = c_sub},
    {.name = "mul_same", .n_in = 2, .ndim = {2, 2}, .shape = {{5, 3}, {5, 3}}, .apply = c_mul},
    {.name = "mul_bcast", .n_in = 2, .ndim = {3, 3}, .shape = {{3, 1, 5}, {1, 4, 1}}, .apply = c_mul},
    {.name = "mul_scalar", .n_in = 2, .ndim = {2, 1}, .shape = {{3, 5}, {1}}, .apply = c_mul},
    {.name = "scale", .n_in = 1, .ndim = {3}, .shape = {{2, 3, 3}}, .apply = c_scale},
    {.name = "sum", .n_in = 1, .ndim = {2}, .shape = {{4, 5}}, .apply = c_sum},
    {.name = "mean", .n_in = 1, .ndim = {3}, .shape = {{2, 3, 7}}, .apply = c_mean},
    {.name = "reshape", .n_in = 2, .ndim = {2, 1}, .shape = {{2, 6}, {4}}, .apply = c_reshape},
    {0},
};
