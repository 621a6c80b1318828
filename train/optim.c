/* optim.c: AdamW / SGD updates, deterministic gradient norm and non-finite detection. */
#include "optim.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

nb_optim_config nb_optim_config_default(nb_optim_kind kind) {
    nb_optim_config c = {kind, 0.9f, 0.95f, 1e-8f, 0.1f, 0.9f};
    return c;
}

nb_status nb_optim_kind_parse(const char *name, nb_optim_kind *out) {
    if (!strcmp(name, "adamw")) *out = NB_OPTIM_ADAMW;
    else if (!strcmp(name, "sgd")) *out = NB_OPTIM_SGD;
    else return nb_fail(NB_EINVAL, "optim.name: expected adamw or sgd, got '%s'", name);
    return NB_OK;
}

/* A state block shaped like src: same names, shapes and offsets; data zeroed, no grad block. */
static nb_status state_like(const nb_paramset *src, nb_paramset *dst, int allocate) {
    memset(dst, 0, sizeof *dst);
    dst->p = nb_calloc((size_t)(src->n ? src->n : 1), sizeof *dst->p);
    if (!dst->p) return nb_fail(NB_ENOMEM, "optimizer: table of %d", src->n);
    dst->n = src->n;
    dst->numel = allocate ? src->numel : 0;
    if (allocate) {
        dst->data = nb_calloc((size_t)(src->numel ? src->numel : 1), sizeof(float));
        if (!dst->data) return nb_fail(NB_ENOMEM, "optimizer: state of %lld floats", (long long)src->numel);
    }
    for (int i = 0; i < src->n; i++) {
        nb_param *p = &dst->p[i];
        *p = src->p[i];
        p->t.data = allocate ? dst->data + p->offset : NULL;
        p->t.grad = NULL;
        p->t.requires_grad = 0;
        p->t.name = p->name;
    }
    return NB_OK;
}

static void free_state(nb_paramset *s) {
    nb_free(s->p);
    nb_free(s->data);
    memset(s, 0, sizeof *s);
}

nb_status nb_optim_init(nb_optim *o, const nb_optim_config *cfg, int n_sets, nb_paramset *const *sets) {
    memset(o, 0, sizeof *o);
    if (n_sets < 1 || n_sets > NB_OPTIM_MAX_SETS)
        return nb_fail(NB_EINVAL, "optimizer: %d parameter sets (1..%d)", n_sets, NB_OPTIM_MAX_SETS);
    o->cfg = *cfg;
    o->n_sets = n_sets;
    nb_status s = NB_OK;
    int64_t n_chunks = 0;
    for (int k = 0; k < n_sets; k++) {
        o->sets[k] = sets[k];
        if ((s = state_like(sets[k], &o->m[k], 1)) != NB_OK) goto fail;
        if ((s = state_like(sets[k], &o->v[k], cfg->kind == NB_OPTIM_ADAMW)) != NB_OK) goto fail;
        for (int i = 0; i < sets[k]->n; i++)
            n_chunks += (nb_numel(&sets[k]->p[i].t) + NB_OPTIM_CHUNK - 1) / NB_OPTIM_CHUNK;
    }
    /* the chunk table: each parameter cut into pieces of NB_OPTIM_CHUNK elements */
    o->chunks = nb_calloc((size_t)(n_chunks ? n_chunks : 1), sizeof *o->chunks);
    o->partial = nb_calloc((size_t)(n_chunks ? n_chunks : 1), sizeof *o->partial);
    if (!o->chunks || !o->partial) {
        s = nb_fail(NB_ENOMEM, "optimizer: %lld chunks", (long long)n_chunks);
        goto fail;
    }
    int c = 0;
    for (int k = 0; k < n_sets; k++)
        for (int i = 0; i < sets[k]->n; i++) {
            int64_t n = nb_numel(&sets[k]->p[i].t);
            for (int64_t j = 0; j < n; j += NB_OPTIM_CHUNK) {
                nb_optim_chunk *ch = &o->chunks[c++];
                ch->set = k;
                ch->param = i;
                ch->start = sets[k]->p[i].offset + j;
                ch->len = n - j < NB_OPTIM_CHUNK ? n - j : NB_OPTIM_CHUNK;
            }
        }
    o->n_chunks = c;
    return NB_OK;
fail:
    nb_optim_free(o);
    return s;
}

void nb_optim_free(nb_optim *o) {
    for (int k = 0; k < NB_OPTIM_MAX_SETS; k++) {
        free_state(&o->m[k]);
        free_state(&o->v[k]);
    }
    nb_free(o->chunks);
    nb_free(o->partial);
    memset(o, 0, sizeof *o);
}

void nb_optim_zero_grad(nb_optim *o) {
    for (int k = 0; k < o->n_sets; k++) nb_paramset_zero_grad(o->sets[k]);
}

/* sum of squares of n floats in double, 8 independent lanes (vectorizes; fixed order) */
static double sumsq(const float *g, int64_t n) {
    double acc[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; l++) acc[l] += (double)g[i + l] * g[i + l];
    for (; i < n; i++) acc[i & 7] += (double)g[i] * g[i];
    return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

static nb_status first_nonfinite(const nb_param *p, const float *x, const char *what) {
    int64_t n = nb_numel(&p->t);
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(x[i])) {
            char shp[96];
            return nb_fail(NB_ENAN, "%s of %s is %s at element %lld of %s", what, p->name,
                           isnan(x[i]) ? "nan" : (x[i] > 0 ? "+inf" : "-inf"), (long long)i,
                           nb_shape_str(&p->t, shp, sizeof shp));
        }
    return NB_OK;
}

nb_status nb_paramsets_check_finite(nb_paramset *const *sets, int n_sets, int grad) {
    for (int k = 0; k < n_sets; k++)
        for (int i = 0; i < sets[k]->n; i++) {
            const nb_param *p = &sets[k]->p[i];
            const float *x = (grad ? sets[k]->grad : sets[k]->data) + p->offset;
            NB_TRY(first_nonfinite(p, x, grad ? "gradient" : "value"));
        }
    return NB_OK;
}

nb_status nb_optim_grad_norm(nb_optim *o, float grad_scale, double *norm) {
    const nb_optim_chunk *chunks = o->chunks;
    double *partial = o->partial;
#pragma omp parallel for schedule(static)
    for (int c = 0; c < o->n_chunks; c++)
        partial[c] = sumsq(o->sets[chunks[c].set]->grad + chunks[c].start, chunks[c].len);
    double ss = 0.0;
    for (int c = 0; c < o->n_chunks; c++) ss += partial[c];
    /* a NaN or Inf anywhere makes ss non-finite (finite floats squared cannot overflow a double) */
    if (!isfinite(ss)) {
        nb_status s = nb_paramsets_check_finite(o->sets, o->n_sets, 1);
        *norm = ss;
        return s != NB_OK ? s : nb_fail(NB_ENAN, "gradient norm is not finite");
    }
    *norm = sqrt(ss) * fabs((double)grad_scale);
    return NB_OK;
}

float nb_optim_clip_scale(double norm, float max_norm) {
    if (max_norm <= 0.0f || !(norm > max_norm)) return 1.0f;
    return (float)(max_norm / (norm + 1e-6));
}

/* One chunk of AdamW: the whole update in one pass over p, g, m, v. */
static void adamw_chunk(float *restrict p, const float *restrict g, float *restrict m, float *restrict v,
                        int64_t n, float lr, float wd, float b1, float b2, float eps, float gs, float bc1,
                        float bc2_rsqrt) {
    const float decay = 1.0f - lr * wd;
    const float step_size = lr / bc1;
    for (int64_t i = 0; i < n; i++) {
        float gi = g[i] * gs;
        float mi = b1 * m[i] + (1.0f - b1) * gi;
        float vi = b2 * v[i] + (1.0f - b2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        /* v_hat^(1/2) = sqrt(v) / sqrt(1 - b2^t) */
        p[i] = p[i] * decay - step_size * mi / (sqrtf(vi) * bc2_rsqrt + eps);
    }
}

static void sgd_chunk(float *restrict p, const float *restrict g, float *restrict buf, int64_t n, float lr,
                      float wd, float mu, float gs) {
    const float decay = 1.0f - lr * wd;
    for (int64_t i = 0; i < n; i++) {
        float b = mu * buf[i] + g[i] * gs;
        buf[i] = b;
        p[i] = p[i] * decay - lr * b;
    }
}

void nb_optim_step(nb_optim *o, float lr, float grad_scale) {
    const nb_optim_config *c = &o->cfg;
    const double t = (double)(o->step + 1);
    const float bc1 = (float)(1.0 - pow(c->beta1, t));
    const float bc2_rsqrt = (float)(1.0 / sqrt(1.0 - pow(c->beta2, t)));
#pragma omp parallel for schedule(static)
    for (int k = 0; k < o->n_chunks; k++) {
        const nb_optim_chunk *ch = &o->chunks[k];
        nb_paramset *s = o->sets[ch->set];
        const nb_param *p = &s->p[ch->param];
        float plr = lr * p->lr_mult;
        float wd = c->weight_decay * p->wd_mult;
        if (c->kind == NB_OPTIM_ADAMW)
            adamw_chunk(s->data + ch->start, s->grad + ch->start, o->m[ch->set].data + ch->start,
                        o->v[ch->set].data + ch->start, ch->len, plr, wd, c->beta1, c->beta2, c->eps, grad_scale,
                        bc1, bc2_rsqrt);
        else
            sgd_chunk(s->data + ch->start, s->grad + ch->start, o->m[ch->set].data + ch->start, ch->len, plr, wd,
                      c->momentum, grad_scale);
    }
    o->step++;
}
