/* gradcheck.c: central differences against the tape's backward. */
#include "gradcheck.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* loss = sum(out * w), accumulated in double */
static double weighted(const nb_tensor *y, const float *w) {
    double s = 0;
    const float *p = y->data;
    for (int64_t i = 0; i < nb_numel(y); i++) s += (double)p[i] * w[i];
    return s;
}

static nb_status make_inputs(const nb_opcase *c, nb_arena *a, nb_tensor **in, nb_rng *r) {
    for (int i = 0; i < c->n_in; i++) {
        in[i] = nb_tensor_new(a, c->dtype[i], c->ndim[i], c->shape[i]);
        if (!in[i]) return nb_fail(NB_ENOMEM, "gradcheck %s: inputs", c->name);
        if (c->dtype[i] == NB_F32) {
            float *x = in[i]->data;
            for (int64_t k = 0; k < nb_numel(in[i]); k++) x[k] = nb_rng_normal(r);
        } else {
            memset(in[i]->data, 0, nb_nbytes(in[i]));
        }
        in[i]->requires_grad = c->dtype[i] == NB_F32 && !(c->nondiff >> i & 1);
    }
    if (c->init) c->init(in, r);
    return NB_OK;
}

static double eval_loss(const nb_opcase *c, nb_arena *scratch, nb_tensor **in, const float *w, nb_status *st) {
    nb_tape t;
    nb_tape_init(&t, scratch);
    nb_tape_grad(&t, 0);
    size_t mark_used = scratch->used;
    (void)mark_used;
    nb_tensor *y = c->apply(&t, in);
    *st = nb_tape_status(&t);
    double l = *st == NB_OK ? weighted(y, w) : 0;
    nb_tape_free(&t);
    nb_arena_reset(scratch);
    return l;
}

nb_status nb_gradcheck(const nb_opcase *c, uint64_t seed, nb_gradcheck_result *res) {
    memset(res, 0, sizeof *res);
    nb_arena a, scratch;
    nb_arena_init(&a, 1 << 20);
    nb_arena_init(&scratch, 1 << 20);
    nb_rng r = nb_rng_make(seed, 11);
    nb_tensor *in[NB_NODE_MAX_IN] = {0};
    nb_status st = make_inputs(c, &a, in, &r);
    if (st) goto done;

    /* analytic */
    nb_tape t;
    nb_tape_init(&t, &a);
    nb_tensor *y = c->apply(&t, in);
    if ((st = nb_tape_status(&t)) != NB_OK) {
        nb_tape_free(&t);
        goto done;
    }
    int64_t ny = nb_numel(y);
    float *w = nb_arena_alloc(&a, (size_t)ny * sizeof(float));
    for (int64_t i = 0; i < ny; i++) w[i] = nb_rng_normal(&r);
    st = nb_backward(&t, y, w);
    nb_tape_free(&t);
    if (st) goto done;

    double eps = c->eps > 0 ? c->eps : 1e-3;
    double rtol = c->rtol > 0 ? c->rtol : 1e-2;
    for (int i = 0; i < c->n_in; i++) {
        if (!in[i]->requires_grad) continue;
        int64_t n = nb_numel(in[i]);
        float *x = in[i]->data;
        int64_t step = n > 200 ? n / 200 : 1;
        /* scale of the gradient, so near-zero entries are judged against it */
        double gscale = 0;
        for (int64_t k = 0; k < n; k++) gscale = fmax(gscale, fabs(in[i]->grad ? in[i]->grad[k] : 0));
        for (int64_t k = 0; k < n; k += step) {
            float keep = x[k];
            float *g = in[i]->grad;
            x[k] = (float)(keep + eps);
            double lp = eval_loss(c, &scratch, in, w, &st);
            x[k] = (float)(keep - eps);
            double lm = eval_loss(c, &scratch, in, w, &st);
            double step_real = (double)(float)(keep + eps) - (double)(float)(keep - eps);
            x[k] = keep;
            if (st) goto done;
            double num = (lp - lm) / step_real, ana = g ? g[k] : 0;
            double rel = fabs(num - ana) / fmax(fmax(fabs(num), fabs(ana)), fmax(1e-2 * gscale, 1e-6));
            res->n_checked++;
            if (rel > res->max_rel) {
                res->max_rel = rel;
                snprintf(res->where, sizeof res->where, "input %d element %lld: analytic %.6g numeric %.6g", i,
                         (long long)k, ana, num);
            }
        }
    }
    if (res->max_rel > rtol)
        st = nb_fail(NB_ERANGE, "gradcheck %s: relative error %.3g > %.3g at %s", c->name, res->max_rel, rtol, res->where);
done:
    nb_arena_free(&a);
    nb_arena_free(&scratch);
    return st;
}
