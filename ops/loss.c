/* loss.c: fused cross-entropy over logits and the KL distillation loss, forward and backward. */
#include "ops.h"

#include <math.h>

#include "../autograd/gradcheck.h"
#include "kernels/vec.h"
#include "oputil.h"

/* ---- cross-entropy: loss = (1/count) sum over rows with target >= 0 of lse(x_r) - x_r[target].
   Saves lse per row; backward: dx_r += g (softmax(x_r) - onehot(target)), g = dloss / count. ---- */
static void xent_forward(nb_node *n) {
    const nb_tensor *x = n->in[0];
    int64_t V = nb_cols(x), R = nb_rows(x);
    const float *X = x->data;
    const int32_t *tg = n->in[1]->data;
    float *lse = n->p[0], *lr = n->p[1];
    const nb_vec_kernels *k = nb_vec();
#pragma omp parallel for schedule(static) if (R * V > NB_OMP_MIN / 4)
    for (int64_t r = 0; r < R; r++) {
        if (tg[r] < 0) {
            lr[r] = 0.0f;
            continue;
        }
        const float *xr = X + r * V;
        float m = k->max(xr, V);
        float l = m + logf(k->expsum(NULL, xr, m, V));
        lse[r] = l;
        lr[r] = l - xr[tg[r]];
    }
    double s = 0; /* rows in order: the same bits for any thread count */
    for (int64_t r = 0; r < R; r++) s += lr[r];
    nb_f32(n->out)[0] = n->i[0] ? (float)(s / (double)n->i[0]) : 0.0f;
}

static void xent_backward(nb_node *n) {
    nb_tensor *x = n->in[0];
    int64_t V = nb_cols(x), R = nb_rows(x);
    if (!n->i[0]) return;
    const float *X = x->data, *lse = n->p[0];
    const int32_t *tg = n->in[1]->data;
    float *dX = x->grad, g = n->out->grad[0] / (float)n->i[0];
    const nb_vec_kernels *k = nb_vec();
#pragma omp parallel for schedule(static) if (R * V > NB_OMP_MIN / 4)
    for (int64_t r = 0; r < R; r++) {
        if (tg[r] < 0) continue;
        k->xent_bwd(dX + r * V, X + r * V, lse[r], g, V);
        dX[r * V + tg[r]] -= g;
    }
}

const nb_op nb_op_cross_entropy = {"cross_entropy", xent_forward, xent_backward};

nb_tensor *nb_cross_entropy(nb_tape *t, nb_tensor *logits, nb_tensor *targets) {
    if (bad_f32(t, "cross_entropy", "logits", logits, 0) || bad_i32(t, "cross_entropy", "targets", targets)) return NULL;
    int64_t V = nb_cols(logits), R = nb_rows(logits);
    if (logits->ndim < 2 || nb_numel(targets) != R)
        return fail_shapes(t, "cross_entropy", "logits (..., V) need one target per row", logits, targets);
    const int32_t *tg = targets->data;
    int64_t count = 0;
    for (int64_t r = 0; r < R; r++) {
        if (tg[r] >= V)
            return nb_tape_fail(t, NB_ERANGE, "cross_entropy: target %d at row %lld is outside [0, %lld)", tg[r],
                                (long long)r, (long long)V);
        count += tg[r] >= 0;
    }
    nb_tensor *y = nb_tape_tensor(t, 1, (int64_t[]){1});
    float *lse = nb_tape_alloc(t, (size_t)(2 * R) * sizeof(float));
    nb_node *n = nb_tape_push(t, &nb_op_cross_entropy, y, logits, targets, NULL);
    if (!n || !lse) return NULL;
    n->i[0] = count; /* 0 rows counted: loss 0, no gradient */
    n->p[0] = lse;
    n->p[1] = lse + R;
    xent_forward(n);
    return y;
}

/* ---- KL distillation: loss = (1/R) sum_r T^2 KL(p_r || q_r), p = softmax(teacher / T),
   q = softmax(student / T). d loss / d student = T (q - p) / R. The teacher is a constant. ---- */
static float lse_scaled(const float *x, float it, int64_t V) { /* log sum exp(x it), stable */
    float m = -INFINITY;
    for (int64_t v = 0; v < V; v++) m = x[v] > m ? x[v] : m;
    float s = 0.0f;
    for (int64_t v = 0; v < V; v++) s += expf((x[v] - m) * it);
    return m * it + logf(s);
}

static void kl_forward(nb_node *n) {
    const nb_tensor *x = n->in[0];
    int64_t V = nb_cols(x), R = nb_rows(x);
    const float *S = x->data, *Tc = n->in[1]->data;
    float *ls = n->p[0], *lt = n->p[1], *lr = n->p[2], it = 1.0f / n->f[0];
#pragma omp parallel for schedule(static) if (R * V > NB_OMP_MIN / 8)
    for (int64_t r = 0; r < R; r++) {
        const float *s = S + r * V, *tc = Tc + r * V;
        float a = lse_scaled(s, it, V), b = lse_scaled(tc, it, V), kl = 0.0f;
        for (int64_t v = 0; v < V; v++) {
            float lp = tc[v] * it - b, lq = s[v] * it - a;
            kl += expf(lp) * (lp - lq);
        }
        ls[r] = a;
        lt[r] = b;
        lr[r] = kl;
    }
    double sum = 0;
    for (int64_t r = 0; r < R; r++) sum += lr[r];
    nb_f32(n->out)[0] = (float)(sum * n->f[0] * n->f[0] / (double)R);
}

static void kl_backward(nb_node *n) {
    nb_tensor *x = n->in[0];
    int64_t V = nb_cols(x), R = nb_rows(x);
    const float *S = x->data, *Tc = n->in[1]->data, *ls = n->p[0], *lt = n->p[1];
    float it = 1.0f / n->f[0], g = n->out->grad[0] * n->f[0] / (float)R, *dS = x->grad;
#pragma omp parallel for schedule(static) if (R * V > NB_OMP_MIN / 8)
    for (int64_t r = 0; r < R; r++) {
        const float *s = S + r * V, *tc = Tc + r * V;
        for (int64_t v = 0; v < V; v++) dS[r * V + v] += g * (expf(s[v] * it - ls[r]) - expf(tc[v] * it - lt[r]));
    }
}

/* Only the student (input 0) gets a gradient: the backward never touches the teacher. */
static void kl_backward_student(nb_node *n) {
    if (n->in[0]->requires_grad) kl_backward(n);
}

const nb_op nb_op_kl_div = {"kl_div", kl_forward, kl_backward_student};

nb_tensor *nb_kl_div(nb_tape *t, nb_tensor *student_logits, nb_tensor *teacher_logits, float temperature) {
    if (bad_f32(t, "kl_div", "student_logits", student_logits, 0) ||
        bad_f32(t, "kl_div", "teacher_logits", teacher_logits, 0))
        return NULL;
    if (!nb_same_shape(student_logits, teacher_logits))
        return fail_shapes(t, "kl_div", "student and teacher logits differ", student_logits, teacher_logits);
    if (!(temperature > 0.0f) || !isfinite(temperature))
        return nb_tape_fail(t, NB_EINVAL, "kl_div: temperature must be > 0, got %g", (double)temperature);
    int64_t R = nb_rows(student_logits);
    nb_tensor *y = nb_tape_tensor(t, 1, (int64_t[]){1});
    float *buf = nb_tape_alloc(t, (size_t)(3 * R) * sizeof(float));
    /* the teacher is not an input of the node for gradient purposes: push it as a plain
       tensor so a teacher that requires grad does not make the loss depend on it */
    nb_node *n = nb_tape_push(t, &nb_op_kl_div, y, student_logits, NULL, NULL);
    if (!n || !buf) return NULL;
    n->in[n->n_in++] = teacher_logits;
    n->f[0] = temperature;
    n->p[0] = buf;
    n->p[1] = buf + R;
    n->p[2] = buf + 2 * R;
    kl_forward(n);
    return y;
}

/* ---- gradient-check cases ---- */
static nb_tensor *c_xent(nb_tape *t, nb_tensor **in) { return nb_cross_entropy(t, in[0], in[1]); }
static nb_tensor *c_kl2(nb_tape *t, nb_tensor **in) { return nb_kl_div(t, in[0], in[1], 2.0f); }
static nb_tensor *c_kl1(nb_tape *t, nb_tensor **in) { return nb_kl_div(t, in[0], in[1], 1.0f); }

/* targets in [0, V), the second one ignored (-1) */
static void init_targets(nb_tensor **in, nb_rng *r) {
    int64_t V = nb_cols(in[0]), N = nb_numel(in[1]);
    int32_t *tg = in[1]->data;
    for (int64_t k = 0; k < N; k++) tg[k] = (int32_t)nb_rng_below(r, (uint64_t)V);
    if (N > 1) tg[1] = -1;
}

const nb_opcase nb_opcases_loss[] = {
    {.name = "cross_entropy", .n_in = 2, .ndim = {2, 1}, .shape = {{4, 7}, {4}}, .dtype = {NB_F32, NB_I32},
     .apply = c_xent, .init = init_targets, .eps = 1e-2},
    {.name = "cross_entropy_btv", .n_in = 2, .ndim = {3, 2}, .shape = {{2, 3, 5}, {2, 3}}, .dtype = {NB_F32, NB_I32},
     .apply = c_xent, .init = init_targets, .eps = 1e-2},
    {.name = "cross_entropy_v33", .n_in = 2, .ndim = {2, 1}, .shape = {{3, 33}, {3}}, .dtype = {NB_F32, NB_I32},
     .apply = c_xent, .init = init_targets, .eps = 1e-2},
    {.name = "cross_entropy_one_row", .n_in = 2, .ndim = {2, 1}, .shape = {{1, 3}, {1}}, .dtype = {NB_F32, NB_I32},
     .apply = c_xent, .init = init_targets, .eps = 1e-2},
    {.name = "kl_div_t2", .n_in = 2, .ndim = {2, 2}, .shape = {{3, 6}, {3, 6}}, .nondiff = 2, .apply = c_kl2, .eps = 1e-2},
    {.name = "kl_div_btv_t1", .n_in = 2, .ndim = {3, 3}, .shape = {{2, 2, 5}, {2, 2, 5}}, .nondiff = 2, .apply = c_kl1, .eps = 1e-2},
    {0},
};
