/* train.c: the training loop (setup, guarded steps, eval, metrics, checkpoints, resume, sample). */
#include "train.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../core/simd.h"
#include "../data/dataset.h"
#include "../ops/ops.h"
#include "checkpoint.h"
#include "datafree.h"
#include "evaluate.h"
#include "import_llama2c.h"
#include "optim.h"
#include "schedule.h"

/* a loss above DIVERGE_FACTOR x the first loss for DIVERGE_STEPS steps in a row is reported */
#define DIVERGE_FACTOR 3.0f
#define DIVERGE_STEPS 20

typedef struct trainer {
    const nb_recipe *r;
    const nb_train_opts *o;
    nb_train_result *res;
    nb_tokenizer *tok;
    nb_tokens train, val;
    nb_model model;
    int have_model;
    nb_qat *qat;
    nb_model teacher; /* distillation: frozen fp32 teacher (distill.enabled) */
    int have_teacher;
    nb_paramset qstate; /* copy of the quantizer's observer arrays, for checkpoints */
    int have_qstate;
    nb_optim opt;
    int have_opt;
    nb_schedule sched;
    nb_arena arena; /* step lifetime: activations, tape nodes */
    nb_tape tape;
    int have_tape;
    int B, T, accum;
    int32_t *bx, *by; /* (B, T) batch ids and targets, reused every micro-step */
    FILE *metrics;
    int64_t step;     /* optimizer steps done (a skipped step counts) */
    int64_t skipped;
    float first_loss;
    int diverge_run, diverge_reported;
    double t0, train_s;
    int64_t steps_this_run;
    long mallocs_after_2; /* arena heap allocations once two steps ran (-1 before) */
    int64_t saved_step;   /* step of the last checkpoint written by this run (-1: none) */
} trainer;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void say(trainer *tr, int level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void say(trainer *tr, int level, const char *fmt, ...) {
    if (!tr->o->on_message) return;
    char buf[1536];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    tr->o->on_message(tr->o->ud, level, buf);
}

void nb_train_opts_init(nb_train_opts *o) {
    memset(o, 0, sizeof *o);
    o->inject_nan_step = -1;
}

void nb_train_result_free(nb_train_result *res) {
    if (!res) return;
    nb_free(res->sample);
    res->sample = NULL;
}

/* ---- files ---- */

static nb_status mkdirs(const char *path) {
    char buf[2048];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(buf, 0777) != 0 && errno != EEXIST) return nb_fail(NB_EIO, "mkdir %s: %s", buf, strerror(errno));
        *p = '/';
    }
    if (mkdir(buf, 0777) != 0 && errno != EEXIST) return nb_fail(NB_EIO, "mkdir %s: %s", buf, strerror(errno));
    return NB_OK;
}

static int file_exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

/* modification time in ns, -1 when missing */
static int64_t mtime_ns(const char *p) {
    struct stat st;
    if (stat(p, &st) != 0) return -1;
    return (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
}

static int ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

static const char *base_name(const char *p) {
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

/* FNV-1a over the settings that change a prepared dataset */
static uint64_t fnv(uint64_t h, const char *s) {
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 0x100000001b3ULL;
    return (h ^ 0xff) * 0x100000001b3ULL;
}

void nb_train_dataset_path(const nb_recipe *r, const char *text_path, char *buf, size_t n) {
    char frac[32];
    snprintf(frac, sizeof frac, "%.6g", r->data.val_fraction);
    uint64_t h = fnv(fnv(fnv(fnv(0xcbf29ce484222325ULL, text_path), r->data.val), r->data.tokenizer), frac);
    if (!strncmp(r->model.init, "checkpoint:", 11)) h = fnv(h, r->model.init);
    const char *dir = r->data.cache_dir[0] ? r->data.cache_dir : r->out_dir;
    char stem[256];
    snprintf(stem, sizeof stem, "%s", base_name(text_path));
    char *dot = strrchr(stem, '.');
    if (dot && dot != stem) *dot = 0;
    snprintf(buf, n, "%s/%s.%08llx.tokens.h5", dir, stem, (unsigned long long)(h & 0xffffffffULL));
}

/* ---- setup: data ---- */

/* Train and val tokens (and the tokenizer) from the recipe: a prepared .h5 is used as is; text is
   tokenized into a cached .h5 that is reused while newer than its inputs. `tok` (a checkpoint's
   tokenizer) is used for text when given. */
static nb_status load_data(trainer *tr, const nb_tokenizer *tok) {
    const nb_recipe *r = tr->r;
    const char *train = r->data.train, *val = r->data.val;
    char ds[2048];
    if (!train[0])
        return nb_fail(NB_EINVAL, "data.train: no training text given (set data.train, or distill.enabled and "
                                  "distill.data_free to train on text the teacher writes)");
    if (ends_with(train, ".h5")) {
        snprintf(ds, sizeof ds, "%s", train);
    } else {
        nb_train_dataset_path(r, train, ds, sizeof ds);
        const char *dir = r->data.cache_dir[0] ? r->data.cache_dir : r->out_dir;
        NB_TRY(mkdirs(dir));
        int64_t t = mtime_ns(ds);
        int fresh = t >= 0 && t >= mtime_ns(train) && (!val[0] || t >= mtime_ns(val));
        if (!strncmp(r->data.tokenizer, "llama2c:", 8) && t < mtime_ns(r->data.tokenizer + 8)) fresh = 0;
        if (fresh) {
            say(tr, 0, "data: reusing %s", ds);
        } else {
            say(tr, 0, "data: tokenizing %s%s%s -> %s", train, val[0] ? " + " : "", val, ds);
            const char *srcs[1] = {train};
            nb_prepare_opts po = {srcs, 1, val[0] ? val : NULL, r->data.val_fraction, r->data.tokenizer, tok};
            nb_prepare_stats st;
            nb_status s = nb_dataset_prepare(&po, ds, &st);
            if (s != NB_OK) return nb_fail_prefix(s, "data.train %s", train);
            say(tr, 0, "data: %lld train + %lld val tokens, vocab %d (%.1f s)", (long long)st.train_tokens,
                (long long)st.val_tokens, st.vocab, st.seconds);
        }
    }
    NB_TRY(nb_dataset_open_split(ds, "train", &tr->train));
    if (val[0] && ends_with(val, ".h5")) NB_TRY(nb_dataset_open_split(val, "val", &tr->val));
    else NB_TRY(nb_dataset_open_split(ds, "val", &tr->val));
    NB_TRY(nb_dataset_tokenizer(ds, &tr->tok));
    if (tr->train.n < (int64_t)tr->T + 1)
        return nb_fail(NB_EINVAL, "data.train: %lld tokens, fewer than model.seq_len + 1 = %d", (long long)tr->train.n,
                       tr->T + 1);
    if (tr->val.n < 2) say(tr, 1, "data: the validation split is empty; val_loss will not be reported");
    return NB_OK;
}

/* ---- setup: model ---- */

static nb_status build_model(trainer *tr, nb_tokenizer **ckpt_tok) {
    const nb_recipe *r = tr->r;
    const char *init = r->model.init;
    *ckpt_tok = NULL;
    if (!strncmp(init, "llama2c:", 8)) {
        NB_TRY(nb_llama2c_load(init + 8, &tr->model));
        tr->have_model = 1;
        say(tr, 0, "model: imported %s", init + 8);
    } else if (!strncmp(init, "checkpoint:", 11)) {
        nb_ckpt *c = NULL;
        NB_TRY(nb_ckpt_open(init + 11, &c));
        nb_status s = nb_ckpt_load_model(c, &tr->model);
        if (s == NB_OK && nb_ckpt_has_tokenizer(c)) s = nb_ckpt_read_tokenizer(c, ckpt_tok);
        nb_ckpt_close(c);
        if (s != NB_OK) return nb_fail_prefix(s, "model.init");
        tr->have_model = 1;
        say(tr, 0, "model: from checkpoint %s", init + 11);
    } else if (strcmp(init, "random") != 0) {
        return nb_fail(NB_EINVAL, "model.init: expected random, llama2c:PATH or checkpoint:PATH, got '%s'", init);
    }
    return NB_OK;
}

/* random init once the tokenizer (vocabulary) is known */
static nb_status finish_model(trainer *tr) {
    const nb_recipe *r = tr->r;
    int V = nb_tokenizer_vocab(tr->tok);
    if (!tr->have_model) {
        nb_model_config c;
        NB_TRY(nb_model_config_from_recipe(&r->model, V, &c));
        NB_TRY(nb_model_init(&tr->model, &c));
        tr->have_model = 1;
        nb_model_init_random(&tr->model, r->model.init_std, r->seed);
    } else {
        /* imported: the recipe's dropout applies, the file's sizes win */
        tr->model.cfg.dropout = r->model.dropout;
    }
    if (!strncmp(r->model.init, "llama2c:", 8) && nb_tokenizer_kind(tr->tok) != NB_TOK_LLAMA2C)
        return nb_fail(NB_EINVAL, "model.init: an imported llama2.c model needs its own tokenizer: set "
                       "data.tokenizer: llama2c:PATH (its tokenizer.bin), not %s", r->data.tokenizer);
    if (tr->have_model && strncmp(r->model.init, "random", 6) && V != tr->model.cfg.vocab_size)
        return nb_fail(NB_EINVAL, "data.tokenizer has %d tokens but the imported model was trained with %d", V,
                       tr->model.cfg.vocab_size);
    if (V > tr->model.cfg.vocab_size)
        return nb_fail(NB_EINVAL, "data.tokenizer has %d tokens but the model's vocabulary is %d", V,
                       tr->model.cfg.vocab_size);
    if (tr->T > tr->model.cfg.seq_len)
        return nb_fail(NB_EINVAL, "model.seq_len: %d is longer than the imported model's seq_len %d", tr->T,
                       tr->model.cfg.seq_len);
    if (r->optim.decay_embeddings)
        for (int i = 0; i < tr->model.params.n; i++)
            if (tr->model.params.p[i].kind == NB_PARAM_EMBED) tr->model.params.p[i].wd_mult = 1.0f;
    return NB_OK;
}

/* ---- QAT: the policy, its learned parameters (a second optimizer set) and observer state ---- */

/* Builds the policy (NULL when quant.enabled is false) and a paramset mirroring its observer
   arrays so checkpoints store them by name under /quant_state. */
static nb_status qat_setup(trainer *tr) {
    NB_TRY(nb_qat_build(&tr->r->quant, &tr->model.params, tr->r->optim.weight_decay, &tr->qat));
    tr->model.qat = tr->qat;
    if (!tr->qat) return NB_OK;
    int n = nb_qat_state_count(tr->qat);
    if (n == 0) return NB_OK;
    nb_param_spec *specs = nb_calloc((size_t)n, sizeof *specs);
    if (!specs) return nb_fail(NB_ENOMEM, "quantizer state table of %d", n);
    nb_status s = NB_OK;
    for (int i = 0; i < n && s == NB_OK; i++) {
        nb_qat_array a;
        nb_qat_state_get(tr->qat, i, &a);
        if (strlen(a.name) >= sizeof specs[i].name)
            s = nb_fail(NB_EINVAL, "quantizer state name too long: %s", a.name);
        snprintf(specs[i].name, sizeof specs[i].name, "%s", a.name);
        specs[i].ndim = 1;
        specs[i].shape[0] = a.n;
        specs[i].kind = NB_PARAM_QUANT;
    }
    if (s == NB_OK) s = nb_paramset_build(&tr->qstate, n, specs);
    nb_free(specs);
    if (s == NB_OK) tr->have_qstate = 1;
    return s;
}

static void qstate_pull(trainer *tr) {
    for (int i = 0; tr->have_qstate && i < tr->qstate.n; i++) {
        nb_qat_array a;
        nb_qat_state_get(tr->qat, i, &a);
        memcpy(tr->qstate.p[i].t.data, a.data, (size_t)a.n * sizeof(float));
    }
}

static nb_status qstate_push(trainer *tr) {
    for (int i = 0; tr->have_qstate && i < tr->qstate.n; i++)
        NB_TRY(nb_qat_state_set(tr->qat, tr->qstate.p[i].name, tr->qstate.p[i].t.data, nb_numel(&tr->qstate.p[i].t)));
    if (tr->qat) nb_qat_invalidate(tr->qat);
    return NB_OK;
}

static void metrics_event(trainer *tr, const char *event, const char *msg);

static void qat_begin_step(trainer *tr) {
    if (!tr->qat) return;
    nb_qat_events ev;
    memset(&ev, 0, sizeof ev);
    int n = nb_qat_begin_step(tr->qat, (long)tr->step, &ev);
    for (int i = 0; i < n && i < NB_QAT_MAX_EVENTS; i++) {
        metrics_event(tr, "qat", ev.text[i]);
        say(tr, 0, "step %lld: qat: %s", (long long)tr->step, ev.text[i]);
    }
}

/* ---- distillation: a frozen fp32 teacher (a copy of the starting model, or distill.teacher) ---- */

static nb_status distill_setup(trainer *tr) {
    const nb_recipe_distill *d = &tr->r->distill;
    if (!d->enabled) return NB_OK;
    nb_model *t = &tr->teacher;
    if (d->teacher[0]) {
        NB_TRY(nb_model_load_file(d->teacher, t));
        tr->have_teacher = 1;
        if (t->cfg.vocab_size != tr->model.cfg.vocab_size)
            return nb_fail(NB_EINVAL, "distill.teacher %s has a vocabulary of %d, the model %d", d->teacher,
                           t->cfg.vocab_size, tr->model.cfg.vocab_size);
        if (t->cfg.seq_len < tr->T)
            return nb_fail(NB_EINVAL, "distill.teacher %s: seq_len %d is shorter than the training windows (%d)",
                           d->teacher, t->cfg.seq_len, tr->T);
        say(tr, 0, "distill: teacher %s, alpha %g, temperature %g", d->teacher, d->alpha, d->temperature);
    } else {
        /* the model as it starts (before any step; a resumed run still distills from the start) */
        NB_TRY(nb_model_init(t, &tr->model.cfg));
        tr->have_teacher = 1;
        memcpy(t->params.data, tr->model.params.data, (size_t)tr->model.params.numel * sizeof(float));
        say(tr, 0, "distill: teacher = frozen copy of the starting model, alpha %g, temperature %g", d->alpha,
            d->temperature);
    }
    t->cfg.dropout = 0.0f;
    t->qat = NULL;
    return NB_OK;
}

/* loss = alpha CE + (1 - alpha) T^2 KL(teacher || student) on this micro-batch; the teacher's
   forward is not recorded (no gradient, no tape nodes). */
static nb_status distill_loss(trainer *tr, const nb_tensor *x, nb_tensor *logits, nb_tensor **loss) {
    const nb_recipe_distill *d = &tr->r->distill;
    int rec = nb_tape_grad(&tr->tape, 0), training = tr->tape.training;
    tr->tape.training = 0;
    nb_tensor *tl = NULL;
    nb_status s = nb_model_forward(&tr->tape, &tr->teacher, x, NULL, &tl, NULL);
    nb_tape_grad(&tr->tape, rec);
    tr->tape.training = training;
    if (s != NB_OK) return nb_fail_prefix(s, "distill: teacher forward");
    nb_tensor *kl = nb_kl_div(&tr->tape, logits, tl, d->temperature);
    *loss = nb_add(&tr->tape, nb_scale(&tr->tape, *loss, d->alpha), nb_scale(&tr->tape, kl, 1.0f - d->alpha));
    return nb_tape_status(&tr->tape);
}

/* ---- distill.data_free: the teacher writes the training text (train/datafree.h) ---- */

/* Tokenizer (the checkpoint's, else data.tokenizer) and the validation split (data.val, text or
   .h5); the train split comes from the teacher once it exists (datafree_setup). */
static nb_status datafree_load(trainer *tr, nb_tokenizer **ckpt_tok) {
    const nb_recipe *r = tr->r;
    if (*ckpt_tok) {
        tr->tok = *ckpt_tok; /* taken over */
        *ckpt_tok = NULL;
    } else if (!strcmp(r->data.tokenizer, "char"))
        return nb_fail(NB_EINVAL, "data.tokenizer: char needs a corpus; with distill.data_free use byte, "
                                  "llama2c:PATH or a checkpoint that stores its tokenizer");
    else NB_TRY(nb_tokenizer_from_spec(r->data.tokenizer, NULL, 0, &tr->tok));
    if (r->data.val[0]) {
        nb_status s = nb_tokens_load(r->data.val, tr->tok, "val", &tr->val);
        if (s != NB_OK) return nb_fail_prefix(s, "data.val");
        say(tr, 0, "data: validation %s (%lld tokens)", r->data.val, (long long)tr->val.n);
    }
    if (tr->val.n < 2) say(tr, 1, "data: no validation text (data.val); val_loss will not be reported");
    return NB_OK;
}

static void datafree_progress(void *ud, int64_t done, int64_t total, double tps, double eta) {
    trainer *tr = ud;
    if (!tr->o->on_status) return;
    char line[256];
    snprintf(line, sizeof line, "generating: %lld/%lld sequences | %.0f tok/s | ETA %.0fs", (long long)done,
             (long long)total, tps, eta);
    tr->o->on_status(tr->o->ud, line);
}

/* The generated set in out_dir (reused when its settings and teacher match) becomes tr->train. */
static nb_status datafree_setup(trainer *tr) {
    const nb_recipe *r = tr->r;
    const nb_recipe_distill *d = &r->distill;
    if (!d->data_free) return NB_OK;
    if (!tr->have_teacher) return nb_fail(NB_EINVAL, "distill.data_free: needs distill.enabled: true (a teacher)");
    nb_datafree_opts o;
    memset(&o, 0, sizeof o);
    o.n_seq = d->gen_sequences;
    o.len = d->gen_length ? d->gen_length : tr->T + 1;
    if (o.len > tr->teacher.cfg.seq_len) {
        if (d->gen_length)
            return nb_fail(NB_EINVAL, "distill.gen_length: %d is longer than the teacher's seq_len %d", d->gen_length,
                           tr->teacher.cfg.seq_len);
        o.len = tr->teacher.cfg.seq_len;
    }
    if ((int64_t)o.n_seq * o.len < tr->T + 1)
        return nb_fail(NB_EINVAL, "distill.gen_sequences x gen_length = %d x %d tokens, fewer than a training window "
                       "(%d + 1)", o.n_seq, o.len, tr->T);
    o.temperature = d->gen_temperature;
    o.top_p = d->gen_top_p;
    o.greedy = d->gen_greedy_tokens;
    o.random_start = !strcmp(d->gen_start, "random");
    o.seed = r->seed;
    o.stop = tr->o->stop;
    o.ud = tr;
    o.on_progress = datafree_progress;
    char path[2048];
    snprintf(path, sizeof path, "%s/%s", r->out_dir, NB_DATAFREE_FILE);
    say(tr, 0, "data: distill.data_free: %d sequences x %d tokens from the teacher -> %s", o.n_seq, o.len, path);
    double t = now_s();
    int reused = 0;
    nb_status s = nb_datafree_prepare(path, &tr->teacher, tr->tok, &o, &tr->train, &reused);
    if (s != NB_OK) return s == NB_EINTR ? s : nb_fail_prefix(s, "distill.data_free");
    if (reused) say(tr, 0, "data: reusing %s (same settings and teacher)", path);
    else say(tr, 0, "data: generated %lld tokens in %.1f s", (long long)tr->train.n, now_s() - t);
    return NB_OK;
}

/* ---- metrics.jsonl ---- */

static void json_str(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
        else if (c == '\n') fputs("\\n", f);
        else if (c < 0x20) fprintf(f, "\\u%04x", c);
        else fputc(c, f);
    }
    fputc('"', f);
}

static void json_num(FILE *f, const char *key, double v) {
    if (isfinite(v)) fprintf(f, ", \"%s\": %.6g", key, v);
    else fprintf(f, ", \"%s\": null", key);
}

static void metrics_event(trainer *tr, const char *event, const char *msg) {
    if (!tr->metrics) return;
    fprintf(tr->metrics, "{\"step\": %lld, \"event\": ", (long long)tr->step);
    json_str(tr->metrics, event);
    if (msg) {
        fputs(", \"message\": ", tr->metrics);
        json_str(tr->metrics, msg);
    }
    fputs("}\n", tr->metrics);
    fflush(tr->metrics);
}

/* Opens out_dir/metrics.jsonl for appending; on resume first drops lines past the resumed step so
   the file reads as if the run had not been interrupted. */
static nb_status open_metrics(trainer *tr) {
    char path[2048];
    snprintf(path, sizeof path, "%s/metrics.jsonl", tr->r->out_dir);
    if (tr->step == 0) {
        tr->metrics = fopen(path, "w");
    } else {
        FILE *in = fopen(path, "r");
        char tmp[2100];
        snprintf(tmp, sizeof tmp, "%s.tmp", path);
        FILE *out = fopen(tmp, "w");
        if (!out) {
            if (in) fclose(in);
            return nb_fail(NB_EIO, "open %s: %s", tmp, strerror(errno));
        }
        char line[8192];
        while (in && fgets(line, sizeof line, in)) {
            const char *p = strstr(line, "\"step\":");
            long long st = p ? strtoll(p + 7, NULL, 10) : 0;
            if (st <= tr->step) fputs(line, out);
        }
        if (in) fclose(in);
        if (fclose(out) != 0 || rename(tmp, path) != 0) return nb_fail(NB_EIO, "write %s: %s", path, strerror(errno));
        tr->metrics = fopen(path, "a");
    }
    if (!tr->metrics) return nb_fail(NB_EIO, "open %s: %s", path, strerror(errno));
    return NB_OK;
}

/* ---- checkpoints ---- */

static int64_t ckpt_step_of(const char *name) {
    if (strncmp(name, "ckpt-", 5) || !ends_with(name, ".h5")) return -1;
    char *end;
    long long v = strtoll(name + 5, &end, 10);
    return (end != name + 5 && !strcmp(end, ".h5") && v >= 0) ? v : -1;
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Temp files of checkpoint writes killed half-way (NAME.h5.tmp-PID whose process is gone). */
static void remove_stale_temps(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        const char *t = strstr(e->d_name, ".h5.tmp-");
        if (!t) continue;
        char *end;
        long pid = strtol(t + 8, &end, 10);
        if (*end || pid <= 0 || (kill((pid_t)pid, 0) != 0 && errno == ESRCH) || pid == (long)getpid()) {
            char p[2048];
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            unlink(p);
        }
    }
    closedir(d);
}

/* delete all but the newest keep_last ckpt-STEP.h5 */
static void prune(trainer *tr) {
    if (tr->r->keep_last <= 0) return;
    DIR *d = opendir(tr->r->out_dir);
    if (!d) return;
    int64_t steps[4096];
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < 4096) {
        int64_t s = ckpt_step_of(e->d_name);
        if (s >= 0) steps[n++] = s;
    }
    closedir(d);
    qsort(steps, (size_t)n, sizeof *steps, cmp_i64);
    for (int i = 0; i < n - tr->r->keep_last; i++) {
        char p[2048];
        snprintf(p, sizeof p, "%s/ckpt-%lld.h5", tr->r->out_dir, (long long)steps[i]);
        unlink(p);
    }
}

static nb_status save_ckpt(trainer *tr) {
    const nb_recipe *r = tr->r;
    if (tr->saved_step == tr->step) return NB_OK; /* already on disk */
    char path[2048], latest[2048], tmp[2100];
    snprintf(path, sizeof path, "%s/ckpt-%lld.h5", r->out_dir, (long long)tr->step);
    snprintf(latest, sizeof latest, "%s/latest.h5", r->out_dir);
    nb_ckpt_contents c;
    memset(&c, 0, sizeof c);
    c.config = tr->model.cfg;
    c.params = &tr->model.params;
    c.step = tr->step;
    c.sets[c.n_sets++] = (nb_ckpt_set){"optim.m", &tr->opt.m[0]};
    if (tr->opt.cfg.kind == NB_OPTIM_ADAMW) c.sets[c.n_sets++] = (nb_ckpt_set){"optim.v", &tr->opt.v[0]};
    if (tr->opt.n_sets > 1) {
        /* quantizer: learned scales (+ their optimizer state) and observer ranges */
        c.sets[c.n_sets++] = (nb_ckpt_set){"quant", tr->opt.sets[1]};
        c.sets[c.n_sets++] = (nb_ckpt_set){"optim.m_quant", &tr->opt.m[1]};
        if (tr->opt.cfg.kind == NB_OPTIM_ADAMW) c.sets[c.n_sets++] = (nb_ckpt_set){"optim.v_quant", &tr->opt.v[1]};
    }
    if (tr->have_qstate) {
        qstate_pull(tr);
        c.sets[c.n_sets++] = (nb_ckpt_set){"quant_state", &tr->qstate};
    }
    /* window draws and dropout masks are functions of (seed, step): the counters say where we are */
    uint64_t rows = (uint64_t)tr->step * (uint64_t)tr->accum * (uint64_t)tr->B;
    c.rngs[c.n_rngs++] = (nb_ckpt_rng){"data", {r->seed, NB_DATA_RNG_STREAM, rows}};
    c.rngs[c.n_rngs++] = (nb_ckpt_rng){"dropout", {r->seed, NB_RNG_STREAM_DROPOUT,
                                                   (uint64_t)tr->step * (uint64_t)tr->accum << 32}};
    c.recipe = r->text;
    c.tokenizer = tr->tok;
    char optim_step[32], skipped[32], first[32];
    snprintf(optim_step, sizeof optim_step, "%lld", (long long)tr->opt.step);
    snprintf(skipped, sizeof skipped, "%lld", (long long)tr->skipped);
    snprintf(first, sizeof first, "%.9g", tr->first_loss);
    c.attrs[c.n_attrs++] = (nb_ckpt_attr){"optim_step", optim_step};
    c.attrs[c.n_attrs++] = (nb_ckpt_attr){"skipped", skipped};
    c.attrs[c.n_attrs++] = (nb_ckpt_attr){"first_loss", first};
    c.attrs[c.n_attrs++] = (nb_ckpt_attr){"optim", r->optim.name};
    nb_status st = nb_ckpt_save(path, &c);
    if (st != NB_OK) /* disk full / write error: the previous checkpoints are untouched; stop */
        return nb_fail_prefix(st, "checkpoint at step %lld failed (previous checkpoint %s kept, run stopped)",
                              (long long)tr->step, tr->res->ckpt[0] ? tr->res->ckpt : "(none in this run)");
    /* latest.h5: a second name for the same complete file (hard link + atomic rename) */
    snprintf(tmp, sizeof tmp, "%s.tmp-%d", latest, (int)getpid());
    unlink(tmp);
    if (link(path, tmp) != 0 || rename(tmp, latest) != 0) {
        unlink(tmp);
        NB_TRY(nb_ckpt_save(latest, &c)); /* no hard links here: write it again */
    }
    snprintf(tr->res->ckpt, sizeof tr->res->ckpt, "%s", path);
    metrics_event(tr, "checkpoint", path);
    tr->saved_step = tr->step;
    prune(tr);
    return NB_OK;
}

static long long attr_ll(nb_ckpt *c, const char *key, long long dflt) {
    char *v = NULL;
    if (nb_ckpt_read_attr(c, key, &v) != NB_OK || !v) return dflt;
    long long x = strtoll(v, NULL, 10);
    nb_free(v);
    return x;
}

/* resume: parameters, optimizer state, step and counters from out_dir/latest.h5 */
static nb_status resume(trainer *tr) {
    char path[2048];
    snprintf(path, sizeof path, "%s/latest.h5", tr->r->out_dir);
    if (!file_exists(path)) {
        say(tr, 0, "resume: no %s yet, starting from step 0", path);
        return NB_OK;
    }
    nb_ckpt *c = NULL;
    NB_TRY(nb_ckpt_open(path, &c));
    const nb_model_config *fc = nb_ckpt_config(c), *mc = &tr->model.cfg;
    nb_status s = NB_OK;
    if (fc->dim != mc->dim || fc->n_layers != mc->n_layers || fc->n_heads != mc->n_heads ||
        fc->n_kv_heads != mc->n_kv_heads || fc->hidden_dim != mc->hidden_dim || fc->vocab_size != mc->vocab_size ||
        fc->tied != mc->tied)
        s = nb_fail(NB_EINVAL, "resume: %s holds a different model (dim %d, %d layers, vocab %d) than the recipe "
                    "(dim %d, %d layers, vocab %d)", path, fc->dim, fc->n_layers, fc->vocab_size, mc->dim,
                    mc->n_layers, mc->vocab_size);
    if (s == NB_OK) s = nb_ckpt_read_params(c, &tr->model.params);
    if (s == NB_OK) s = nb_ckpt_read_set(c, "optim.m", &tr->opt.m[0]);
    if (s == NB_OK && tr->opt.cfg.kind == NB_OPTIM_ADAMW) s = nb_ckpt_read_set(c, "optim.v", &tr->opt.v[0]);
    if (s == NB_OK && tr->opt.n_sets > 1) {
        if (!nb_ckpt_has_set(c, "quant"))
            s = nb_fail(NB_EINVAL, "resume: %s has no quantizer state but the recipe enables quant", path);
        if (s == NB_OK) s = nb_ckpt_read_set(c, "quant", tr->opt.sets[1]);
        if (s == NB_OK) s = nb_ckpt_read_set(c, "optim.m_quant", &tr->opt.m[1]);
        if (s == NB_OK && tr->opt.cfg.kind == NB_OPTIM_ADAMW) s = nb_ckpt_read_set(c, "optim.v_quant", &tr->opt.v[1]);
    }
    if (s == NB_OK && tr->have_qstate) {
        s = nb_ckpt_read_set(c, "quant_state", &tr->qstate);
        if (s == NB_OK) s = qstate_push(tr);
    }
    if (s == NB_OK) {
        tr->step = nb_ckpt_step(c);
        tr->opt.step = attr_ll(c, "optim_step", tr->step);
        tr->skipped = attr_ll(c, "skipped", 0);
        char *v = NULL;
        if (nb_ckpt_read_attr(c, "first_loss", &v) == NB_OK && v) tr->first_loss = strtof(v, NULL);
        nb_free(v);
        if (tr->step > tr->r->steps)
            s = nb_fail(NB_EINVAL, "resume: %s is at step %lld, past the recipe's steps %d", path,
                        (long long)tr->step, tr->r->steps);
    }
    nb_ckpt_close(c);
    if (s != NB_OK) return s;
    say(tr, 0, "resume: continuing from %s at step %lld", path, (long long)tr->step);
    return NB_OK;
}

/* ---- one optimizer step ---- */

static nb_status train_step(trainer *tr, float lr, float *loss_out, double *norm_out) {
    const nb_recipe *r = tr->r;
    double loss_sum = 0.0;
    nb_paramset *sets[2] = {&tr->model.params, nb_qat_params(tr->qat)};
    const int n_sets = sets[1] ? 2 : 1;
    qat_begin_step(tr);
    for (int micro = 0; micro < tr->accum; micro++) {
        int64_t batch = tr->step * tr->accum + micro;
        nb_arena_reset(&tr->arena);
        nb_tape_reset(&tr->tape);
        tr->tape.training = r->model.dropout > 0.0f;
        tr->tape.rng = nb_rng_make(r->seed, NB_RNG_STREAM_DROPOUT);
        tr->tape.rng.counter = (uint64_t)batch << 32;
        NB_TRY(nb_tokens_batch(&tr->train, r->seed, batch, tr->B, tr->T, tr->bx, tr->by));
        int64_t shape[2] = {tr->B, tr->T};
        nb_tensor x = nb_tensor_wrap(tr->bx, NB_I32, 2, shape);
        nb_tensor y = nb_tensor_wrap(tr->by, NB_I32, 2, shape);
        nb_tensor *logits = NULL, *loss = NULL;
        nb_status s = nb_model_forward(&tr->tape, &tr->model, &x, &y, &logits, &loss);
        if (s == NB_OK && tr->have_teacher) s = distill_loss(tr, &x, logits, &loss);
        if (s != NB_OK) return s == NB_ENAN ? nb_fail_prefix(s, "forward") : s;
        float l = nb_f32(loss)[0];
        if (!isfinite(l)) {
            /* name a parameter when one went bad, else the loss itself */
            if (nb_paramsets_check_finite(sets, n_sets, 0) != NB_OK) return NB_ENAN;
            return nb_fail(NB_ENAN, "loss is %s (micro-batch %d)", isnan(l) ? "nan" : "inf", micro);
        }
        NB_TRY(nb_backward(&tr->tape, loss, NULL));
        loss_sum += l;
    }
    if (tr->step == tr->o->inject_nan_step) tr->model.params.grad[0] = NAN;
    double norm = 0.0;
    NB_TRY(nb_optim_grad_norm(&tr->opt, 1.0f / (float)tr->accum, &norm));
    float gs = nb_optim_clip_scale(norm, r->optim.grad_clip) / (float)tr->accum;
    nb_optim_step(&tr->opt, lr, gs);
    nb_optim_zero_grad(&tr->opt);
    NB_TRY(nb_qat_end_step(tr->qat, lr)); /* oscillation tracking / freezing / dampening */
    *loss_out = (float)(loss_sum / tr->accum);
    *norm_out = norm;
    return NB_OK;
}

/* validation loss: eval_batches x B evenly spaced windows, or the whole split (always at the end) */
static nb_status evaluate(trainer *tr, int whole, float *val) {
    *val = NAN;
    if (tr->val.n < 2) return NB_OK;
    int64_t windows = !whole && tr->r->eval_batches > 0 ? (int64_t)tr->r->eval_batches * tr->B : 0;
    double loss;
    int64_t n;
    NB_TRY(nb_eval_tokens(&tr->tape, &tr->model, tr->val.ids, tr->val.n, tr->B, tr->T, windows, &loss, &n));
    *val = (float)loss;
    return NB_OK;
}

/* ---- the run ---- */

static nb_status setup(trainer *tr) {
    const nb_recipe *r = tr->r;
    tr->B = r->data.batch_size;
    tr->T = r->model.seq_len;
    tr->accum = r->optim.grad_accum > 0 ? r->optim.grad_accum : 1;
    if (r->threads > 0) nb_threads_set(r->threads);
    NB_TRY(mkdirs(r->out_dir));
    remove_stale_temps(r->out_dir);
    nb_tokenizer *ckpt_tok = NULL;
    NB_TRY(build_model(tr, &ckpt_tok));
    if (tr->have_model && tr->T > tr->model.cfg.seq_len) {
        say(tr, 0, "model: training windows of %d tokens (the model's seq_len)", tr->model.cfg.seq_len);
        tr->T = tr->model.cfg.seq_len;
    }
    nb_status s = r->distill.data_free ? datafree_load(tr, &ckpt_tok) : load_data(tr, ckpt_tok);
    nb_tokenizer_free(ckpt_tok);
    NB_TRY(s);
    NB_TRY(finish_model(tr));
    tr->res->n_params = nb_model_numel(&tr->model);
    NB_TRY(qat_setup(tr));
    NB_TRY(distill_setup(tr));
    NB_TRY(datafree_setup(tr));

    nb_optim_kind kind;
    NB_TRY(nb_optim_kind_parse(r->optim.name, &kind));
    nb_optim_config oc = nb_optim_config_default(kind);
    oc.beta1 = r->optim.beta1;
    oc.beta2 = r->optim.beta2;
    oc.eps = r->optim.eps;
    oc.weight_decay = r->optim.weight_decay;
    oc.momentum = r->optim.momentum;
    nb_paramset *sets[2] = {&tr->model.params, nb_qat_params(tr->qat)};
    NB_TRY(nb_optim_init(&tr->opt, &oc, sets[1] ? 2 : 1, sets));
    tr->have_opt = 1;
    NB_TRY(nb_sched_kind_parse(r->schedule.kind, &tr->sched.kind));
    tr->sched.lr = r->optim.lr;
    tr->sched.min_lr = r->optim.min_lr;
    tr->sched.warmup = r->schedule.warmup_steps;
    tr->sched.total = r->steps;

    nb_arena_init(&tr->arena, (size_t)1 << 20);
    nb_tape_init(&tr->tape, &tr->arena);
    tr->have_tape = 1;
    tr->bx = nb_malloc((size_t)tr->B * tr->T * sizeof(int32_t));
    tr->by = nb_malloc((size_t)tr->B * tr->T * sizeof(int32_t));
    if (!tr->bx || !tr->by) return nb_fail(NB_ENOMEM, "batch buffers (%d, %d)", tr->B, tr->T);
    tr->first_loss = NAN;
    if (r->resume) NB_TRY(resume(tr));
    NB_TRY(open_metrics(tr));
    char cfg[512];
    say(tr, 0, "model: %lld parameters %s", (long long)tr->res->n_params,
        nb_model_config_json(&tr->model.cfg, cfg, sizeof cfg));
    say(tr, 0, "train: %d steps x %d x %d x %d tokens, %s lr %g, %d threads, simd %s", r->steps, tr->accum, tr->B,
        tr->T, r->optim.name, r->optim.lr, nb_threads_get(), nb_simd_name(nb_simd_active()));
    return NB_OK;
}

static void teardown(trainer *tr) {
    if (tr->metrics) fclose(tr->metrics);
    nb_free(tr->bx);
    nb_free(tr->by);
    if (tr->have_tape) {
        nb_tape_free(&tr->tape);
        nb_arena_free(&tr->arena);
    }
    if (tr->have_opt) nb_optim_free(&tr->opt);
    if (tr->have_qstate) nb_paramset_free(&tr->qstate);
    nb_qat_free(tr->qat);
    if (tr->have_model) nb_model_free(&tr->model);
    if (tr->have_teacher) nb_model_free(&tr->teacher);
    nb_tokenizer_free(tr->tok);
    nb_tokens_free(&tr->train);
    nb_tokens_free(&tr->val);
}

/* after a non-finite step: skip it or stop with a checkpoint of the last good state */
static nb_status on_nan(trainer *tr, int64_t step0) {
    char msg[1024];
    snprintf(msg, sizeof msg, "step %lld: %s", (long long)step0 + 1, nb_errmsg());
    nb_optim_zero_grad(&tr->opt);
    int params_ok = nb_paramsets_check_finite(tr->opt.sets, tr->opt.n_sets, 0) == NB_OK;
    if (!strcmp(tr->r->on_nan, "skip")) {
        tr->skipped++;
        tr->step++;
        metrics_event(tr, "nan_skip", msg);
        say(tr, 1, "%s: skipped (%lld so far)", msg, (long long)tr->skipped);
        if (params_ok && (tr->r->max_skips <= 0 || tr->skipped < tr->r->max_skips)) return NB_OK;
        snprintf(msg + strlen(msg), sizeof msg - strlen(msg), "; %lld steps skipped, max_skips %d",
                 (long long)tr->skipped, tr->r->max_skips);
        metrics_event(tr, "nan_stop", msg);
    } else {
        metrics_event(tr, "nan_stop", msg);
    }
    if (params_ok && save_ckpt(tr) == NB_OK)
        return nb_fail(NB_ENAN, "%s; stopped, last good state saved to %s", msg, tr->res->ckpt);
    return nb_fail(NB_ENAN, "%s; stopped (parameters are not finite: the last periodic checkpoint is the good state)",
                   msg);
}

static void progress(trainer *tr, float loss, float val, float lr, double norm, int logged) {
    const nb_recipe *r = tr->r;
    nb_train_progress p;
    p.step = tr->step;
    p.total = r->steps;
    p.loss = loss;
    p.val_loss = val;
    p.lr = lr;
    p.grad_norm = (float)norm;
    double tokens = (double)tr->steps_this_run * tr->accum * tr->B * tr->T;
    p.tokens_per_s = tr->train_s > 0 ? tokens / tr->train_s : 0.0;
    p.elapsed_s = now_s() - tr->t0;
    p.eta_s = tr->steps_this_run > 0 ? (now_s() - tr->t0) / tr->steps_this_run * (double)(r->steps - tr->step) : 0.0;
    p.logged = logged;
    if (logged && tr->metrics) {
        FILE *f = tr->metrics;
        fprintf(f, "{\"step\": %lld", (long long)tr->step);
        json_num(f, "loss", loss);
        json_num(f, "lr", lr);
        json_num(f, "tokens_per_s", p.tokens_per_s);
        json_num(f, "grad_norm", norm);
        json_num(f, "elapsed_s", p.elapsed_s);
        if (!isnan(val)) json_num(f, "val_loss", val);
        nb_qat_osc_stats os;
        nb_qat_osc_get(tr->qat, &os);
        if (os.active && os.tracked > 0) { /* weight oscillations at this step (fractions of the tracked) */
            double n = (double)os.tracked;
            json_num(f, "osc_flip_frac", os.flips / n);
            json_num(f, "osc_frac", os.oscillations / n);
            json_num(f, "osc_freq_mean", os.freq_sum / n);
            json_num(f, "osc_frozen_frac", os.frozen / n);
        }
        fputs("}\n", f);
        fflush(f);
    }
    if (tr->o->on_step) tr->o->on_step(tr->o->ud, &p);
}

static void check_divergence(trainer *tr, float loss) {
    if (isnan(tr->first_loss)) tr->first_loss = loss;
    if (loss > DIVERGE_FACTOR * tr->first_loss) tr->diverge_run++;
    else tr->diverge_run = 0;
    if (tr->diverge_run == DIVERGE_STEPS && !tr->diverge_reported) {
        char msg[256];
        snprintf(msg, sizeof msg, "loss %.4g has stayed above %.0fx the first loss %.4g for %d steps: "
                 "training is diverging (lower optim.lr or set optim.grad_clip)", loss, DIVERGE_FACTOR,
                 tr->first_loss, DIVERGE_STEPS);
        metrics_event(tr, "diverging", msg);
        say(tr, 1, "step %lld: %s", (long long)tr->step, msg);
        tr->diverge_reported = 1;
    }
}

static nb_status run(trainer *tr) {
    const nb_recipe *r = tr->r;
    nb_train_result *res = tr->res;
    NB_TRY(setup(tr));
    res->start_step = tr->step;
    float loss = NAN, val = NAN, lr = 0.0f;
    int evaluated_at_end = 0, saved_at_end = 0;
    while (tr->step < r->steps) {
        if (tr->o->stop && *tr->o->stop) {
            NB_TRY(save_ckpt(tr));
            return nb_fail(NB_EINTR, "interrupted at step %lld; checkpoint %s", (long long)tr->step, res->ckpt);
        }
        if (tr->o->stop_at > 0 && tr->step >= tr->o->stop_at) break;
        lr = nb_schedule_lr(&tr->sched, tr->step);
        double t = now_s(), norm = 0.0;
        int64_t step0 = tr->step;
        nb_status s = train_step(tr, lr, &loss, &norm);
        tr->train_s += now_s() - t;
        tr->steps_this_run++;
        if (s == NB_ENAN) {
            NB_TRY(on_nan(tr, step0));
            continue;
        }
        if (s != NB_OK) return nb_fail_prefix(s, "step %lld", (long long)step0 + 1);
        tr->step++;
        if (tr->steps_this_run == 2) tr->mallocs_after_2 = tr->arena.n_mallocs;
        res->train_loss = loss;
        if (isnan(res->first_loss)) res->first_loss = loss;
        check_divergence(tr, loss);
        int last = tr->step == r->steps;
        int do_eval = (r->eval_every > 0 && tr->step % r->eval_every == 0) || last;
        val = NAN;
        if (do_eval) {
            NB_TRY(evaluate(tr, last, &val));
            if (!isnan(val)) res->val_loss = val;
            evaluated_at_end = last;
        }
        int logged = do_eval || last || (r->log_every > 0 && tr->step % r->log_every == 0);
        progress(tr, loss, val, lr, norm, logged);
        if ((r->ckpt_every > 0 && tr->step % r->ckpt_every == 0) || last) {
            NB_TRY(save_ckpt(tr));
            saved_at_end = last;
        }
    }
    res->steps_done = tr->step;
    if (tr->step < r->steps || !saved_at_end) {
        /* stop_at, or resumed at the very end */
        NB_TRY(save_ckpt(tr));
        if (tr->step < r->steps) return NB_OK;
    }
    if (!evaluated_at_end) {
        NB_TRY(evaluate(tr, 1, &val));
        if (!isnan(val)) res->val_loss = val;
    }
    if (r->sample_tokens > 0) {
        nb_generate_opts g = {r->sample_tokens, 0.8f, 0.95f, r->seed, 1};
        NB_TRY(nb_generate(&tr->model, tr->tok, r->sample_prompt, &g, NULL, NULL, &res->sample));
    }
    return NB_OK;
}

nb_status nb_train(const nb_recipe *r, const nb_train_opts *o, nb_train_result *res) {
    trainer tr;
    memset(&tr, 0, sizeof tr);
    memset(res, 0, sizeof *res);
    res->train_loss = res->val_loss = res->first_loss = NAN;
    nb_train_opts dflt;
    nb_train_opts_init(&dflt);
    tr.r = r;
    tr.o = o ? o : &dflt;
    tr.res = res;
    tr.t0 = now_s();
    tr.mallocs_after_2 = -1;
    tr.saved_step = -1;
    nb_status s = run(&tr);
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", nb_errmsg());
    res->steps_done = tr.step;
    res->skipped = tr.skipped;
    res->wall_s = now_s() - tr.t0;
    res->train_s = tr.train_s;
    res->step_mallocs = tr.mallocs_after_2 >= 0 && tr.have_tape ? tr.arena.n_mallocs - tr.mallocs_after_2 : 0;
    res->tokens_per_s =
        tr.train_s > 0 ? (double)tr.steps_this_run * tr.accum * tr.B * tr.T / tr.train_s : 0.0;
    teardown(&tr);
    if (s != NB_OK) nb_fail(s, "%s", msg);
    return s;
}
