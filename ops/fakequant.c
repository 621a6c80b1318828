/* fakequant.c: fake-quant ops (weights with fixed or learned scales, PACT, dynamic per token),
   forward and backward side by side. */
#include "fakequant.h"

#include <math.h>
#include <string.h>

#include "../autograd/gradcheck.h"
#include "kernels/qgemm.h"
#include "oputil.h"

const char *nb_qest_name(nb_qest e) {
    switch (e) {
    case NB_QEST_STE: return "ste";
    case NB_QEST_CLIPPED: return "clipped_ste";
    case NB_QEST_LSQ: return "lsq";
    case NB_QEST_LSQP: return "lsq+";
    case NB_QEST_PACT: return "pact";
    }
    return "?";
}

/* segment geometry of an INT spec: G elements share scale k = tensor ? 0 : r * gpr + c / G */
static void geom(const nb_qspec *s, int64_t cols, int64_t *G, int64_t *gpr, int *tensor) {
    *G = s->gran == NB_QGRAN_GROUP ? s->group_size : cols;
    *gpr = (cols + *G - 1) / *G;
    *tensor = s->gran == NB_QGRAN_TENSOR;
}

static int learned(nb_qest e) { return e == NB_QEST_LSQ || e == NB_QEST_LSQP || e == NB_QEST_PACT; }

/* PACT runs on the symmetric restricted grid of its bits with s = alpha / qmax */
static nb_qspec pact_spec(const nb_qspec *s) {
    nb_qspec p = *s;
    p.symmetric = 1;
    p.restrict_range = 1;
    p.gran = NB_QGRAN_TENSOR;
    return p;
}

/* the scales the quantizer really uses: learned ones floored at NB_QSCALE_MIN, PACT's alpha/qmax */
static void effective_scales(const nb_fq *c, const float *scale, int64_t n, float *out) {
    int qmin, qmax;
    nb_qspec ps = pact_spec(&c->spec);
    nb_qspec_range(&ps, &qmin, &qmax);
    for (int64_t k = 0; k < n; k++) {
        float s = scale[k];
        if (learned(c->est)) s = fmaxf(s, NB_QSCALE_MIN);
        if (c->est == NB_QEST_PACT) s = s / (float)qmax;
        out[k] = s;
    }
}

static float lsq_g(const nb_fq *c, int64_t rows, int64_t cols) {
    if (c->grad_scale > 0) return c->grad_scale;
    int qmin, qmax;
    nb_qspec_range(&c->spec, &qmin, &qmax);
    double qp = c->spec.symmetric ? qmax : qmax - qmin;
    double N = (double)nb_qspec_group_numel(&c->spec, rows, cols);
    return (float)(1.0 / sqrt(N * qp));
}

void nb_fakequant_backward_ref(const nb_fq *c, const float *x, const float *dy, int64_t rows, int64_t cols,
                               const float *scale, const float *zero, float *dx, float *ds, float *dz) {
    const float lam = c->lambda;
    if (c->spec.format != NB_QFMT_INT || c->est == NB_QEST_STE) { /* identity through Q */
        for (int64_t i = 0; i < rows * cols; i++) dx[i] += dy[i];
        return;
    }
    nb_qspec spec = c->est == NB_QEST_PACT ? pact_spec(&c->spec) : c->spec;
    int qmin, qmax;
    nb_qspec_range(&spec, &qmin, &qmax);
    int64_t G, gpr;
    int tensor;
    geom(&spec, cols, &G, &gpr, &tensor);
    float g = lsq_g(c, rows, cols);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < gpr; j++) {
            int64_t k = tensor ? 0 : r * gpr + j, off = r * cols + j * G;
            int64_t n = cols - j * G < G ? cols - j * G : G;
            float s;
            effective_scales(c, scale + k, 1, &s);
            float inv = s != 0.0f ? 1.0f / s : 0.0f;
            float z = 0.0f;
            if (zero) {
                z = rintf(zero[k]);
                z = z < qmin ? (float)qmin : z > qmax ? (float)qmax : z;
            }
            double gs = 0, gz = 0; /* this segment's contribution to ds[k], dz[k] */
            for (int64_t i = off; i < off + n; i++) {
                float v = x[i] * inv, rv = rintf(v), q = rv + z, d = dy[i];
                int below = q < qmin, above = q > qmax;
                if (c->est == NB_QEST_PACT) { /* clip at +-alpha */
                    float a = s * (float)qmax;
                    below = x[i] <= -a;
                    above = x[i] >= a;
                }
                int inside = !below && !above;
                dx[i] += (1.0f - lam) * d + (inside ? lam * d : 0.0f);
                if (c->est == NB_QEST_PACT) {
                    gs += below ? -(double)d : above ? (double)d : 0.0;
                } else if (c->est == NB_QEST_LSQ || c->est == NB_QEST_LSQP) {
                    double t = inside ? (double)rv - (double)v : below ? (double)qmin - z : (double)qmax - z;
                    gs += t * d;
                    if (!inside) gz += -(double)s * d;
                }
            }
            if (ds && c->est == NB_QEST_PACT) ds[k] += (float)(lam * gs);
            else if (ds && (c->est == NB_QEST_LSQ || c->est == NB_QEST_LSQP)) ds[k] += (float)(lam * g * gs);
            if (dz && c->est == NB_QEST_LSQP) dz[k] += (float)(lam * g * gz);
        }
}

/* ---- the op: in[0] = x, in[1] = scale (optional), in[2] = zero (optional); p[0] = nb_fq ---- */

static void fq_forward(nb_node *n) {
    const nb_fq *c = n->p[0];
    nb_tensor *x = n->in[0];
    if (c->cached) return; /* out->data already points at the cached value */
    const nb_tensor *sc = n->n_in > 1 ? n->in[1] : NULL, *zt = n->n_in > 2 ? n->in[2] : NULL;
    int64_t rows = nb_rows(x), cols = nb_cols(x);
    float *y = n->out->data;
    const float *scale = NULL;
    if (sc) {
        int64_t ns = nb_numel(sc);
        float *tmp = nb_tape_alloc(n->tape, (size_t)ns * sizeof(float));
        if (!tmp) return;
        effective_scales(c, sc->data, ns, tmp);
        scale = tmp;
    }
    nb_qspec spec = c->est == NB_QEST_PACT ? pact_spec(&c->spec) : c->spec;
    nb_fakequant_mat(&spec, x->data, rows, cols, scale, zt ? zt->data : NULL, y);
    if (c->lambda != 1.0f) {
        const float *xd = x->data;
        for (int64_t i = 0; i < rows * cols; i++) y[i] = xd[i] + c->lambda * (y[i] - xd[i]);
    }
}

static void fq_backward(nb_node *n) {
    const nb_fq *c = n->p[0];
    nb_tensor *x = n->in[0];
    if (n->i[0]) return; /* STE: the output shares x's gradient buffer */
    nb_tensor *sc = n->n_in > 1 ? n->in[1] : NULL, *zt = n->n_in > 2 ? n->in[2] : NULL;
    float *dx = x->requires_grad ? x->grad : nb_tape_alloc(n->tape, nb_numel(x) * sizeof(float));
    if (!dx) return;
    nb_fakequant_backward_ref(c, x->data, n->out->grad, nb_rows(x), nb_cols(x), sc ? sc->data : NULL,
                              zt ? zt->data : NULL, dx, sc && sc->requires_grad ? sc->grad : NULL,
                              zt && zt->requires_grad ? zt->grad : NULL);
}

const nb_op nb_op_fakequant = {"fakequant", fq_forward, fq_backward};

nb_tensor *nb_fakequant(nb_tape *t, nb_tensor *x, const nb_fq *c, nb_tensor *scale, nb_tensor *zero) {
    if (nb_tape_bad(t, x, NULL, NULL)) return NULL;
    char sh[64];
    if (!nb_is_contiguous(x) || x->dtype != NB_F32)
        return nb_tape_fail(t, NB_ESHAPE, "fakequant: %s must be contiguous f32", x->name ? x->name : "input");
    int64_t rows = nb_rows(x), cols = nb_cols(x);
    const char *name = x->name ? x->name : "fakequant input";
    if (nb_qspec_check(&c->spec, name, rows, cols) != NB_OK) return nb_tape_fail(t, NB_EINVAL, "%s", nb_errmsg());
    int64_t need = c->est == NB_QEST_PACT ? 1 : nb_qspec_nscales(&c->spec, rows, cols);
    if (c->spec.format == NB_QFMT_INT && (!scale || nb_numel(scale) != need))
        return nb_tape_fail(t, NB_ESHAPE, "fakequant %s %s: expected %lld scales, got %lld", name,
                            nb_shape_str(x, sh, sizeof sh), (long long)need, (long long)(scale ? nb_numel(scale) : 0));
    if (zero && (c->spec.symmetric || nb_numel(zero) != need))
        return nb_tape_fail(t, NB_ESHAPE, "fakequant %s: zero points given for a symmetric grid or not %lld of them",
                            name, (long long)need);
    if (c->spec.format != NB_QFMT_INT) scale = zero = NULL;
    nb_tensor *y;
    if (c->cached) {
        y = nb_tape_alloc(t, sizeof *y);
        if (!y) return NULL;
        *y = nb_tensor_wrap((void *)c->cached, NB_F32, x->ndim, x->shape);
    } else {
        y = nb_tape_tensor(t, x->ndim, x->shape);
    }
    nb_fq *cc = nb_tape_alloc(t, sizeof *cc);
    if (!y || !cc) return NULL;
    *cc = *c;
    /* The straight-through estimator passes dy unchanged to x (for any lambda: 1 - lambda + lambda)
       and gives the scales nothing: the output shares x's gradient buffer, as reshape does, so
       the backward has no pass to make and no buffer to zero. */
    int share = (c->spec.format != NB_QFMT_INT || c->est == NB_QEST_STE) && t->recording && x->requires_grad &&
                !(scale && scale->requires_grad) && !(zero && zero->requires_grad);
    if (share && !(y->grad = nb_grad(t, x))) return NULL;
    nb_node *n = nb_tape_push(t, &nb_op_fakequant, y, x, scale, zero);
    if (!n) return NULL;
    n->p[0] = cc;
    n->i[0] = share;
    fq_forward(n);
    return t->status == NB_OK ? y : NULL;
}

/* ---- dynamic per token ---- */

/* Can a linear layer read this per-token fake-quant as integer codes (qgemm.h)? INT symmetric
   per row at <= 8 bits, plain fake-quant (lambda 1). */
static int token_int_ok(const nb_qspec *s, float lam) {
    return s->format == NB_QFMT_INT && !s->ternary && s->symmetric && s->bits >= 2 && s->bits <= 8 &&
           (s->gran == NB_QGRAN_ROW || s->gran == NB_QGRAN_TENSOR) && lam == 1.0f;
}

static void fqt_forward(nb_node *n) {
    const nb_qspec *s = n->p[0];
    nb_tensor *x = n->in[0];
    float *y = n->out->data;
    const float *xd = x->data;
    float lam = n->f[0];
    float *scales = NULL; /* kept (p[1]) for nb_fakequant_token_codes */
    if (n->tape->recording && token_int_ok(s, lam) && nb_qgemm_available())
        scales = nb_tape_alloc(n->tape, (size_t)nb_rows(x) * sizeof(float));
    n->p[1] = scales;
    /* every row (token) is quantized on its own: blocks of rows in parallel give the same bits */
    int64_t rows = nb_rows(x), cols = nb_cols(x);
#pragma omp parallel for schedule(static) if (rows * cols > 2 * NB_OMP_MIN && rows > NB_CHUNK_ROWS)
    for (int64_t r0 = 0; r0 < rows; r0 += NB_CHUNK_ROWS) {
        int64_t nr = rows - r0 < NB_CHUNK_ROWS ? rows - r0 : NB_CHUNK_ROWS;
        nb_fakequant_dynamic(s, xd + r0 * cols, nr, cols, y + r0 * cols, scales ? scales + r0 : NULL);
    }
    if (lam != 1.0f)
        for (int64_t i = 0; i < nb_numel(x); i++) y[i] = xd[i] + lam * (y[i] - xd[i]);
}

/* STE: dx += dy for any lambda (1 - lambda + lambda). The output shares x's gradient buffer
   while recording (nb_fakequant_token), so this only runs for an output made without one. */
static void fqt_backward(nb_node *n) {
    nb_tensor *x = n->in[0];
    const float *dy = n->out->grad;
    if (dy == x->grad) return;
    for (int64_t i = 0; i < nb_numel(x); i++) x->grad[i] += dy[i];
}

const nb_op nb_op_fakequant_token = {"fakequant_token", fqt_forward, fqt_backward};

nb_tensor *nb_fakequant_token(nb_tape *t, nb_tensor *x, const nb_qspec *spec, float lambda) {
    if (nb_tape_bad(t, x, NULL, NULL)) return NULL;
    if (!nb_is_contiguous(x) || x->dtype != NB_F32)
        return nb_tape_fail(t, NB_ESHAPE, "fakequant_token: %s must be contiguous f32", x->name ? x->name : "input");
    if (nb_qspec_check(spec, x->name ? x->name : "activations", nb_rows(x), nb_cols(x)) != NB_OK)
        return nb_tape_fail(t, NB_EINVAL, "%s", nb_errmsg());
    nb_tensor *y = nb_tape_tensor(t, x->ndim, x->shape);
    nb_qspec *sc = nb_tape_alloc(t, sizeof *sc);
    if (!y || !sc) return NULL;
    *sc = *spec;
    if (t->recording && x->requires_grad && !(y->grad = nb_grad(t, x))) return NULL;
    nb_node *n = nb_tape_push(t, &nb_op_fakequant_token, y, x, NULL, NULL);
    if (!n) return NULL;
    n->p[0] = sc;
    n->f[0] = lambda;
    fqt_forward(n);
    return y;
}

/* ---- integer operands for the forward of a linear layer (ops/kernels/qgemm.h) ---- */

/* The recorded node that produced y with op `op` (a step records a few hundred nodes). */
static nb_node *producer(nb_tape *t, const nb_tensor *y, const nb_op *op) {
    for (int i = t->n_nodes - 1; i >= 0; i--)
        if (t->nodes[i]->out == y) return t->nodes[i]->op == op ? t->nodes[i] : NULL;
    return NULL;
}

int nb_fakequant_token_codes(nb_tape *t, const nb_tensor *y, const float **scales, const uint8_t **codes) {
    nb_node *n = producer(t, y, &nb_op_fakequant_token);
    if (!n || !n->p[1]) return 0;
    if (!n->p[2]) { /* first reader: pack once, every linear reading this y shares it */
        int64_t rows = nb_rows(y), cols = nb_cols(y);
        uint8_t *c = nb_tape_alloc(t, (size_t)(rows * cols));
        if (!c) return 0;
        nb_qgemm_pack_x(y->data, rows, cols, n->p[1], c);
        n->p[2] = c;
    }
    *scales = n->p[1];
    *codes = n->p[2];
    return 1;
}

int nb_fakequant_weight_codes(nb_tape *t, const nb_tensor *w, nb_qspec *spec, const float **scales, int *tensor) {
    nb_node *n = producer(t, w, &nb_op_fakequant);
    if (!n) return 0;
    const nb_fq *c = n->p[0];
    const nb_qspec *s = &c->spec;
    if (s->format != NB_QFMT_INT || s->ternary || !s->symmetric || s->bits < 2 || s->bits > 8 || c->lambda != 1.0f)
        return 0;
    if (c->est != NB_QEST_STE && c->est != NB_QEST_CLIPPED) return 0; /* learned scales are floored */
    if (n->n_in < 2 || (n->n_in > 2 && n->in[2])) return 0;
    *spec = *s;
    *scales = n->in[1]->data;
    *tensor = s->gran == NB_QGRAN_TENSOR;
    return 1;
}

/* ---- gradient-check cases: only where Q is smooth enough for central differences ----
   PACT with every |x| beyond alpha: y = +-alpha, dy/dalpha = +-1 and dy/dx = 0.
   LSQ (g = 1) with every x clipped: y = qmin s or qmax s, dy/ds = qmin or qmax.
   lambda = 0: the identity. The estimators' in-range behaviour is tested against its definition
   in tests/test_fakequant.c. */
static void init_far(nb_tensor **in, nb_rng *r) {
    float *x = in[0]->data;
    for (int64_t i = 0; i < nb_numel(in[0]); i++) {
        float u = 2.0f + nb_rng_uniform(r);
        x[i] = (i & 1) ? -u : u;
    }
    nb_f32(in[1])[0] = 0.5f;
    if (nb_numel(in[1]) > 1)
        for (int64_t k = 0; k < nb_numel(in[1]); k++) nb_f32(in[1])[k] = 0.05f + 0.01f * (float)k;
}
static nb_tensor *ap_pact(nb_tape *t, nb_tensor **in) {
    nb_fq c = {.spec = {.bits = 4, .symmetric = 1}, .est = NB_QEST_PACT, .lambda = 1};
    return nb_fakequant(t, in[0], &c, in[1], NULL);
}
static nb_tensor *ap_lsq_clip(nb_tape *t, nb_tensor **in) {
    nb_fq c = {.spec = {.bits = 4, .symmetric = 1, .gran = NB_QGRAN_ROW}, .est = NB_QEST_LSQ, .lambda = 1,
               .grad_scale = 1};
    return nb_fakequant(t, in[0], &c, in[1], NULL);
}
static nb_tensor *ap_lambda0(nb_tape *t, nb_tensor **in) {
    nb_fq c = {.spec = {.bits = 3, .symmetric = 1, .gran = NB_QGRAN_ROW}, .est = NB_QEST_CLIPPED, .lambda = 0};
    return nb_fakequant(t, in[0], &c, in[1], NULL);
}
static void init_pos(nb_tensor **in, nb_rng *r) {
    for (int64_t k = 0; k < nb_numel(in[1]); k++) nb_f32(in[1])[k] = 0.2f + nb_rng_uniform(r);
}

const nb_opcase nb_opcases_fakequant[] = {
    {.name = "fakequant_pact_clipped", .n_in = 2, .ndim = {2, 1}, .shape = {{3, 5}, {1}}, .apply = ap_pact,
     .init = init_far},
    {.name = "fakequant_lsq_clipped", .n_in = 2, .ndim = {2, 1}, .shape = {{3, 5}, {3}}, .apply = ap_lsq_clip,
     .init = init_far},
    {.name = "fakequant_lambda0", .n_in = 2, .ndim = {2, 1}, .shape = {{4, 6}, {4}}, .nondiff = 2,
     .apply = ap_lambda0, .init = init_pos},
    {0},
};
