/* bench.c: the training-step benchmark (`nibble bench train`): model, policy, timed steps, profile. */
#include "bench.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "../core/simd.h"
#include "../ops/ops.h"
#include "optim.h"

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}
static double cpu_ms(void) { /* all threads of the process */
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

nb_status nb_bench_model(const char *name, nb_model_config *mc, int *batch) {
    nb_model_config_defaults(mc);
    mc->vocab_size = 512;
    mc->seq_len = 256;
    if (!strcmp(name, "tiny")) { /* stories260K's shape */
        mc->dim = 64, mc->n_layers = 5, mc->n_heads = 8, mc->n_kv_heads = 4, mc->hidden_dim = 172;
        *batch = 16;
    } else if (!strcmp(name, "small")) {
        mc->dim = 288, mc->n_layers = 6, mc->n_heads = 6, mc->n_kv_heads = 6, mc->hidden_dim = 768;
        *batch = 8;
    } else {
        return nb_fail(NB_EINVAL, "bench: model '%s': expected tiny or small", name);
    }
    return nb_model_config_check(mc, "bench");
}

static nb_qrule weight_rule(const char *match, int bits, const char *gran, int G) {
    nb_qrule r;
    memset(&r, 0, sizeof r);
    snprintf(r.match, sizeof r.match, "%s", match);
    r.bits = bits;
    r.symmetric = 1;
    snprintf(r.granularity, sizeof r.granularity, "%s", gran);
    r.group_size = G;
    snprintf(r.estimator, sizeof r.estimator, "ste");
    snprintf(r.observer, sizeof r.observer, "minmax");
    return r;
}

nb_status nb_bench_quant(const char *policy, const nb_model_config *mc, nb_recipe_quant *rq) {
    nb_recipe r;
    nb_recipe_defaults(&r);
    *rq = r.quant;
    rq->enabled = 0;
    rq->start_step = 0;
    rq->act_start_step = -1;
    rq->freeze_observers_step = -1;
    rq->quantize_embeddings = 0;
    rq->quantize_classifier = 0;
    rq->n_weight_rules = rq->n_act_rules = 0;
    if (!strcmp(policy, "none")) return NB_OK;
    rq->enabled = 1;
    if (!strcmp(policy, "w8")) {
        rq->weights[rq->n_weight_rules++] = weight_rule("*", 8, "channel", 0);
        return NB_OK;
    }
    if (strcmp(policy, "w4g32a8"))
        return nb_fail(NB_EINVAL, "bench: quant '%s': expected none, w8 or w4g32a8", policy);
    /* int4 groups of 32 along rows; a row length that is not a multiple of 32 (tiny's w2: 172
       inputs) takes int4 per output channel, as torch_step.py does */
    if (mc->dim % 32) rq->weights[rq->n_weight_rules++] = weight_rule("*", 4, "channel", 0);
    if (mc->hidden_dim % 32) rq->weights[rq->n_weight_rules++] = weight_rule("layers.*.ffn.w2", 4, "channel", 0);
    rq->weights[rq->n_weight_rules++] = weight_rule("*", 4, "group", 32);
    rq->acts[rq->n_act_rules++] = weight_rule("*", 8, "token", 0);
    return NB_OK;
}

/* ---- profile: time between trace calls is charged to the node traced last ---- */
typedef struct prof {
    double t0;
    const nb_op *last;
    int last_bwd;
    int n;
    const nb_op *ops[NB_BENCH_MAX_OPS];
    double fwd[NB_BENCH_MAX_OPS], bwd[NB_BENCH_MAX_OPS]; /* this step */
} prof;

static void prof_close(prof *p) {
    double t = now_ms();
    if (p->last) {
        int k = 0;
        while (k < p->n && p->ops[k] != p->last) k++;
        if (k == p->n && p->n < NB_BENCH_MAX_OPS) p->ops[p->n++] = p->last;
        if (k < p->n) (p->last_bwd ? p->bwd : p->fwd)[k] += t - p->t0;
    }
    p->t0 = t;
    p->last = NULL;
}

static void prof_trace(void *ctx, const nb_node *n, int backward) {
    prof *p = ctx;
    prof_close(p);
    p->last = n->op;
    p->last_bwd = backward;
}

static int is_fq(const nb_op *op) { return !strncmp(op->name, "fakequant", 9); } /* fakequant, fakequant_token */

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}
static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

nb_status nb_bench_train(const nb_bench_config *c, nb_bench_result *r) {
    memset(r, 0, sizeof *r);
    if (c->steps < 1 || c->warmup < 0) return nb_fail(NB_EINVAL, "bench: steps must be >= 1 (got %d)", c->steps);
    int B;
    NB_TRY(nb_bench_model(c->model, &r->mc, &B));
    nb_recipe_quant rq;
    NB_TRY(nb_bench_quant(c->quant, &r->mc, &rq));
    if (c->threads > 0) nb_threads_set(c->threads);
    r->threads = nb_threads_get();
    const nb_model_config *mc = &r->mc;
    int T = mc->seq_len;
    r->B = B, r->T = T;

    nb_model m;
    nb_qat *q = NULL;
    nb_optim o;
    nb_arena a;
    nb_tape t;
    int have_optim = 0;
    int32_t *ids = NULL, *tgt = NULL;
    double *times = NULL;
    nb_status st = nb_model_init(&m, mc);
    if (st != NB_OK) return st;
    nb_arena_init(&a, 1 << 20);
    nb_tape_init(&t, &a);
    nb_model_init_random(&m, 0.02f, c->seed);
    r->params = nb_model_numel(&m);
    int64_t mm = 0; /* matrix parameters: embedding (= tied classifier) and every linear */
    for (int i = 0; i < m.params.n; i++)
        if (m.params.p[i].kind != NB_PARAM_NORM) mm += nb_numel(&m.params.p[i].t);
    r->flops = 6.0 * (double)mm * B * T + 6.0 * mc->n_layers * (double)B * T * T * mc->dim;

    nb_optim_config oc = nb_optim_config_default(NB_OPTIM_ADAMW);
    oc.beta2 = 0.999f; /* torch's AdamW defaults, lr 1e-3, weight decay 0.1 */
    oc.weight_decay = 0.1f;
    if ((st = nb_qat_build(&rq, &m.params, oc.weight_decay, &q)) != NB_OK) goto fail;
    m.qat = q;
    nb_paramset *sets[2] = {&m.params, nb_qat_params(q)};
    if ((st = nb_optim_init(&o, &oc, sets[1] ? 2 : 1, sets)) != NB_OK) goto fail;
    have_optim = 1;
    ids = nb_malloc((size_t)B * T * sizeof *ids);
    tgt = nb_malloc((size_t)B * T * sizeof *tgt);
    int total = c->warmup + c->steps;
    times = nb_malloc((size_t)c->steps * (6 + 2 * NB_BENCH_MAX_OPS) * sizeof *times);
    if (!ids || !tgt || !times) {
        st = nb_fail(NB_ENOMEM, "bench: batch buffers");
        goto fail;
    }
    double *step_t = times, *fwd_t = times + c->steps, *bwd_t = fwd_t + c->steps, *opt_t = bwd_t + c->steps;
    double *fq_t = opt_t + c->steps, *cpu_t = fq_t + c->steps, *opf = cpu_t + c->steps;
    double *opb = opf + (size_t)c->steps * NB_BENCH_MAX_OPS;
    prof p;
    memset(&p, 0, sizeof p);
    if (c->profile) {
        t.trace = prof_trace;
        t.trace_ctx = &p;
    }
    nb_tensor idt = nb_tensor_wrap(ids, NB_I32, 2, (int64_t[]){B, T});
    nb_tensor tgtt = nb_tensor_wrap(tgt, NB_I32, 2, (int64_t[]){B, T});
    nb_rng rng = nb_rng_make(c->seed, 0x62617463ULL /* "batc" */);
    long mallocs0 = 0;
    for (int s = 0; s < total; s++) {
        for (int i = 0; i < B * T; i++) ids[i] = (int32_t)nb_rng_below(&rng, (uint64_t)mc->vocab_size);
        for (int i = 0; i < B * T; i++) tgt[i] = (int32_t)nb_rng_below(&rng, (uint64_t)mc->vocab_size);
        if (s == c->warmup) mallocs0 = a.n_mallocs;
        memset(p.fwd, 0, sizeof p.fwd);
        memset(p.bwd, 0, sizeof p.bwd);
        double c0 = cpu_ms(), t0 = now_ms();
        nb_arena_reset(&a);
        nb_tape_reset(&t);
        nb_qat_begin_step(q, s, NULL);
        nb_tensor *logits, *loss;
        p.t0 = now_ms();
        if ((st = nb_model_forward(&t, &m, &idt, &tgtt, &logits, &loss)) != NB_OK) goto fail;
        prof_close(&p);
        double t1 = now_ms();
        if ((st = nb_backward(&t, loss, NULL)) != NB_OK) goto fail;
        prof_close(&p);
        double t2 = now_ms();
        nb_optim_step(&o, 1e-3f, 1.0f);
        nb_optim_zero_grad(&o);
        double t3 = now_ms(), c3 = cpu_ms();
        if (s == 0) r->first_loss = nb_f32(loss)[0];
        r->last_loss = nb_f32(loss)[0];
        if (s < c->warmup) continue;
        int k = s - c->warmup;
        cpu_t[k] = c3 - c0;
        step_t[k] = t3 - t0, fwd_t[k] = t1 - t0, bwd_t[k] = t2 - t1, opt_t[k] = t3 - t2;
        fq_t[k] = 0;
        for (int j = 0; j < NB_BENCH_MAX_OPS; j++) {
            opf[(size_t)j * c->steps + k] = p.fwd[j];
            opb[(size_t)j * c->steps + k] = p.bwd[j];
            if (j < p.n && is_fq(p.ops[j])) fq_t[k] += p.fwd[j] + p.bwd[j];
        }
    }
    r->arena_mallocs = a.n_mallocs - mallocs0;
    r->arena_peak = a.peak;
    r->step_ms = median(step_t, c->steps);
    r->min_ms = step_t[0]; /* sorted by median() */
    r->cpu_ms = median(cpu_t, c->steps);
    r->fwd_ms = median(fwd_t, c->steps);
    r->bwd_ms = median(bwd_t, c->steps);
    r->opt_ms = median(opt_t, c->steps);
    r->fq_ms = c->profile ? median(fq_t, c->steps) : 0;
    r->tokens_per_s = B * T / (r->step_ms * 1e-3);
    r->gflops = r->flops / (r->step_ms * 1e-3) / 1e9;
    r->n_ops = c->profile ? p.n : 0;
    for (int j = 0; j < r->n_ops; j++) {
        snprintf(r->op_name[j], sizeof r->op_name[j], "%s", p.ops[j]->name);
        r->op_fwd_ms[j] = median(opf + (size_t)j * c->steps, c->steps);
        r->op_bwd_ms[j] = median(opb + (size_t)j * c->steps, c->steps);
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    r->peak_rss_mb = ru.ru_maxrss / 1024.0;
    st = NB_OK;
fail:
    nb_free(times);
    nb_free(ids);
    nb_free(tgt);
    if (have_optim) nb_optim_free(&o);
    nb_qat_free(q);
    nb_tape_free(&t);
    nb_arena_free(&a);
    nb_model_free(&m);
    return st;
}
