/* qat.c: the quantization policy: rules from the recipe, observers, learned quantizer state, the
   schedule, the two forward hooks, PTQ, checkpoint state and per-layer diagnostics. */
#include "qat.h"

#include <fnmatch.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../core/fp16.h"
#include "../core/quant_blocks.h"

/* one parsed rule */
typedef struct qrule {
    int bits;      /* 0: leave fp32 (weights) / no activation quant */
    nb_qspec spec; /* at the rule's bits */
    nb_qest est;
    nb_qobs obs;
    int dynamic;   /* activations per token */
} qrule;

/* one quantized weight */
typedef struct qweight {
    int param, rule;         /* rule: index in quant.weights, -1 for preset rules */
    qrule r;
    int64_t rows, cols, ns;  /* W (rows, cols), ns scales */
    float *lo, *hi, *nobs;   /* observer state: ranges (ns) and observation count (1) */
    float *scale, *zero;     /* observer-derived scales / zero points (ns); zero NULL if symmetric */
    int ps, pz;              /* learned scale / zero point in q->qp, -1 */
    int cur_bits;            /* bits the learned scales were initialised for */
    float *wq;               /* the step's fake-quant weight (rows * cols) */
    long gen;                /* cache generation wq belongs to (-1: none) */
    /* oscillation tracking (rows * cols each, in the zero-free code domain v = code - z; NULL when
       off): last code, direction of its last move (-1, 0, +1), oscillation frequency (EMA),
       EMA of the code, frozen flag (1: W is held on the grid point osc_ema * scale) */
    float *osc_prev, *osc_dir, *osc_freq, *osc_ema, *osc_frozen, *osc_n; /* osc_n (1): tracked steps */
    int8_t *codes;           /* scratch (rows * cols) */
} qweight;

/* one quantized activation (input of a linear weight) */
typedef struct qact {
    int param, rule;
    qrule r;
    float *lo, *hi, *nobs;   /* static: observer state (1 each) */
    float scale, zero;
    int ps, pz;              /* learned scale (LSQ) or alpha (PACT), learned zero (LSQ+) */
} qact;

struct nb_qat {
    nb_recipe_quant cfg;
    const nb_paramset *model;
    nb_paramset qp;          /* learned quantizer parameters */
    int has_qp;
    qweight *w;
    int nw;
    qact *a;
    int na;
    int *w_of, *a_of;        /* (model->n): index in w / a, -1 */
    long step;
    long gen;                /* bumped by begin_step / invalidate */
    nb_paramset state;       /* observer state arrays as a paramset (kind QUANT, never optimised) */
    int has_state;
    nb_qat_array *arrays;    /* the same arrays by name (views into `state`) */
    float ***slots;          /* where each array's data pointer goes once `state` exists */
    int n_arrays;
    int osc;                 /* oscillation tracking on (osc_track, freeze_threshold or osc_damp) */
    nb_qat_osc_stats ostats; /* of the last nb_qat_end_step */
};

/* ---- parsing rules ---- */

static nb_status rule_fail(const char *sec, int i, const nb_qrule *r, const char *key, const char *fmt, const char *got) {
    return nb_fail(NB_EINVAL, "quant.%s[%d] (match \"%s\"): %s: %s, got \"%s\"", sec, i, r->match, key, fmt, got);
}

static nb_status parse_rule(const nb_qrule *r, int i, int is_act, qrule *out) {
    const char *sec = is_act ? "activations" : "weights";
    memset(out, 0, sizeof *out);
    out->bits = r->bits;
    if (!r->match[0]) return nb_fail(NB_EINVAL, "quant.%s[%d]: match: a glob on parameter names is required", sec, i);
    if (r->bits == 0 && !r->ternary) return NB_OK; /* fp32 */
    char num[16];
    snprintf(num, sizeof num, "%d", r->bits);
    if (!r->ternary && (r->bits < 2 || r->bits > 8))
        return rule_fail(sec, i, r, "bits", "expected 2..8 (or 0 = keep fp32)", num);
    nb_qspec *s = &out->spec;
    s->format = NB_QFMT_INT;
    s->bits = r->ternary ? 2 : r->bits;
    s->ternary = r->ternary != 0;
    s->symmetric = r->symmetric || r->ternary;
    s->restrict_range = r->restrict_range != 0;
    if (s->restrict_range && !s->symmetric)
        return rule_fail(sec, i, r, "restrict_range", "needs symmetric: true", "true");
    const char *g = r->granularity;
    if (!is_act) {
        if (!g[0]) g = r->group_size > 0 ? "group" : "channel";
        if (!strcmp(g, "tensor")) s->gran = NB_QGRAN_TENSOR;
        else if (!strcmp(g, "channel") || !strcmp(g, "row")) s->gran = NB_QGRAN_ROW;
        else if (!strcmp(g, "group")) s->gran = NB_QGRAN_GROUP;
        else if (!strcmp(g, "q8_0")) s->format = NB_QFMT_Q8_0;
        else if (!strcmp(g, "q4_0")) s->format = NB_QFMT_Q4_0;
        else if (!strcmp(g, "f16")) s->format = NB_QFMT_F16;
        else return rule_fail(sec, i, r, "granularity", "expected tensor, channel, group, q8_0, q4_0 or f16", g);
    } else {
        if (!g[0]) g = "token";
        if (!strcmp(g, "token")) s->gran = NB_QGRAN_ROW, out->dynamic = 1;
        else if (!strcmp(g, "group")) s->gran = NB_QGRAN_GROUP, out->dynamic = 1;
        else if (!strcmp(g, "tensor")) s->gran = NB_QGRAN_TENSOR;
        else if (!strcmp(g, "q8_0")) s->format = NB_QFMT_Q8_0, out->dynamic = 1;
        else return rule_fail(sec, i, r, "granularity", "expected token, group, tensor or q8_0 (activations)", g);
    }
    if (s->gran == NB_QGRAN_GROUP && s->format == NB_QFMT_INT) {
        s->group_size = r->group_size;
        if (r->group_size != 32 && r->group_size != 64 && r->group_size != 128) {
            snprintf(num, sizeof num, "%d", r->group_size);
            return rule_fail(sec, i, r, "group_size", "expected 32, 64 or 128", num);
        }
    }
    const char *t = r->tail[0] ? r->tail : "error";
    if (!strcmp(t, "error")) s->tail = NB_QTAIL_ERROR;
    else if (!strcmp(t, "short_group")) s->tail = NB_QTAIL_SHORT;
    else return rule_fail(sec, i, r, "tail", "expected error or short_group", t);
    const char *sd = r->scale_dtype[0] ? r->scale_dtype : "f32";
    if (!strcmp(sd, "f16")) s->scale_f16 = 1;
    else if (strcmp(sd, "f32")) return rule_fail(sec, i, r, "scale_dtype", "expected f32 or f16", sd);
    const char *e = r->estimator[0] ? r->estimator : "ste";
    if (!strcmp(e, "ste")) out->est = NB_QEST_STE;
    else if (!strcmp(e, "clipped_ste")) out->est = NB_QEST_CLIPPED;
    else if (!strcmp(e, "lsq")) out->est = NB_QEST_LSQ;
    else if (!strcmp(e, "lsq+")) out->est = NB_QEST_LSQP;
    else if (!strcmp(e, "pact")) out->est = NB_QEST_PACT;
    else return rule_fail(sec, i, r, "estimator", "expected ste, clipped_ste, lsq, lsq+ or pact", e);
    if (out->est == NB_QEST_PACT && (!is_act || out->dynamic || !s->symmetric))
        return rule_fail(sec, i, r, "estimator", "pact is for static (granularity: tensor) symmetric activations", e);
    if (out->est == NB_QEST_LSQP && s->symmetric)
        return rule_fail(sec, i, r, "estimator", "lsq+ learns a zero point: it needs symmetric: false", e);
    if (s->format != NB_QFMT_INT && out->est != NB_QEST_STE && out->est != NB_QEST_CLIPPED)
        return rule_fail(sec, i, r, "estimator", "llama.cpp/f16 grids fix their scales: use ste", e);
    if (out->dynamic && out->est != NB_QEST_STE)
        return rule_fail(sec, i, r, "estimator", "dynamic (per-token) activations take ste", e);
    if (out->est == NB_QEST_CLIPPED && s->format != NB_QFMT_INT) out->est = NB_QEST_STE;
    const char *o = r->observer[0] ? r->observer : "minmax";
    if (!strcmp(o, "minmax")) out->obs.kind = NB_QOBS_MINMAX;
    else if (!strcmp(o, "ema_minmax") || !strcmp(o, "ema")) out->obs.kind = NB_QOBS_EMA;
    else if (!strcmp(o, "mse")) out->obs.kind = NB_QOBS_MSE;
    else if (!strcmp(o, "percentile")) out->obs.kind = NB_QOBS_PERCENTILE;
    else return rule_fail(sec, i, r, "observer", "expected minmax, ema_minmax, mse or percentile", o);
    out->obs.ema_decay = r->ema_decay > 0 ? r->ema_decay : 0.99f;
    out->obs.percentile = r->percentile > 0 ? r->percentile : 99.99f;
    if (out->obs.ema_decay >= 1.0f || out->obs.percentile > 100.0f || out->obs.percentile < 50.0f) {
        snprintf(num, sizeof num, "%g", out->obs.ema_decay >= 1.0f ? out->obs.ema_decay : out->obs.percentile);
        return rule_fail(sec, i, r, out->obs.ema_decay >= 1.0f ? "ema_decay" : "percentile",
                         out->obs.ema_decay >= 1.0f ? "expected 0..1 (exclusive)" : "expected 50..100", num);
    }
    return NB_OK;
}

/* Which parameters rules may quantize. A tied model (no CLASSIFIER parameter) runs its classifier
   matmul through the hooks with the embedding's index, so quantize_classifier then opts the
   embedding table in (the lookup reads the same fake-quantized table). */
static int candidate(const nb_recipe_quant *rq, const nb_paramset *m, const nb_param *p, int is_act) {
    if (p->t.ndim != 2) return 0;
    if (p->kind == NB_PARAM_LINEAR) return 1;
    if (p->kind == NB_PARAM_CLASSIFIER) return rq->quantize_classifier;
    if (p->kind == NB_PARAM_EMBED) {
        int tied = 1;
        for (int k = 0; k < m->n; k++) tied &= m->p[k].kind != NB_PARAM_CLASSIFIER;
        return (tied && rq->quantize_classifier) || (!is_act && rq->quantize_embeddings);
    }
    return 0;
}

/* a rule that names nothing quantizable: say what it does name, if anything */
static nb_status no_match(const nb_recipe_quant *rq, const nb_paramset *m, const char *sec, int i, const char *glob) {
    for (int k = 0; k < m->n; k++) {
        if (fnmatch(glob, m->p[k].name, 0)) continue;
        const nb_param *p = &m->p[k];
        const char *why = p->kind == NB_PARAM_EMBED ? "the token embedding: set quant.quantize_embeddings: true "
                                                      "(or quant.quantize_classifier: true when it is tied)"
                          : p->kind == NB_PARAM_CLASSIFIER ? "the classifier: set quant.quantize_classifier: true"
                                                           : "not a linear weight";
        (void)rq;
        return nb_fail(NB_EINVAL, "quant.%s[%d] (match \"%s\") matches no quantizable parameter (it names %s, %s)", sec,
                       i, glob, p->name, why);
    }
    return nb_fail(NB_EINVAL, "quant.%s[%d] (match \"%s\") matches no parameter (names look like \"%s\")", sec, i, glob,
                   m->n ? m->p[m->n > 1 ? 1 : 0].name : "");
}

/* ---- building ---- */

static float *falloc(int64_t n) { return nb_calloc((size_t)(n > 0 ? n : 1), sizeof(float)); }

static void add_array(nb_qat *q, const char *pname, const char *suffix, float **slot, int64_t n) {
    nb_qat_array *a = &q->arrays[q->n_arrays];
    snprintf(a->name, sizeof a->name, "%s.%s", pname, suffix);
    a->data = NULL;
    a->n = n;
    q->slots[q->n_arrays++] = slot;
}

/* the observer state block: one paramset, the qweight/qact pointers aimed into it */
static nb_status build_state(nb_qat *q) {
    if (!q->n_arrays) return NB_OK;
    nb_param_spec *sp = nb_calloc((size_t)q->n_arrays, sizeof *sp);
    if (!sp) return nb_fail(NB_ENOMEM, "qat: state table");
    for (int i = 0; i < q->n_arrays; i++) {
        snprintf(sp[i].name, sizeof sp[i].name, "%s", q->arrays[i].name);
        sp[i].ndim = 1;
        sp[i].shape[0] = q->arrays[i].n;
        sp[i].kind = NB_PARAM_QUANT;
    }
    nb_status st = nb_paramset_build(&q->state, q->n_arrays, sp);
    nb_free(sp);
    if (st) return st;
    q->has_state = 1;
    for (int i = 0; i < q->n_arrays; i++) {
        nb_param *p = &q->state.p[i];
        p->lr_mult = p->wd_mult = 0.0f;
        p->t.requires_grad = 0;
        q->arrays[i].data = *q->slots[i] = p->t.data;
    }
    return NB_OK;
}

nb_status nb_qat_build(const nb_recipe_quant *rq, const nb_paramset *model, float weight_decay, nb_qat **out) {
    *out = NULL;
    if (!rq->enabled) return NB_OK;
    nb_status st = NB_OK;
    nb_param_spec *qs = NULL;
    nb_qat *q = nb_calloc(1, sizeof *q);
    if (!q) return nb_fail(NB_ENOMEM, "qat: policy");
    q->cfg = *rq;
    q->model = model;
    q->w = nb_calloc((size_t)model->n + 1, sizeof *q->w);
    q->a = nb_calloc((size_t)model->n + 1, sizeof *q->a);
    q->w_of = nb_calloc((size_t)model->n + 1, sizeof *q->w_of);
    q->a_of = nb_calloc((size_t)model->n + 1, sizeof *q->a_of);
    q->arrays = nb_calloc((size_t)model->n * 12 + 1, sizeof *q->arrays);
    q->slots = nb_calloc((size_t)model->n * 12 + 1, sizeof *q->slots);
    qs = nb_calloc((size_t)model->n * 3 + 1, sizeof *qs);
    if (!q->w || !q->a || !q->w_of || !q->a_of || !q->arrays || !q->slots || !qs) {
        st = nb_fail(NB_ENOMEM, "qat: tables for %d parameters", model->n);
        goto fail;
    }
    for (int k = 0; k < model->n; k++) q->w_of[k] = q->a_of[k] = -1;

    /* schedule keys */
    if (rq->start_step < 0) { st = nb_fail(NB_EINVAL, "quant.start_step: expected >= 0, got %d", rq->start_step); goto fail; }
    if (rq->anneal_from_bits && (rq->anneal_from_bits < 2 || rq->anneal_from_bits > 8 || rq->anneal_end <= rq->anneal_start)) {
        st = nb_fail(NB_EINVAL, "quant.anneal_from_bits: expected 2..8 with anneal_end > anneal_start, got %d over [%d, %d]",
                     rq->anneal_from_bits, rq->anneal_start, rq->anneal_end);
        goto fail;
    }
    if (rq->lambda_end < rq->lambda_start) {
        st = nb_fail(NB_EINVAL, "quant.lambda_end (%d) is before quant.lambda_start (%d)", rq->lambda_end, rq->lambda_start);
        goto fail;
    }

    q->osc = rq->osc_track || rq->freeze_threshold > 0 || rq->osc_damp > 0;
    if (q->osc && !(rq->osc_momentum > 0 && rq->osc_momentum <= 1)) {
        st = nb_fail(NB_EINVAL, "quant.osc_momentum: expected 0 < m <= 1, got %g", rq->osc_momentum);
        goto fail;
    }
    if (!(rq->freeze_threshold >= 0 && rq->freeze_threshold <= 1) || !(rq->osc_damp >= 0 && isfinite(rq->osc_damp))) {
        st = nb_fail(NB_EINVAL, "quant.freeze_threshold (%g) must be in 0..1 and quant.osc_damp (%g) >= 0",
                     rq->freeze_threshold, rq->osc_damp);
        goto fail;
    }
    if (rq->freeze_anneal_end > 0 &&
        (!(rq->freeze_threshold_final >= 0 && rq->freeze_threshold_final <= 1) || rq->freeze_threshold <= 0 ||
         rq->freeze_anneal_end <= rq->freeze_anneal_start)) {
        st = nb_fail(NB_EINVAL,
                     "quant.freeze_anneal_end (%d): annealing the freezing threshold needs freeze_threshold > 0 (got %g), "
                     "freeze_threshold_final in 0..1 (got %g) and freeze_anneal_end > freeze_anneal_start (%d)",
                     rq->freeze_anneal_end, rq->freeze_threshold, rq->freeze_threshold_final, rq->freeze_anneal_start);
        goto fail;
    }

    /* weight rules: from the preset or the recipe */
    int preset = 0;
    if (rq->preset[0]) {
        if (!strcmp(rq->preset, "q8_0")) preset = NB_QFMT_Q8_0;
        else if (!strcmp(rq->preset, "q4_0")) preset = NB_QFMT_Q4_0;
        else { st = nb_fail(NB_EINVAL, "quant.preset: expected q8_0 or q4_0 (or empty), got \"%s\"", rq->preset); goto fail; }
        if (rq->n_weight_rules) {
            st = nb_fail(NB_EINVAL, "quant.preset %s sets the weight rules itself; remove quant.weights or the preset", rq->preset);
            goto fail;
        }
    }
    qrule wr[NB_MAX_QRULES], ar[NB_MAX_QRULES];
    int n_wr = rq->n_weight_rules < NB_MAX_QRULES ? rq->n_weight_rules : NB_MAX_QRULES;
    int n_ar = rq->n_act_rules < NB_MAX_QRULES ? rq->n_act_rules : NB_MAX_QRULES;
    for (int i = 0; i < n_wr; i++)
        if ((st = parse_rule(&rq->weights[i], i, 0, &wr[i]))) goto fail;
    for (int i = 0; i < n_ar; i++)
        if ((st = parse_rule(&rq->acts[i], i, 1, &ar[i]))) goto fail;
    if (!preset && n_wr == 0 && n_ar == 0) {
        st = nb_fail(NB_EINVAL, "quant.enabled is true but quant.weights, quant.activations and quant.preset are all empty");
        goto fail;
    }

    /* match weights: first match wins */
    int wmatched[NB_MAX_QRULES] = {0}, amatched[NB_MAX_QRULES] = {0};
    int nq = 0;
    for (int k = 0; k < model->n; k++) {
        const nb_param *p = &model->p[k];
        if (!candidate(rq, model, p, 0)) continue;
        qrule r;
        int ri = -1;
        if (preset) {
            memset(&r, 0, sizeof r);
            r.bits = preset == NB_QFMT_Q8_0 ? 8 : 4;
            /* llama.cpp's grid where the row allows blocks of 32, else F16 (format-legal) */
            r.spec.format = p->t.shape[1] % 32 == 0 ? (nb_qformat)preset : NB_QFMT_F16;
            r.est = NB_QEST_STE;
        } else {
            for (int i = 0; i < n_wr && ri < 0; i++)
                if (!fnmatch(rq->weights[i].match, p->name, 0)) ri = i;
            if (ri < 0) continue;
            wmatched[ri] = 1;
            r = wr[ri];
            if (r.bits == 0 && !r.spec.ternary) continue;
        }
        qweight *w = &q->w[q->nw];
        w->param = k;
        w->rule = ri;
        w->r = r;
        w->rows = p->t.shape[0];
        w->cols = p->t.shape[1];
        if ((st = nb_qspec_check(&r.spec, p->name, w->rows, w->cols))) {
            if (ri >= 0) nb_fail_prefix(st, "quant.weights[%d] (match \"%s\")", ri, rq->weights[ri].match);
            goto fail;
        }
        if (rq->anneal_from_bits && r.spec.format == NB_QFMT_INT && !r.spec.ternary) {
            nb_qspec big = r.spec; /* the annealed grids must fit too */
            big.bits = rq->anneal_from_bits;
            if ((st = nb_qspec_check(&big, p->name, w->rows, w->cols))) goto fail;
        }
        w->ns = nb_qspec_nscales(&r.spec, w->rows, w->cols);
        w->scale = falloc(w->ns);
        w->zero = r.spec.symmetric ? NULL : falloc(w->ns);
        w->wq = falloc(w->rows * w->cols);
        w->ps = w->pz = -1;
        w->gen = -1;
        if (!w->scale || (!r.spec.symmetric && !w->zero) || !w->wq) {
            q->nw++;
            st = nb_fail(NB_ENOMEM, "qat: state of %s", p->name);
            goto fail;
        }
        if (strlen(p->name) + 12 >= sizeof qs[0].name) {
            q->nw++;
            st = nb_fail(NB_EINVAL, "qat: parameter name %s is too long for its quantizer state", p->name);
            goto fail;
        }
        if (r.est == NB_QEST_LSQ || r.est == NB_QEST_LSQP) {
            w->ps = nq;
            snprintf(qs[nq].name, sizeof qs[nq].name, "%s.qscale", p->name);
            qs[nq].ndim = 1, qs[nq].shape[0] = w->ns, qs[nq].kind = NB_PARAM_QUANT;
            nq++;
            if (r.est == NB_QEST_LSQP) {
                w->pz = nq;
                snprintf(qs[nq].name, sizeof qs[nq].name, "%s.qzero", p->name);
                qs[nq].ndim = 1, qs[nq].shape[0] = w->ns, qs[nq].kind = NB_PARAM_QUANT;
                nq++;
            }
        }
        add_array(q, p->name, "obs_lo", &w->lo, w->ns);
        add_array(q, p->name, "obs_hi", &w->hi, w->ns);
        add_array(q, p->name, "obs_n", &w->nobs, 1);
        if (q->osc && r.spec.format == NB_QFMT_INT) {
            int64_t n = w->rows * w->cols;
            if (!(w->codes = nb_malloc((size_t)n))) {
                q->nw++;
                st = nb_fail(NB_ENOMEM, "qat: oscillation state of %s", p->name);
                goto fail;
            }
            add_array(q, p->name, "osc_prev", &w->osc_prev, n);
            add_array(q, p->name, "osc_dir", &w->osc_dir, n);
            add_array(q, p->name, "osc_freq", &w->osc_freq, n);
            add_array(q, p->name, "osc_ema", &w->osc_ema, n);
            add_array(q, p->name, "osc_frozen", &w->osc_frozen, n);
            add_array(q, p->name, "osc_n", &w->osc_n, 1);
        }
        q->w_of[k] = q->nw++;
    }
    for (int i = 0; i < n_wr; i++) {
        if (wmatched[i]) continue;
        int any = 0; /* matched a candidate only behind an earlier rule? then it is shadowed, not absent */
        for (int k = 0; k < model->n && !any; k++)
            any = candidate(rq, model, &model->p[k], 0) && !fnmatch(rq->weights[i].match, model->p[k].name, 0);
        if (!any) { st = no_match(rq, model, "weights", i, rq->weights[i].match); goto fail; }
    }

    /* activation rules: on the inputs of the matching weights */
    for (int k = 0; k < model->n; k++) {
        const nb_param *p = &model->p[k];
        if (!candidate(rq, model, p, 1)) continue;
        int ri = -1;
        for (int i = 0; i < n_ar && ri < 0; i++)
            if (!fnmatch(rq->acts[i].match, p->name, 0)) ri = i;
        if (ri < 0) continue;
        amatched[ri] = 1;
        if (ar[ri].bits == 0 && !ar[ri].spec.ternary) continue;
        qact *a = &q->a[q->na];
        a->param = k;
        a->rule = ri;
        a->r = ar[ri];
        a->ps = a->pz = -1;
        if ((st = nb_qspec_check(&a->r.spec, p->name, 1, p->t.shape[1]))) {
            nb_fail_prefix(st, "quant.activations[%d] (match \"%s\"): input of", ri, rq->acts[ri].match);
            goto fail;
        }
        if (!a->r.dynamic) {
            if (strlen(p->name) + 12 >= sizeof qs[0].name) {
                st = nb_fail(NB_EINVAL, "qat: parameter name %s is too long for its quantizer state", p->name);
                goto fail;
            }
            add_array(q, p->name, "act_obs_lo", &a->lo, 1);
            add_array(q, p->name, "act_obs_hi", &a->hi, 1);
            add_array(q, p->name, "act_obs_n", &a->nobs, 1);
            nb_qest e = a->r.est;
            if (e == NB_QEST_LSQ || e == NB_QEST_LSQP || e == NB_QEST_PACT) {
                a->ps = nq;
                snprintf(qs[nq].name, sizeof qs[nq].name, "%s.%s", p->name, e == NB_QEST_PACT ? "act_alpha" : "act_qscale");
                qs[nq].ndim = 1, qs[nq].shape[0] = 1, qs[nq].kind = NB_PARAM_QUANT;
                nq++;
            }
            if (e == NB_QEST_LSQP) {
                a->pz = nq;
                snprintf(qs[nq].name, sizeof qs[nq].name, "%s.act_qzero", p->name);
                qs[nq].ndim = 1, qs[nq].shape[0] = 1, qs[nq].kind = NB_PARAM_QUANT;
                nq++;
            }
        }
        q->a_of[k] = q->na++;
    }
    for (int i = 0; i < n_ar; i++) {
        if (amatched[i]) continue;
        st = no_match(rq, model, "activations", i, rq->acts[i].match);
        goto fail;
    }

    if ((st = build_state(q))) goto fail;
    if (nq) {
        if ((st = nb_paramset_build(&q->qp, nq, qs))) goto fail;
        q->has_qp = 1;
        float lrm = rq->scale_lr_mult > 0 ? rq->scale_lr_mult : 1.0f;
        float wdm = weight_decay > 0 ? rq->scale_weight_decay / weight_decay : 0.0f;
        for (int i = 0; i < nq; i++) {
            q->qp.p[i].lr_mult = lrm;
            q->qp.p[i].wd_mult = wdm;
        }
    }
    nb_free(qs);
    q->step = 0;
    q->gen = 1;
    *out = q;
    return NB_OK;
fail:
    nb_free(qs);
    nb_qat_free(q);
    return st;
}

void nb_qat_free(nb_qat *q) {
    if (!q) return;
    for (int i = 0; q->w && i < q->nw; i++) {
        qweight *w = &q->w[i];
        nb_free(w->scale), nb_free(w->zero), nb_free(w->wq), nb_free(w->codes);
    }
    if (q->has_qp) nb_paramset_free(&q->qp);
    if (q->has_state) nb_paramset_free(&q->state);
    nb_free(q->w), nb_free(q->a), nb_free(q->w_of), nb_free(q->a_of), nb_free(q->arrays), nb_free(q->slots);
    nb_free(q);
}

nb_paramset *nb_qat_params(nb_qat *q) { return q && q->has_qp ? &q->qp : NULL; }
nb_paramset *nb_qat_state(nb_qat *q) { return q && q->has_state ? &q->state : NULL; }

/* ---- schedule (pure functions of the step) ---- */

static int weights_on(const nb_qat *q, long s) { return s >= q->cfg.start_step; }
static int acts_on(const nb_qat *q, long s) {
    return s >= (q->cfg.act_start_step < 0 ? q->cfg.start_step : q->cfg.act_start_step);
}
static int frozen(const nb_qat *q, long s) { return q->cfg.freeze_observers_step >= 0 && s >= q->cfg.freeze_observers_step; }
static int lsq_learning(const nb_qat *q, long s) { return s >= (long)q->cfg.start_step + q->cfg.lsq_warmup_steps; }

int nb_qat_bits_at(const nb_qat *q, int rule_bits, long s) {
    const nb_recipe_quant *c = &q->cfg;
    if (!c->anneal_from_bits) return rule_bits;
    if (s < c->anneal_start) return c->anneal_from_bits;
    if (s >= c->anneal_end) return rule_bits;
    /* integer steps evenly spread over [anneal_start, anneal_end): from, ..., reaching rule_bits at the end */
    long span = c->anneal_end - c->anneal_start;
    return c->anneal_from_bits + (int)(((long)(rule_bits - c->anneal_from_bits) * (s - c->anneal_start)) / span);
}

float nb_qat_lambda_at(const nb_qat *q, long s) {
    const nb_recipe_quant *c = &q->cfg;
    if (c->lambda_start == 0 && c->lambda_end == 0) return 1.0f;
    if (s < c->lambda_start) return 0.0f;
    if (s >= c->lambda_end) return 1.0f;
    return (float)(s - c->lambda_start) / (float)(c->lambda_end - c->lambda_start);
}

/* the first INT (non-ternary) weight's rule bits, to report annealed bits */
static int report_bits(const nb_qat *q, long s) {
    for (int i = 0; i < q->nw; i++)
        if (q->w[i].r.spec.format == NB_QFMT_INT && !q->w[i].r.spec.ternary) return nb_qat_bits_at(q, q->w[i].r.bits, s);
    return 0;
}

static void event(nb_qat_events *ev, unsigned flag, const char *text) {
    ev->flags |= flag;
    if (ev->n < NB_QAT_MAX_EVENTS) snprintf(ev->text[ev->n++], sizeof ev->text[0], "%s", text);
}

int nb_qat_begin_step(nb_qat *q, long step, nb_qat_events *ev) {
    nb_qat_events local;
    if (!ev) ev = &local;
    memset(ev, 0, sizeof *ev);
    if (!q) return 0;
    q->step = step;
    q->gen++;
    long p = step - 1;
    char buf[128];
    if (q->nw && weights_on(q, step) && !weights_on(q, p)) {
        snprintf(buf, sizeof buf, "weight fake-quant on (%d tensors)", q->nw);
        event(ev, NB_QAT_EV_WEIGHTS_ON, buf);
    }
    if (q->na && acts_on(q, step) && !acts_on(q, p)) {
        snprintf(buf, sizeof buf, "activation fake-quant on (%d inputs)", q->na);
        event(ev, NB_QAT_EV_ACTS_ON, buf);
    }
    if (frozen(q, step) && !frozen(q, p)) event(ev, NB_QAT_EV_OBSERVERS_FROZEN, "observers frozen");
    int b = report_bits(q, step), bp = report_bits(q, p);
    if (q->cfg.anneal_from_bits && b != bp && weights_on(q, step)) {
        snprintf(buf, sizeof buf, "weight bits %d -> %d", bp, b);
        event(ev, NB_QAT_EV_BITS, buf);
    }
    if (q->has_qp && q->cfg.lsq_warmup_steps > 0 && lsq_learning(q, step) && !lsq_learning(q, p))
        event(ev, NB_QAT_EV_LSQ_LEARNING, "learned scales start learning (LSQ warm-up over)");
    float l = nb_qat_lambda_at(q, step), lp = nb_qat_lambda_at(q, p);
    if (q->cfg.lambda_end > 0 || q->cfg.lambda_start > 0) {
        if (l > 0 && lp == 0) {
            snprintf(buf, sizeof buf, "lambda ramp starts (%.4g)", l);
            event(ev, NB_QAT_EV_LAMBDA_START, buf);
        }
        if (l == 1.0f && lp < 1.0f) event(ev, NB_QAT_EV_LAMBDA_FULL, "lambda reaches 1");
    }
    ev->weights_on = weights_on(q, step);
    ev->acts_on = acts_on(q, step);
    ev->weight_bits = q->cfg.anneal_from_bits ? b : 0;
    ev->lambda = l;
    return ev->n;
}

void nb_qat_invalidate(nb_qat *q) {
    if (q) q->gen++;
}

/* ---- weights ---- */

static nb_qspec spec_now(const nb_qat *q, const qweight *w) {
    nb_qspec s = w->r.spec;
    if (s.format == NB_QFMT_INT && !s.ternary) s.bits = nb_qat_bits_at(q, w->r.bits, q->step);
    return s;
}

enum { MODE_TRAIN, MODE_EVAL };

/* Observer update and the scales the fake-quant uses now (learned or observer-driven). Learned
   scales follow the observer until they are initialised, during the LSQ warm-up and when the
   annealed bit-width changes; they are floored at NB_QSCALE_MIN in place, so the forward, the
   backward and export all read the same values. */
static nb_status prepare_weight(nb_qat *q, qweight *w, int mode, const float **scale, const float **zero) {
    nb_qspec s = spec_now(q, w);
    const float *W = q->model->p[w->param].t.data;
    *scale = *zero = NULL;
    if (s.format != NB_QFMT_INT) return NB_OK; /* block formats and F16 compute their own */
    int first = w->nobs[0] == 0;
    int update = first || (!frozen(q, q->step) && (mode == MODE_TRAIN || w->r.obs.kind != NB_QOBS_EMA));
    if (update) {
        NB_TRY(nb_quant_observe(&s, &w->r.obs, W, w->rows, w->cols, w->lo, w->hi, first));
        if (w->nobs[0] < 1e9f) w->nobs[0] += 1.0f;
    }
    nb_quant_params(&s, w->lo, w->hi, w->ns, w->scale, w->zero);
    *scale = w->scale;
    *zero = w->zero;
    if (w->ps >= 0) {
        float *ls = q->qp.p[w->ps].t.data, *lz = w->pz >= 0 ? q->qp.p[w->pz].t.data : NULL;
        /* cur_bits == 0: first call since build or load; a resumed run keeps its learned values */
        if (first || !lsq_learning(q, q->step) || (w->cur_bits && w->cur_bits != s.bits)) {
            memcpy(ls, w->scale, (size_t)w->ns * sizeof(float));
            if (lz) memcpy(lz, w->zero, (size_t)w->ns * sizeof(float));
        }
        w->cur_bits = s.bits;
        for (int64_t k = 0; k < w->ns; k++) ls[k] = fmaxf(ls[k], NB_QSCALE_MIN);
        *scale = ls;
        *zero = lz;
    }
    return NB_OK;
}

static nb_tensor *wrap1(nb_tape *t, float *data, int64_t n) {
    nb_tensor *x = nb_tape_alloc(t, sizeof *x);
    if (x) *x = nb_tensor_wrap(data, NB_F32, 1, (int64_t[]){n});
    return x;
}

nb_tensor *nb_qat_weight(nb_tape *t, nb_qat *q, int param, nb_tensor *w) {
    if (!q || !w || param < 0 || param >= q->model->n || q->w_of[param] < 0) return w;
    if (!weights_on(q, q->step)) return w;
    if (t->status != NB_OK) return NULL;
    qweight *qw = &q->w[q->w_of[param]];
    int training = t->recording;
    const float *scale, *zero;
    nb_fq c = {.spec = spec_now(q, qw), .est = qw->r.est, .lambda = nb_qat_lambda_at(q, q->step)};
    if (!training || qw->gen != q->gen) {
        nb_status st = prepare_weight(q, qw, training ? MODE_TRAIN : MODE_EVAL, &scale, &zero);
        if (st) return nb_tape_fail(t, st, "%s", nb_errmsg());
    } else { /* cached this step: the scales prepare_weight left */
        scale = qw->ps >= 0 ? q->qp.p[qw->ps].t.data : qw->scale;
        zero = qw->pz >= 0 ? q->qp.p[qw->pz].t.data : qw->zero;
        if (c.spec.format != NB_QFMT_INT) scale = zero = NULL;
    }
    nb_tensor *st = NULL, *zt = NULL;
    if (c.spec.format == NB_QFMT_INT) {
        int learn = qw->ps >= 0 && lsq_learning(q, q->step);
        if (learn) {
            st = &q->qp.p[qw->ps].t;
            zt = qw->pz >= 0 ? &q->qp.p[qw->pz].t : NULL;
        } else {
            st = wrap1(t, (float *)scale, qw->ns);
            zt = zero ? wrap1(t, (float *)zero, qw->ns) : NULL;
            if (!st || (zero && !zt)) return NULL;
        }
    }
    if (training) {
        if (qw->gen != q->gen) { /* once per step: the cache the op then reads */
            nb_fakequant_mat(&c.spec, w->data, qw->rows, qw->cols, scale, zero, qw->wq);
            if (c.lambda != 1.0f) {
                const float *x = w->data;
                for (int64_t i = 0; i < qw->rows * qw->cols; i++) qw->wq[i] = x[i] + c.lambda * (qw->wq[i] - x[i]);
            }
            qw->gen = q->gen;
        }
        c.cached = qw->wq;
    }
    return nb_fakequant(t, w, &c, st, zt);
}

/* ---- weight oscillations (Nagel et al. 2022, "Overcoming Oscillations in QAT") ---- */

static long osc_start(const nb_qat *q) {
    return q->cfg.osc_start_step >= 0 ? q->cfg.osc_start_step : (long)q->cfg.start_step + q->cfg.lsq_warmup_steps;
}

/* the grid the weight is on after the optimizer step: learned scales (floored) once they learn,
   else the observer's scales of this step's prepare_weight */
static void grid_now(nb_qat *q, qweight *w, const float **scale, const float **zero) {
    *scale = w->scale;
    *zero = w->zero;
    if (w->ps >= 0 && lsq_learning(q, q->step)) {
        float *ls = q->qp.p[w->ps].t.data;
        for (int64_t k = 0; k < w->ns; k++) ls[k] = fmaxf(ls[k], NB_QSCALE_MIN);
        *scale = ls;
        *zero = w->pz >= 0 ? q->qp.p[w->pz].t.data : NULL;
    }
}

float nb_qat_freeze_threshold_at(const nb_qat *q, long s) {
    const nb_recipe_quant *c = &q->cfg;
    if (c->freeze_anneal_end <= 0 || s <= c->freeze_anneal_start) return c->freeze_threshold;
    if (s >= c->freeze_anneal_end) return c->freeze_threshold_final;
    double t = (double)(s - c->freeze_anneal_start) / (double)(c->freeze_anneal_end - c->freeze_anneal_start);
    return (float)(c->freeze_threshold_final + (c->freeze_threshold - c->freeze_threshold_final) * 0.5 * (1.0 + cos(M_PI * t)));
}

static void osc_weight(nb_qat *q, qweight *w, float lr) {
    nb_qspec s = spec_now(q, w);
    const float *scale, *zero;
    grid_now(q, w, &scale, &zero);
    float *W = q->model->p[w->param].t.data;
    nb_quant_codes_ref(&s, W, w->rows, w->cols, scale, zero, w->codes);
    int qmin, qmax;
    nb_qspec_range(&s, &qmin, &qmax);
    const float m = q->cfg.osc_momentum, thr = nb_qat_freeze_threshold_at(q, q->step), damp = lr * q->cfg.osc_damp;
    const int first = w->osc_n[0] == 0;
    int64_t G = s.gran == NB_QGRAN_GROUP ? s.group_size : w->cols, gpr = (w->cols + G - 1) / G;
    nb_qat_osc_stats *st = &q->ostats;
    for (int64_t r = 0; r < w->rows; r++)
        for (int64_t c = 0; c < w->cols; c++) {
            int64_t i = r * w->cols + c, k = s.gran == NB_QGRAN_TENSOR ? 0 : r * gpr + c / G;
            float z = 0.0f;
            if (zero) {
                z = rintf(zero[k]);
                z = z < qmin ? (float)qmin : z > qmax ? (float)qmax : z;
            }
            float v = (float)w->codes[i] - z, sc = scale[k];
            st->tracked++;
            if (w->osc_frozen[i] != 0.0f) { /* held on its grid point (the scale may have moved) */
                W[i] = w->osc_ema[i] * sc;
                st->frozen++;
                continue;
            }
            if (first) {
                w->osc_prev[i] = w->osc_ema[i] = v;
                w->osc_dir[i] = w->osc_freq[i] = 0.0f;
                continue;
            }
            float o = 0.0f;
            if (v != w->osc_prev[i]) {
                float dir = v > w->osc_prev[i] ? 1.0f : -1.0f;
                st->flips++;
                if (w->osc_dir[i] != 0.0f && dir != w->osc_dir[i]) o = 1.0f, st->oscillations++;
                w->osc_dir[i] = dir;
                w->osc_prev[i] = v;
            }
            w->osc_freq[i] = m * o + (1.0f - m) * w->osc_freq[i];
            w->osc_ema[i] = m * v + (1.0f - m) * w->osc_ema[i];
            st->freq_sum += w->osc_freq[i];
            if (thr > 0 && w->osc_freq[i] > thr) { /* freeze on the EMA code's grid point */
                float vf = rintf(w->osc_ema[i]);
                vf = vf < qmin - z ? qmin - z : vf > qmax - z ? qmax - z : vf;
                w->osc_ema[i] = vf;
                w->osc_frozen[i] = 1.0f;
                W[i] = vf * sc;
                st->frozen++, st->newly_frozen++;
            } else if (damp > 0) { /* pull towards the grid point (decoupled, like AdamW's decay) */
                W[i] -= damp * (W[i] - v * sc);
            }
        }
    if (w->osc_n[0] < 1e9f) w->osc_n[0] += 1.0f;
}

nb_status nb_qat_end_step(nb_qat *q, float lr) {
    if (!q) return NB_OK;
    memset(&q->ostats, 0, sizeof q->ostats);
    q->ostats.step = q->step;
    if (!q->osc || !weights_on(q, q->step) || q->step < osc_start(q)) return NB_OK;
    q->ostats.active = 1;
    for (int i = 0; i < q->nw; i++) {
        qweight *w = &q->w[i];
        if (!w->osc_prev || w->nobs[0] == 0) continue; /* not an INT grid, or never quantized */
        osc_weight(q, w, lr);
    }
    nb_qat_invalidate(q);
    return NB_OK;
}

void nb_qat_osc_get(const nb_qat *q, nb_qat_osc_stats *out) {
    memset(out, 0, sizeof *out);
    if (q) *out = q->ostats;
}

int nb_qat_osc_frozen(const nb_qat *q, int param, int64_t i) {
    if (!q || param < 0 || param >= q->model->n || q->w_of[param] < 0) return 0;
    const qweight *w = &q->w[q->w_of[param]];
    return w->osc_frozen && i >= 0 && i < w->rows * w->cols && w->osc_frozen[i] != 0.0f;
}

/* ---- activations ---- */

nb_tensor *nb_qat_act(nb_tape *t, nb_qat *q, int param, nb_tensor *x) {
    if (!q || !x || param < 0 || param >= q->model->n || q->a_of[param] < 0) return x;
    if (!acts_on(q, q->step)) return x;
    if (t->status != NB_OK) return NULL;
    qact *a = &q->a[q->a_of[param]];
    float lam = nb_qat_lambda_at(q, q->step);
    if (a->r.dynamic) return nb_fakequant_token(t, x, &a->r.spec, lam);
    if (!nb_is_contiguous(x)) return nb_tape_fail(t, NB_ESHAPE, "qat: input of %s is not contiguous", q->model->p[param].name);
    nb_qspec s = a->r.spec;
    int first = a->nobs[0] == 0;
    if (first || (t->recording && !frozen(q, q->step))) {
        nb_status st = nb_quant_observe(&s, &a->r.obs, x->data, nb_rows(x), nb_cols(x), a->lo, a->hi, first);
        if (st) return nb_tape_fail(t, st, "%s", nb_errmsg());
        a->nobs[0] += 1.0f;
    }
    nb_quant_params(&s, a->lo, a->hi, 1, &a->scale, s.symmetric ? NULL : &a->zero);
    nb_fq c = {.spec = s, .est = a->r.est, .lambda = lam};
    nb_tensor *st, *zt = NULL;
    if (a->ps >= 0) {
        float *ls = q->qp.p[a->ps].t.data;
        if (first || !lsq_learning(q, q->step)) { /* follow the observer; PACT's alpha = the clip range */
            ls[0] = a->r.est == NB_QEST_PACT ? fmaxf(-a->lo[0], a->hi[0]) : a->scale;
            if (a->pz >= 0) nb_f32(&q->qp.p[a->pz].t)[0] = a->zero;
        }
        ls[0] = fmaxf(ls[0], NB_QSCALE_MIN);
        st = &q->qp.p[a->ps].t;
        zt = a->pz >= 0 ? &q->qp.p[a->pz].t : NULL;
        if (!lsq_learning(q, q->step)) { /* warm-up: no gradient into the scale */
            st = wrap1(t, ls, 1);
            zt = a->pz >= 0 ? wrap1(t, q->qp.p[a->pz].t.data, 1) : NULL;
        }
    } else {
        st = wrap1(t, &a->scale, 1);
        zt = s.symmetric ? NULL : wrap1(t, &a->zero, 1);
    }
    if (!st) return NULL;
    return nb_fakequant(t, x, &c, st, zt);
}

static int same_spec(const nb_qspec *x, const nb_qspec *y) {
    return x->format == y->format && x->bits == y->bits && x->symmetric == y->symmetric &&
           x->restrict_range == y->restrict_range && x->ternary == y->ternary && x->gran == y->gran &&
           x->group_size == y->group_size && x->tail == y->tail && x->scale_f16 == y->scale_f16;
}

int nb_qat_act_shared(const nb_qat *q, int a, int b) {
    if (!q) return 1;
    int ia = a >= 0 && a < q->model->n ? q->a_of[a] : -1, ib = b >= 0 && b < q->model->n ? q->a_of[b] : -1;
    if (ia < 0 || ib < 0) return ia == ib;
    const qact *x = &q->a[ia], *y = &q->a[ib];
    return x->r.dynamic && y->r.dynamic && same_spec(&x->r.spec, &y->r.spec);
}

/* ---- export, PTQ ---- */

void nb_qat_weight_info(const nb_qat *q, int param, nb_qat_winfo *info) {
    memset(info, 0, sizeof *info);
    info->rule = -1;
    if (!q || param < 0 || param >= q->model->n || q->w_of[param] < 0) return;
    const qweight *w = &q->w[q->w_of[param]];
    info->quantized = 1;
    info->spec = spec_now(q, w);
    info->est = w->r.est;
    info->rule = w->rule;
    info->nscales = w->ns;
    if (q->a_of[param] >= 0) {
        const qact *a = &q->a[q->a_of[param]];
        info->act_quantized = 1;
        info->act_dynamic = a->r.dynamic;
        info->act_spec = a->r.spec;
    }
}

nb_status nb_qat_weight_quantize(nb_qat *q, int param, int8_t *codes, float *scales, float *zeros) {
    if (!q || param < 0 || param >= q->model->n || q->w_of[param] < 0)
        return nb_fail(NB_EINVAL, "qat: parameter %d is not quantized", param);
    qweight *w = &q->w[q->w_of[param]];
    nb_qspec s = spec_now(q, w);
    if (s.format != NB_QFMT_INT)
        return nb_fail(NB_EINVAL, "qat: %s uses a block/f16 format: quantize it with quant_blocks.h",
                       q->model->p[param].name);
    const float *scale, *zero;
    NB_TRY(prepare_weight(q, w, MODE_EVAL, &scale, &zero));
    const float *W = q->model->p[param].t.data;
    if (scales) memcpy(scales, scale, (size_t)w->ns * sizeof(float));
    if (zeros) {
        int qmin, qmax;
        nb_qspec_range(&s, &qmin, &qmax);
        for (int64_t k = 0; k < w->ns; k++) { /* the integer zero point the quantizer uses */
            float z = zero ? rintf(zero[k]) : 0.0f;
            zeros[k] = z < qmin ? (float)qmin : z > qmax ? (float)qmax : z;
        }
    }
    if (codes) nb_quant_codes_ref(&s, W, w->rows, w->cols, scale, zero, codes);
    return NB_OK;
}

/* PTQ fake-quant of W (rows, cols) with fresh observers at the rule's own bits */
static nb_status ptq_one(const qweight *w, const float *W, float *out, int8_t *codes) {
    nb_qspec s = w->r.spec;
    if (s.format != NB_QFMT_INT) {
        nb_fakequant_mat(&s, W, w->rows, w->cols, NULL, NULL, out);
        return NB_OK;
    }
    float *lo = falloc(w->ns), *hi = falloc(w->ns), *sc = falloc(w->ns), *z = falloc(w->ns);
    nb_status st = !lo || !hi || !sc || !z ? nb_fail(NB_ENOMEM, "ptq: scales") : NB_OK;
    if (!st) st = nb_quant_observe(&s, &w->r.obs, W, w->rows, w->cols, lo, hi, 1);
    if (!st) {
        nb_quant_params(&s, lo, hi, w->ns, sc, s.symmetric ? NULL : z);
        nb_fakequant_mat(&s, W, w->rows, w->cols, sc, s.symmetric ? NULL : z, out);
        if (codes) nb_quant_codes_ref(&s, W, w->rows, w->cols, sc, s.symmetric ? NULL : z, codes);
    }
    nb_free(lo), nb_free(hi), nb_free(sc), nb_free(z);
    return st;
}

nb_status nb_qat_apply_ptq(nb_qat *q) {
    if (!q) return NB_OK;
    for (int i = 0; i < q->nw; i++) {
        float *W = q->model->p[q->w[i].param].t.data;
        NB_TRY(ptq_one(&q->w[i], W, W, NULL));
        q->w[i].nobs[0] = 0; /* observers restart from the quantized weights */
    }
    nb_qat_invalidate(q);
    return NB_OK;
}

/* ---- checkpoint state ---- */

int nb_qat_state_count(const nb_qat *q) { return q ? q->n_arrays : 0; }

void nb_qat_state_get(nb_qat *q, int i, nb_qat_array *out) {
    NB_ASSERT(q && i >= 0 && i < q->n_arrays);
    *out = q->arrays[i];
}

nb_status nb_qat_state_set(nb_qat *q, const char *name, const float *data, int64_t n) {
    for (int i = 0; q && i < q->n_arrays; i++) {
        if (strcmp(q->arrays[i].name, name)) continue;
        if (n != q->arrays[i].n)
            return nb_fail(NB_EINVAL, "quant state %s: expected %lld values, got %lld", name, (long long)q->arrays[i].n,
                           (long long)n);
        memcpy(q->arrays[i].data, data, (size_t)n * sizeof(float));
        nb_qat_invalidate(q);
        return NB_OK;
    }
    return nb_fail(NB_EINVAL, "quant state %s: no such quantizer state in this policy", name);
}

/* ---- diagnostics ---- */

/* elements whose code was clipped at qmin/qmax */
static int64_t count_clipped(const nb_qspec *s, const float *W, int64_t rows, int64_t cols, const float *scale,
                             const float *zero) {
    int64_t n = 0;
    if (s->format == NB_QFMT_Q4_0) { /* ggml: MIN(15, floor(x/d + 8.5)) clips at 16 */
        for (int64_t r = 0; r < rows; r++)
            for (int64_t b = 0; b < cols / 32; b++) {
                const float *x = W + r * cols + b * 32;
                float amax = 0, max = 0;
                for (int j = 0; j < 32; j++)
                    if (amax < fabsf(x[j])) amax = fabsf(x[j]), max = x[j];
                float d = max / -8.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
                for (int j = 0; j < 32; j++) n += (int8_t)(x[j] * id + 8.5f) > 15;
            }
        return n;
    }
    if (s->format != NB_QFMT_INT) return 0;
    int qmin, qmax;
    nb_qspec_range(s, &qmin, &qmax);
    int64_t G = s->gran == NB_QGRAN_GROUP ? s->group_size : cols, gpr = (cols + G - 1) / G;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) {
            int64_t k = s->gran == NB_QGRAN_TENSOR ? 0 : r * gpr + c / G;
            float inv = scale[k] != 0.0f ? 1.0f / scale[k] : 0.0f;
            float z = zero ? fminf(fmaxf(rintf(zero[k]), (float)qmin), (float)qmax) : 0.0f;
            float v = rintf(W[r * cols + c] * inv) + z;
            n += v < qmin || v > qmax;
        }
    return n;
}

nb_status nb_qat_diagnose(nb_qat *q, const nb_paramset *ref, nb_qat_diag *out, int max, int *n_out) {
    *n_out = 0;
    if (!q) return NB_OK;
    nb_status st = NB_OK;
    for (int i = 0; i < q->nw && *n_out < max; i++) {
        qweight *w = &q->w[i];
        const nb_param *p = &q->model->p[w->param];
        int64_t n = w->rows * w->cols;
        nb_qat_diag *d = &out[(*n_out)++];
        memset(d, 0, sizeof *d);
        snprintf(d->name, sizeof d->name, "%s", p->name);
        nb_qspec s = spec_now(q, w);
        nb_qspec_str(&s, d->grid, sizeof d->grid);
        d->numel = n;
        d->vs_ref = d->code_diff_frac = -1;
        const float *scale, *zero;
        if ((st = prepare_weight(q, w, MODE_EVAL, &scale, &zero))) return st;
        float *y = falloc(n), *yr = ref ? falloc(n) : NULL;
        int8_t *c1 = ref ? nb_malloc((size_t)n * 2) : NULL, *c2 = c1 ? c1 + n : NULL;
        if (!y || (ref && (!yr || !c1))) {
            nb_free(y), nb_free(yr), nb_free(c1);
            return nb_fail(NB_ENOMEM, "diagnose %s", p->name);
        }
        nb_fakequant_mat(&s, p->t.data, w->rows, w->cols, scale, zero, y);
        d->sqnr_db = nb_quant_sqnr_db(p->t.data, y, n);
        d->clip_frac = (double)count_clipped(&s, p->t.data, w->rows, w->cols, scale, zero) / (double)n;
        if (ref) {
            int k = nb_paramset_find(ref, p->name);
            if (k < 0 || nb_numel(&ref->p[k].t) != n) {
                nb_free(y), nb_free(yr), nb_free(c1);
                return nb_fail(NB_EINVAL, "diagnose: the reference has no %s of %lld elements", p->name, (long long)n);
            }
            qweight tmp = *w;
            tmp.r.spec = s;
            int ints = s.format == NB_QFMT_INT;
            if ((st = ptq_one(&tmp, ref->p[k].t.data, yr, ints ? c2 : NULL))) {
                nb_free(y), nb_free(yr), nb_free(c1);
                return st;
            }
            if (ints) nb_quant_codes_ref(&s, p->t.data, w->rows, w->cols, scale, zero, c1);
            double num = 0, den = 0;
            int64_t diff = 0;
            for (int64_t j = 0; j < n; j++) {
                double e = (double)y[j] - yr[j];
                num += e * e;
                den += (double)yr[j] * yr[j];
                diff += ints ? c1[j] != c2[j] : y[j] != yr[j]; /* block formats: compare values */
            }
            d->vs_ref = den > 0 ? sqrt(num / den) : 0;
            d->code_diff_frac = (double)diff / (double)n;
        }
        nb_free(y), nb_free(yr), nb_free(c1);
    }
    return NB_OK;
}
