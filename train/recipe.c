/* recipe.c: YAML recipes (libyaml) driven by one key table: defaults, parsing, overrides, validation,
   the resolved YAML and the Markdown key reference all read the same rows. */
#include "recipe.h"

#include <errno.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <yaml.h>

/* ---------------------------------------------------------------------------------------------- */
/* The key table                                                                                  */

typedef enum { T_INT, T_FLOAT, T_BOOL, T_STR, T_ENUM, T_U64, T_RULES } ktype;

enum {
    F_ZERO_OK = 1,  /* int: 0 is allowed besides min..max (0 = off) */
    F_OPEN_MIN = 2, /* float: min itself is excluded */
    F_OPEN_MAX = 4, /* float: max itself is excluded */
};

#define NOMAX_I ((double)INT_MAX)
#define NOMAX_F HUGE_VAL

typedef struct key {
    const char *path;   /* "model.dim"; for rule keys only the field ("bits") */
    ktype type;
    size_t off, size;   /* field in nb_recipe (rule keys: in nb_qrule) */
    const char *def;    /* default, as YAML text */
    double min, max;    /* numbers: range (inclusive unless F_OPEN_*); NOMAX_* = unbounded */
    int flags;
    const char *values; /* enum: allowed values, '|'-separated ("" may be one of them) */
    const char *help;
    const char *def_act;    /* rule keys: default for activation rules when it differs */
    const char *values_act; /* rule keys: allowed values for activation rules when they differ */
} key;

#define FLD(s, f) offsetof(s, f), sizeof(((s *)0)->f)
#define KI(p, f, d, lo, hi, fl, h) {p, T_INT, FLD(nb_recipe, f), d, lo, hi, fl, NULL, h, NULL, NULL}
#define KF(p, f, d, lo, hi, fl, h) {p, T_FLOAT, FLD(nb_recipe, f), d, lo, hi, fl, NULL, h, NULL, NULL}
#define KB(p, f, d, h) {p, T_BOOL, FLD(nb_recipe, f), d, 0, 1, 0, NULL, h, NULL, NULL}
#define KS(p, f, d, h) {p, T_STR, FLD(nb_recipe, f), d, 0, 0, 0, NULL, h, NULL, NULL}
#define KE(p, f, d, v, h) {p, T_ENUM, FLD(nb_recipe, f), d, 0, 0, 0, v, h, NULL, NULL}
#define KU(p, f, d, h) {p, T_U64, FLD(nb_recipe, f), d, 0, 0, 0, NULL, h, NULL, NULL}
#define KR(p, f, h) {p, T_RULES, FLD(nb_recipe, f), "[]", 0, NB_MAX_QRULES, 0, NULL, h, NULL, NULL}

/* Every key, grouped by section: top-level keys first, then one block per section (the YAML
   printer relies on this order). */
static const key keys[] = {
    KS("name", name, "run", "run name (free text, used in logs)"),
    KS("out_dir", out_dir, "runs/run", "run folder: metrics.jsonl, ckpt-STEP.h5, latest.h5"),
    KU("seed", seed, "1337", "seed of every random draw (init, batches, dropout, sampling)"),
    KI("threads", threads, "0", 0, 1024, 0, "worker threads; 0 = OMP_NUM_THREADS or all cores"),
    KI("steps", steps, "2000", 1, NOMAX_I, 0, "optimizer steps"),
    KI("eval_every", eval_every, "0", 0, NOMAX_I, 0, "evaluate every N steps; 0 = only at the end"),
    KI("eval_batches", eval_batches, "0", 0, NOMAX_I, 0, "batches per evaluation; 0 = whole validation split"),
    KI("log_every", log_every, "10", 1, NOMAX_I, 0, "write a metrics line every N steps"),
    KI("ckpt_every", ckpt_every, "0", 0, NOMAX_I, 0, "checkpoint every N steps; 0 = only at the end"),
    KI("keep_last", keep_last, "3", 0, NOMAX_I, 0, "keep this many ckpt-STEP.h5; 0 = all"),
    KB("resume", resume, "false", "continue from out_dir/latest.h5 if it exists"),
    KE("on_nan", on_nan, "stop", "stop|skip",
       "non-finite loss or gradient: stop (keep the last good checkpoint) or skip the step"),
    KI("max_skips", max_skips, "10", 0, NOMAX_I, 0, "with on_nan: skip, stop after this many skipped steps"),
    KI("sample_tokens", sample_tokens, "0", 0, 1000000, 0, "print a sample of N tokens at the end; 0 = none"),
    KS("sample_prompt", sample_prompt, "", "prompt of that sample"),

    KI("model.dim", model.dim, "128", 2, 65536, 0, "model width C"),
    KI("model.n_layers", model.n_layers, "4", 1, 1024, 0, "transformer blocks L"),
    KI("model.n_heads", model.n_heads, "4", 1, 1024, 0, "attention heads; must divide dim, head dim even"),
    KI("model.n_kv_heads", model.n_kv_heads, "0", 0, 1024, 0, "key/value heads (grouped-query); 0 = n_heads"),
    KI("model.hidden_dim", model.hidden_dim, "0", 0, 1 << 20, 0, "SwiGLU width; 0 = llama2.c rule from dim"),
    KI("model.vocab_size", model.vocab_size, "0", 0, 1 << 24, 0, "vocabulary V; 0 = from the tokenizer"),
    KI("model.seq_len", model.seq_len, "128", 1, 1 << 20, 0, "context length T"),
    KF("model.norm_eps", model.norm_eps, "1e-5", 0, 1, F_OPEN_MIN, "RMSNorm epsilon"),
    KF("model.rope_theta", model.rope_theta, "10000", 0, 1e12, F_OPEN_MIN, "RoPE base frequency"),
    KB("model.tied_embeddings", model.tied_embeddings, "true", "classifier shares the token embedding"),
    KF("model.dropout", model.dropout, "0", 0, 1, F_OPEN_MAX, "dropout probability (training only)"),
    KS("model.init", model.init, "random", "random, llama2c:PATH (llama2.c .bin) or checkpoint:PATH (.h5)"),
    KF("model.init_std", model.init_std, "0.02", 0, 10, 0, "std of the random normal init"),

    KS("data.train", data.train, "", "training text file or prepared .h5 token dataset"),
    KS("data.val", data.val, "", "validation text or .h5; \"\" = tail of data.train"),
    KF("data.val_fraction", data.val_fraction, "0.1", 0, 1, F_OPEN_MAX,
       "share of data.train held out for validation when data.val is \"\""),
    KS("data.tokenizer", data.tokenizer, "byte", "byte, char (vocabulary from the corpus) or llama2c:PATH"),
    KS("data.cache_dir", data.cache_dir, "", "where prepared .h5 datasets go; \"\" = out_dir"),
    KI("data.batch_size", data.batch_size, "16", 1, 65536, 0, "sequences per micro-batch B"),

    KE("optim.name", optim.name, "adamw", "adamw|sgd", "optimizer"),
    KF("optim.lr", optim.lr, "1e-3", 0, 10, 0, "peak learning rate"),
    KF("optim.min_lr", optim.min_lr, "1e-4", 0, 10, 0, "learning rate at the end of the decay"),
    KF("optim.beta1", optim.beta1, "0.9", 0, 1, F_OPEN_MAX, "AdamW first-moment decay"),
    KF("optim.beta2", optim.beta2, "0.95", 0, 1, F_OPEN_MAX, "AdamW second-moment decay"),
    KF("optim.eps", optim.eps, "1e-8", 0, 1, F_OPEN_MIN, "AdamW epsilon"),
    KF("optim.weight_decay", optim.weight_decay, "0.1", 0, 10, 0,
       "decoupled weight decay (matrices only unless decay_embeddings)"),
    KB("optim.decay_embeddings", optim.decay_embeddings, "false", "also decay norms and embeddings"),
    KF("optim.momentum", optim.momentum, "0.9", 0, 1, F_OPEN_MAX, "SGD momentum"),
    KF("optim.grad_clip", optim.grad_clip, "1.0", 0, 1e9, 0, "global gradient-norm clip; 0 = off"),
    KI("optim.grad_accum", optim.grad_accum, "1", 1, 65536, 0, "micro-batches per optimizer step"),

    KE("schedule.kind", schedule.kind, "cosine", "cosine|linear|constant", "decay after warm-up, lr -> min_lr"),
    KI("schedule.warmup_steps", schedule.warmup_steps, "100", 0, NOMAX_I, 0, "linear warm-up from 0 to lr"),

    KB("quant.enabled", quant.enabled, "false", "apply the quantization policy (false = plain fp32 run)"),
    KE("quant.preset", quant.preset, "", "|q8_0|q4_0", "llama.cpp grid the rules come from; \"\" = none"),
    KI("quant.start_step", quant.start_step, "0", 0, NOMAX_I, 0, "weights are fake-quantized from this step"),
    KI("quant.act_start_step", quant.act_start_step, "-1", -1, NOMAX_I, 0,
       "activations from this step; -1 = with the weights"),
    KI("quant.freeze_observers_step", quant.freeze_observers_step, "-1", -1, NOMAX_I, 0,
       "observers stop updating at this step; -1 = never"),
    KI("quant.lambda_start", quant.lambda_start, "0", 0, NOMAX_I, 0,
       "x + lambda (Q(x) - x): lambda ramps 0 -> 1 from this step ..."),
    KI("quant.lambda_end", quant.lambda_end, "0", 0, NOMAX_I, 0, "... to this one (both 0 = no ramp)"),
    KI("quant.anneal_from_bits", quant.anneal_from_bits, "0", 2, 8, F_ZERO_OK,
       "bit-width annealing starts at this width; 0 = off"),
    KI("quant.anneal_start", quant.anneal_start, "0", 0, NOMAX_I, 0, "annealing runs from this step ..."),
    KI("quant.anneal_end", quant.anneal_end, "0", 0, NOMAX_I, 0, "... to this one, ending at each rule's bits"),
    KF("quant.scale_lr_mult", quant.scale_lr_mult, "1", 0, 1e6, 0, "learning-rate multiplier of learned scales"),
    KF("quant.scale_weight_decay", quant.scale_weight_decay, "0", 0, 10, 0, "weight decay of learned scales"),
    KI("quant.lsq_warmup_steps", quant.lsq_warmup_steps, "0", 0, NOMAX_I, 0,
       "learned scales follow their observer for these steps"),
    KB("quant.quantize_embeddings", quant.quantize_embeddings, "false", "rules also apply to the token embedding"),
    KB("quant.quantize_classifier", quant.quantize_classifier, "false", "rules also apply to an untied classifier"),
    KR("quant.weights", quant.weights, "weight rules, first match wins (keys: quant.weights[].*)"),
    KR("quant.activations", quant.acts,
       "rules for the inputs of matching linear weights (keys: quant.activations[].*)"),

    KB("distill.enabled", distill.enabled, "false", "add a distillation loss from a teacher"),
    KS("distill.teacher", distill.teacher, "", "teacher checkpoint; \"\" = frozen copy of the starting model"),
    KF("distill.alpha", distill.alpha, "0.5", 0, 1, 0, "loss = alpha CE + (1 - alpha) T^2 KL(teacher || student)"),
    KF("distill.temperature", distill.temperature, "2", 0, 100, F_OPEN_MIN, "softmax temperature T"),
    KB("distill.data_free", distill.data_free, "false", "the teacher generates the training text itself"),
};
#define N_KEYS ((int)(sizeof keys / sizeof keys[0]))

#define RI(p, f, d, lo, hi, fl, h) {p, T_INT, FLD(nb_qrule, f), d, lo, hi, fl, NULL, h, NULL, NULL}
#define RF(p, f, d, lo, hi, fl, h) {p, T_FLOAT, FLD(nb_qrule, f), d, lo, hi, fl, NULL, h, NULL, NULL}
#define RB(p, f, d, h) {p, T_BOOL, FLD(nb_qrule, f), d, 0, 1, 0, NULL, h, NULL, NULL}
#define RS(p, f, d, h) {p, T_STR, FLD(nb_qrule, f), d, 0, 0, 0, NULL, h, NULL, NULL}
#define RE(p, f, d, v, h, da, va) {p, T_ENUM, FLD(nb_qrule, f), d, 0, 0, 0, v, h, da, va}

/* The keys of one rule (an item of quant.weights or quant.activations). */
static const key rule_keys[] = {
    RS("match", match, "*", "glob on parameter names (* ? [abc]); first matching rule wins"),
    RI("bits", bits, "8", 2, 8, F_ZERO_OK, "grid width; 0 = keep matching tensors in fp32"),
    RB("symmetric", symmetric, "true", "zero point 0 (else asymmetric with a zero point)"),
    RB("restrict_range", restrict_range, "false", "symmetric grid -(2^(b-1)-1)..2^(b-1)-1"),
    RB("ternary", ternary, "false", "weights in {-1, 0, 1} x scale (bits ignored)"),
    RE("granularity", granularity, "channel", "tensor|channel|group",
       "one scale per tensor, output channel or group of group_size inputs (activations: token or tensor)",
       "token", "token|tensor"),
    RI("group_size", group_size, "32", 1, 65536, 0, "inputs per group: 32, 64 or 128 with granularity group"),
    RE("estimator", estimator, "ste", "ste|clipped_ste|lsq|lsq+|pact",
       "gradient estimator; lsq/lsq+ learn the scale (lsq+ also the offset), pact learns a clip (activations)",
       NULL, NULL),
    RE("observer", observer, "minmax", "minmax|ema_minmax|mse|percentile", "how scales are initialised or tracked",
       NULL, NULL),
    RF("percentile", percentile, "99.99", 0, 100, F_OPEN_MIN, "observer percentile: clip at this percentile"),
    RF("ema_decay", ema_decay, "0.99", 0, 1, F_OPEN_MAX, "observer ema_minmax: decay of the running min/max"),
    RE("scale_dtype", scale_dtype, "f32", "f32|f16", "scales stored as f32 or rounded to f16 (llama.cpp)", NULL,
       NULL),
    RE("tail", tail, "error", "error|short_group",
       "row length not a multiple of group_size: error, or a shorter last group", NULL, NULL),
};
#define N_RKEYS ((int)(sizeof rule_keys / sizeof rule_keys[0]))

static const char *const list_path[2] = {"quant.weights", "quant.activations"};

static int *rule_count(nb_recipe *r, int list) { return list ? &r->quant.n_act_rules : &r->quant.n_weight_rules; }
static nb_qrule *rule_array(nb_recipe *r, int list) { return list ? r->quant.acts : r->quant.weights; }
static const char *kdef(const key *k, int act) { return act && k->def_act ? k->def_act : k->def; }
static const char *kvalues(const key *k, int act) { return act && k->values_act ? k->values_act : k->values; }

/* ---------------------------------------------------------------------------------------------- */
/* Locations and messages                                                                         */

/* Where a value came from: a file position, an override, or neither (a default). */
typedef struct loc {
    const char *file;
    int line, col;        /* 1-based; 0 = no position */
    const char *override; /* the "key=value" text, or NULL */
} loc;

typedef struct mark {
    int line, col; /* 1-based position in the file; 0 = not set by the file */
    int ov;        /* 1 + index of the override that set it last; 0 = none */
} mark;

/* Parse state: the recipe being filled, where each key was set (for the cross-key messages of
   validation), and the override currently applied. */
typedef struct ctx {
    nb_recipe *r;
    const char *file;
    const char *text;
    size_t len;
    yaml_document_t *doc;
    char **ovs;
    int cur_ov; /* index of the override being applied, -1 = the file */
    mark km[N_KEYS];
    mark rm[2][NB_MAX_QRULES][N_RKEYS + 1]; /* [N_RKEYS] = the rule itself */
} ctx;

/* "file:line:col", "file", "override 'k=v'" (long overrides shortened). */
static void loc_text(char *buf, size_t n, const loc *at) {
    if (at->override) {
        size_t len = strlen(at->override);
        if (len > 80)
            snprintf(buf, n, "override '%.60s...'", at->override);
        else
            snprintf(buf, n, "override '%s'", at->override);
    } else if (at->line > 0) {
        snprintf(buf, n, "%s:%d:%d", at->file, at->line, at->col);
    } else {
        snprintf(buf, n, "%s", at->file && *at->file ? at->file : "recipe");
    }
}

static nb_status failat(const loc *at, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static nb_status failat(const loc *at, const char *fmt, ...) {
    char where[160], what[800];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    loc_text(where, sizeof where, at);
    return nb_fail(NB_EINVAL, "%s: %s", where, what);
}

static loc node_loc(const ctx *c, const yaml_node_t *n) {
    loc at = {c->file, 0, 0, NULL};
    if (c->cur_ov >= 0)
        at.override = c->ovs[c->cur_ov];
    else if (n) {
        at.line = (int)n->start_mark.line + 1;
        at.col = (int)n->start_mark.column + 1;
    }
    return at;
}

static mark node_mark(const ctx *c, const yaml_node_t *n) {
    mark m = {0, 0, 0};
    if (c->cur_ov >= 0)
        m.ov = c->cur_ov + 1;
    else if (n) {
        m.line = (int)n->start_mark.line + 1;
        m.col = (int)n->start_mark.column + 1;
    }
    return m;
}

static loc mark_loc(const ctx *c, mark m, const char *file) {
    loc at = {file, 0, 0, NULL};
    if (!c) return at;
    if (m.ov)
        at.override = c->ovs[m.ov - 1];
    else {
        at.line = m.line;
        at.col = m.col;
    }
    return at;
}

/* A value as shown in messages: numbers as they are, anything else quoted, long ones cut. */
static void describe(char *buf, size_t n, const char *s, size_t len, int quoted) {
    if (len == 0 && !quoted) {
        snprintf(buf, n, "nothing");
        return;
    }
    int numeric = !quoted && len <= 40;
    for (size_t i = 0; i < len && numeric; i++)
        numeric = strchr("0123456789+-.eE", s[i]) != NULL;
    size_t show = len > 48 ? 45 : len;
    char clean[64];
    for (size_t i = 0; i < show; i++) clean[i] = (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? '?' : s[i];
    clean[show] = 0;
    if (numeric)
        snprintf(buf, n, "%s", clean);
    else if (quoted)
        snprintf(buf, n, "the quoted string \"%s%s\"", clean, show < len ? "..." : "");
    else
        snprintf(buf, n, "'%s%s'", clean, show < len ? "..." : "");
}

/* Edit distance (insert, delete, substitute, swap of neighbours), for "did you mean". */
static int edit_distance(const char *a, size_t na, const char *b, size_t nb) {
    if (na > 63 || nb > 63) return 1000;
    int d[64][64];
    for (size_t i = 0; i <= na; i++) d[i][0] = (int)i;
    for (size_t j = 0; j <= nb; j++) d[0][j] = (int)j;
    for (size_t i = 1; i <= na; i++)
        for (size_t j = 1; j <= nb; j++) {
            int cost = a[i - 1] != b[j - 1];
            int v = d[i - 1][j - 1] + cost;
            if (d[i - 1][j] + 1 < v) v = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < v) v = d[i][j - 1] + 1;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] && d[i - 2][j - 2] + 1 < v)
                v = d[i - 2][j - 2] + 1;
            d[i][j] = v;
        }
    return d[na][nb];
}

/* Is the candidate close enough to suggest? */
static int close_enough(int dist, size_t len) { return dist <= 2 || (size_t)dist * 3 <= len; }

/* ---------------------------------------------------------------------------------------------- */
/* Scalars                                                                                        */

/* Strict integer: optional sign, decimal digits, nothing else, no overflow. */
static int parse_ll(const char *s, size_t len, long long *out) {
    char buf[32];
    if (len == 0 || len >= sizeof buf) return 0;
    for (size_t i = 0; i < len; i++) {
        int digit = s[i] >= '0' && s[i] <= '9';
        if (!digit && !(i == 0 && (s[i] == '+' || s[i] == '-'))) return 0;
    }
    if (len == 1 && (s[0] == '+' || s[0] == '-')) return 0;
    memcpy(buf, s, len);
    buf[len] = 0;
    errno = 0;
    char *end;
    long long v = strtoll(buf, &end, 10);
    if (errno || *end) return 0;
    *out = v;
    return 1;
}

static int parse_u64(const char *s, size_t len, unsigned long long *out) {
    char buf[32];
    if (len == 0 || len >= sizeof buf) return 0;
    size_t start = s[0] == '+';
    if (start == len) return 0;
    for (size_t i = start; i < len; i++)
        if (s[i] < '0' || s[i] > '9') return 0;
    memcpy(buf, s, len);
    buf[len] = 0;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(buf, &end, 10);
    if (errno || *end) return 0;
    *out = v;
    return 1;
}

/* Strict decimal float: [+-] (digits [. digits] | . digits) [e [+-] digits]; finite in float. */
static int parse_float(const char *s, size_t len, double *out) {
    char buf[64];
    if (len == 0 || len >= sizeof buf) return 0;
    size_t i = 0;
    int mant = 0;
    if (s[i] == '+' || s[i] == '-') i++;
    while (i < len && s[i] >= '0' && s[i] <= '9') i++, mant++;
    if (i < len && s[i] == '.') {
        i++;
        while (i < len && s[i] >= '0' && s[i] <= '9') i++, mant++;
    }
    if (!mant) return 0;
    if (i < len && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < len && (s[i] == '+' || s[i] == '-')) i++;
        int ed = 0;
        while (i < len && s[i] >= '0' && s[i] <= '9') i++, ed++;
        if (!ed) return 0;
    }
    if (i != len) return 0;
    memcpy(buf, s, len);
    buf[len] = 0;
    double v = strtod(buf, NULL);
    if (!isfinite(v) || fabs(v) > FLT_MAX) return 0;
    *out = v;
    return 1;
}

/* Valid UTF-8 without overlongs or surrogates (command-line values; YAML text is checked by libyaml). */
static int valid_utf8(const unsigned char *s, size_t len) {
    size_t i = 0;
    while (i < len) {
        unsigned c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        int n = c >= 0xf0 && c <= 0xf4 ? 3 : c >= 0xe0 && c <= 0xef ? 2 : c >= 0xc2 && c <= 0xdf ? 1 : -1;
        if (n < 0 || i + (size_t)n >= len) return 0; /* bad lead byte or cut short */
        unsigned cp = c & (0x3f >> n);
        for (int k = 1; k <= n; k++) {
            if ((s[i + k] & 0xc0) != 0x80) return 0;
            cp = cp << 6 | (s[i + k] & 0x3f);
        }
        if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10ffff)) || (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        i += n + 1;
    }
    return 1;
}

static int is_null(const char *s, size_t len) {
    return len == 0 || (len == 1 && s[0] == '~') ||
           (len == 4 && (!memcmp(s, "null", 4) || !memcmp(s, "Null", 4) || !memcmp(s, "NULL", 4)));
}

/* The allowed values in words: "an integer in 2..8 or 0", "a number in [0, 1)", "one of a, b". */
static void expect_text(char *buf, size_t n, const key *k, int act) {
    switch (k->type) {
    case T_INT:
        if (k->max >= NOMAX_I)
            snprintf(buf, n, "an integer >= %.0f", k->min);
        else
            snprintf(buf, n, "an integer in %.0f..%.0f%s", k->min, k->max, k->flags & F_ZERO_OK ? " or 0" : "");
        break;
    case T_FLOAT: {
        int omin = k->flags & F_OPEN_MIN, omax = k->flags & F_OPEN_MAX;
        if (k->max >= NOMAX_F)
            snprintf(buf, n, "a number %s %g", omin ? ">" : ">=", k->min);
        else
            snprintf(buf, n, "a number in %c%g, %g%c", omin ? '(' : '[', k->min, k->max, omax ? ')' : ']');
        break;
    }
    case T_BOOL: snprintf(buf, n, "true or false"); break;
    case T_U64: snprintf(buf, n, "an integer in 0..18446744073709551615"); break;
    case T_STR: snprintf(buf, n, "text of at most %zu bytes", k->size - 1); break;
    case T_RULES: snprintf(buf, n, "a list of at most %d rules", NB_MAX_QRULES); break;
    case T_ENUM: {
        const char *v = kvalues(k, act);
        size_t o = (size_t)snprintf(buf, n, "one of ");
        while (o < n) {
            const char *bar = strchr(v, '|');
            size_t l = bar ? (size_t)(bar - v) : strlen(v);
            o += (size_t)snprintf(buf + o, n - o, l ? "%.*s%s" : "\"\"%.*s%s", (int)l, v, bar ? ", " : "");
            if (!bar) break;
            v = bar + 1;
        }
        break;
    }
    }
}

static int enum_has(const char *values, const char *s, size_t len) {
    const char *v = values;
    for (;;) {
        const char *bar = strchr(v, '|');
        size_t l = bar ? (size_t)(bar - v) : strlen(v);
        if (l == len && !memcmp(v, s, len)) return 1;
        if (!bar) return 0;
        v = bar + 1;
    }
}

/* Stores one scalar into the field of key k in base (an nb_recipe or an nb_qrule). quoted: the
   YAML text was quoted, so it is a string and never a number or a boolean. */
static nb_status set_scalar(const key *k, int act, void *base, const char *path, const char *s, size_t len, int quoted,
                            const loc *at) {
    char *f = (char *)base + k->off;
    char got[80], want[200];
    describe(got, sizeof got, s, len, quoted);
    expect_text(want, sizeof want, k, act);
    switch (k->type) {
    case T_INT: {
        long long v = 0;
        int ok = !quoted && parse_ll(s, len, &v);
        if (!ok || ((v < k->min || v > k->max) && !(v == 0 && (k->flags & F_ZERO_OK))))
            return failat(at, "%s: expected %s, got %s", path, want, got);
        *(int *)f = (int)v;
        return NB_OK;
    }
    case T_FLOAT: {
        double v = 0;
        int ok = !quoted && parse_float(s, len, &v);
        if (ok) {
            ok = (k->flags & F_OPEN_MIN) ? v > k->min : v >= k->min;
            ok = ok && ((k->flags & F_OPEN_MAX) ? v < k->max : v <= k->max);
        }
        if (!ok) return failat(at, "%s: expected %s, got %s", path, want, got);
        *(float *)f = (float)v;
        return NB_OK;
    }
    case T_U64: {
        unsigned long long v = 0;
        if (quoted || !parse_u64(s, len, &v)) return failat(at, "%s: expected %s, got %s", path, want, got);
        *(unsigned long long *)f = v;
        return NB_OK;
    }
    case T_BOOL: {
        static const char *const yes[] = {"true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON"};
        static const char *const no[] = {"false", "False", "FALSE", "no", "No", "NO", "off", "Off", "OFF"};
        for (int i = 0; i < 9 && !quoted; i++) {
            if (strlen(yes[i]) == len && !memcmp(yes[i], s, len)) return *(int *)f = 1, NB_OK;
            if (strlen(no[i]) == len && !memcmp(no[i], s, len)) return *(int *)f = 0, NB_OK;
        }
        return failat(at, "%s: expected %s, got %s", path, want, got);
    }
    case T_STR:
    case T_ENUM:
        if (!quoted && is_null(s, len)) len = 0;
        if (memchr(s, 0, len)) return failat(at, "%s: the text contains a NUL character", path);
        if (!valid_utf8((const unsigned char *)s, len)) return failat(at, "%s: the text is not valid UTF-8", path);
        if (k->type == T_ENUM && !enum_has(kvalues(k, act), s, len)) {
            /* suggest the closest allowed value */
            const char *v = kvalues(k, act), *best = NULL;
            size_t best_len = 0;
            int bd = 1000;
            for (;;) {
                const char *bar = strchr(v, '|');
                size_t l = bar ? (size_t)(bar - v) : strlen(v);
                int d = edit_distance(s, len, v, l);
                if (l && d < bd) bd = d, best = v, best_len = l;
                if (!bar) break;
                v = bar + 1;
            }
            if (best && close_enough(bd, len))
                return failat(at, "%s: expected %s, got %s; did you mean '%.*s'?", path, want, got, (int)best_len,
                              best);
            return failat(at, "%s: expected %s, got %s", path, want, got);
        }
        if (len >= k->size)
            return failat(at, "%s: the text is %zu bytes long, this key holds at most %zu", path, len, k->size - 1);
        memset(f, 0, k->size);
        memcpy(f, s, len);
        return NB_OK;
    case T_RULES: break;
    }
    NB_ASSERT(0);
    return NB_EINVAL;
}

static void rule_defaults(nb_qrule *q, int act) {
    memset(q, 0, sizeof *q);
    loc at = {"defaults", 0, 0, NULL};
    for (int i = 0; i < N_RKEYS; i++) {
        const char *d = kdef(&rule_keys[i], act);
        nb_status s = set_scalar(&rule_keys[i], act, q, rule_keys[i].path, d, strlen(d), 0, &at);
        NB_ASSERT(s == NB_OK);
    }
}

void nb_recipe_defaults(nb_recipe *r) {
    memset(r, 0, sizeof *r);
    loc at = {"defaults", 0, 0, NULL};
    for (int i = 0; i < N_KEYS; i++) {
        const key *k = &keys[i];
        if (k->type == T_RULES) continue; /* memset: no rules */
        /* the table's sizes must match the types of the fields */
        NB_ASSERT(k->type == T_STR || k->type == T_ENUM || k->size == (k->type == T_FLOAT ? sizeof(float)
                                                                         : k->type == T_U64 ? sizeof(unsigned long long)
                                                                                            : sizeof(int)));
        nb_status s = set_scalar(k, 0, r, k->path, k->def, strlen(k->def), 0, &at);
        NB_ASSERT(s == NB_OK);
    }
}

/* ---------------------------------------------------------------------------------------------- */
/* Walking the YAML document                                                                      */

static int find_key(const char *path) {
    for (int i = 0; i < N_KEYS; i++)
        if (!strcmp(keys[i].path, path)) return i;
    return -1;
}

static int find_rule_key(const char *name, size_t len) {
    for (int i = 0; i < N_RKEYS; i++)
        if (strlen(rule_keys[i].path) == len && !memcmp(rule_keys[i].path, name, len)) return i;
    return -1;
}

/* Is `prefix` (e.g. "model") a section, i.e. the start of some key "model.x"? */
static int is_section(const char *prefix, size_t len) {
    for (int i = 0; i < N_KEYS; i++)
        if (!strncmp(keys[i].path, prefix, len) && keys[i].path[len] == '.') return 1;
    return 0;
}

/* The closest name among the keys directly under `prefix` ("" = top level; "model." = the
   model section): writes the name (a key or section) into best, returns its distance. */
static int closest_child(const char *prefix, const char *name, size_t len, char *best, size_t nbest) {
    size_t pl = strlen(prefix);
    int bd = 1000;
    best[0] = 0;
    for (int i = 0; i < N_KEYS; i++) {
        const char *p = keys[i].path;
        if (strncmp(p, prefix, pl)) continue;
        const char *child = p + pl, *dot = strchr(child, '.');
        size_t cl = dot ? (size_t)(dot - child) : strlen(child);
        int d = edit_distance(name, len, child, cl);
        if (d < bd) {
            bd = d;
            snprintf(best, nbest, "%.*s", (int)cl, child);
        }
    }
    return bd;
}

/* "a, b, c": the names directly under prefix, each once, in table order. */
static void list_children(const char *prefix, char *buf, size_t n) {
    size_t pl = strlen(prefix), o = 0;
    buf[0] = 0;
    for (int i = 0; i < N_KEYS && o < n; i++) {
        const char *p = keys[i].path;
        if (strncmp(p, prefix, pl)) continue;
        const char *child = p + pl, *dot = strchr(child, '.');
        int cl = dot ? (int)(dot - child) : (int)strlen(child);
        if (i > 0 && !strncmp(keys[i - 1].path, p, pl + cl) && (keys[i - 1].path[pl + cl] == '.')) continue;
        o += (size_t)snprintf(buf + o, n - o, "%s%.*s", o ? ", " : "", cl, child);
    }
}

static int closest_rule_key(const char *name, size_t len, char *best, size_t nbest) {
    int bd = 1000;
    for (int i = 0; i < N_RKEYS; i++) {
        int d = edit_distance(name, len, rule_keys[i].path, strlen(rule_keys[i].path));
        if (d < bd) {
            bd = d;
            snprintf(best, nbest, "%s", rule_keys[i].path);
        }
    }
    return bd;
}

static const char *node_kind(const yaml_node_t *n) {
    return n->type == YAML_MAPPING_NODE ? "a mapping" : n->type == YAML_SEQUENCE_NODE ? "a list" : "a scalar";
}

static int scalar_is_null(const yaml_node_t *n) {
    return n->type == YAML_SCALAR_NODE && n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
           is_null((const char *)n->data.scalar.value, n->data.scalar.length);
}

/* Key node of a mapping pair as text; non-scalar keys are an error. */
static nb_status pair_key(ctx *c, yaml_node_t *kn, const char *where, const char **name, size_t *len) {
    if (!kn || kn->type != YAML_SCALAR_NODE) {
        loc at = node_loc(c, kn);
        return failat(&at, "%s: expected a key name, got %s", where, kn ? node_kind(kn) : "nothing");
    }
    *name = (const char *)kn->data.scalar.value;
    *len = kn->data.scalar.length;
    if (*len == 0 || memchr(*name, 0, *len)) {
        loc at = node_loc(c, kn);
        return failat(&at, "%s: empty or invalid key name", where);
    }
    return NB_OK;
}

/* An earlier pair of the same mapping with the same key? Then it is a duplicate. */
static nb_status check_duplicate(ctx *c, yaml_node_t *map, yaml_node_pair_t *p, const char *full) {
    yaml_node_t *kn = yaml_document_get_node(c->doc, p->key);
    for (yaml_node_pair_t *q = map->data.mapping.pairs.start; q < p; q++) {
        yaml_node_t *qk = yaml_document_get_node(c->doc, q->key);
        if (qk && qk->type == YAML_SCALAR_NODE && qk->data.scalar.length == kn->data.scalar.length &&
            !memcmp(qk->data.scalar.value, kn->data.scalar.value, kn->data.scalar.length)) {
            loc at = node_loc(c, kn);
            if (c->cur_ov >= 0)
                return failat(&at, "%s: duplicate key", full);
            return failat(&at, "%s: duplicate key (first at line %d)", full, (int)qk->start_mark.line + 1);
        }
    }
    return NB_OK;
}

/* One rule: a mapping of rule keys onto the defaults of its list. */
static nb_status walk_rule(ctx *c, yaml_node_t *item, int list, int idx, nb_qrule *q) {
    char path[96];
    snprintf(path, sizeof path, "%s[%d]", list_path[list], idx);
    rule_defaults(q, list);
    c->rm[list][idx][N_RKEYS] = node_mark(c, item);
    for (int f = 0; f < N_RKEYS; f++) c->rm[list][idx][f] = (mark){0, 0, 0};
    if (scalar_is_null(item)) return NB_OK; /* "- " alone: a rule of defaults */
    if (item->type != YAML_MAPPING_NODE) {
        loc at = node_loc(c, item);
        return failat(&at, "%s: expected a mapping (match: ..., bits: ...), got %s", path, node_kind(item));
    }
    for (yaml_node_pair_t *p = item->data.mapping.pairs.start; p < item->data.mapping.pairs.top; p++) {
        yaml_node_t *kn = yaml_document_get_node(c->doc, p->key), *vn = yaml_document_get_node(c->doc, p->value);
        const char *name;
        size_t len;
        NB_TRY(pair_key(c, kn, path, &name, &len));
        char full[200];
        snprintf(full, sizeof full, "%s.%.*s", path, (int)(len > 64 ? 64 : len), name);
        NB_TRY(check_duplicate(c, item, p, full));
        int f = find_rule_key(name, len);
        if (f < 0) {
            char best[64];
            loc at = node_loc(c, kn);
            int d = closest_rule_key(name, len, best, sizeof best);
            if (close_enough(d, len))
                return failat(&at, "unknown key '%s'; did you mean '%s.%s'?", full, path, best);
            return failat(&at, "unknown key '%s'; a rule has match, bits, symmetric, restrict_range, ternary, "
                               "granularity, group_size, estimator, observer, percentile, ema_decay, scale_dtype, tail",
                          full);
        }
        snprintf(full, sizeof full, "%s.%s", path, rule_keys[f].path);
        loc at = node_loc(c, vn);
        if (!vn || vn->type != YAML_SCALAR_NODE) {
            char want[200];
            expect_text(want, sizeof want, &rule_keys[f], list);
            return failat(&at, "%s: expected %s, got %s", full, want, vn ? node_kind(vn) : "nothing");
        }
        NB_TRY(set_scalar(&rule_keys[f], list, q, full, (const char *)vn->data.scalar.value, vn->data.scalar.length,
                          vn->data.scalar.style != YAML_PLAIN_SCALAR_STYLE, &at));
        c->rm[list][idx][f] = node_mark(c, vn);
    }
    return NB_OK;
}

/* quant.weights / quant.activations: a list of rules replacing the current one. */
static nb_status walk_rules(ctx *c, yaml_node_t *seq, int list) {
    nb_recipe *r = c->r;
    if (scalar_is_null(seq)) {
        *rule_count(r, list) = 0;
        return NB_OK;
    }
    if (seq->type != YAML_SEQUENCE_NODE) {
        loc at = node_loc(c, seq);
        return failat(&at, "%s: expected a list of rules (- match: ..., bits: ...), got %s", list_path[list],
                      node_kind(seq));
    }
    int n = 0;
    for (yaml_node_item_t *it = seq->data.sequence.items.start; it < seq->data.sequence.items.top; it++, n++) {
        yaml_node_t *item = yaml_document_get_node(c->doc, *it);
        if (n >= NB_MAX_QRULES) {
            loc at = node_loc(c, item);
            return failat(&at, "%s: at most %d rules, this is rule %d", list_path[list], NB_MAX_QRULES, n + 1);
        }
        nb_qrule q;
        NB_TRY(walk_rule(c, item, list, n, &q));
        rule_array(r, list)[n] = q;
    }
    /* clear what the old list left beyond the new one, so equal recipes compare equal */
    for (int i = n; i < NB_MAX_QRULES; i++) memset(&rule_array(r, list)[i], 0, sizeof(nb_qrule));
    *rule_count(r, list) = n;
    return NB_OK;
}

/* A mapping of keys under `prefix` ("" or "model."). */
static nb_status walk_map(ctx *c, yaml_node_t *map, const char *prefix) {
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *kn = yaml_document_get_node(c->doc, p->key), *vn = yaml_document_get_node(c->doc, p->value);
        const char *name;
        size_t len;
        char sect[80];
        snprintf(sect, sizeof sect, "%.*s", *prefix ? (int)strlen(prefix) - 1 : 9, *prefix ? prefix : "top level");
        NB_TRY(pair_key(c, kn, sect, &name, &len));
        char full[200];
        snprintf(full, sizeof full, "%s%.*s", prefix, (int)(len > 100 ? 100 : len), name);
        NB_TRY(check_duplicate(c, map, p, full));
        int i = len <= 100 ? find_key(full) : -1;
        loc at = node_loc(c, vn);
        if (i >= 0 && keys[i].type == T_RULES) {
            NB_TRY(walk_rules(c, vn, keys[i].off == offsetof(nb_recipe, quant.acts)));
            c->km[i] = node_mark(c, vn);
        } else if (i >= 0) {
            if (!vn || vn->type != YAML_SCALAR_NODE) {
                char want[200];
                expect_text(want, sizeof want, &keys[i], 0);
                return failat(&at, "%s: expected %s, got %s", full, want, vn ? node_kind(vn) : "nothing");
            }
            NB_TRY(set_scalar(&keys[i], 0, c->r, full, (const char *)vn->data.scalar.value, vn->data.scalar.length,
                              vn->data.scalar.style != YAML_PLAIN_SCALAR_STYLE, &at));
            c->km[i] = node_mark(c, vn);
        } else if (len <= 100 && is_section(full, strlen(full))) {
            if (scalar_is_null(vn)) continue; /* "model:" with nothing under it */
            if (vn->type != YAML_MAPPING_NODE)
                return failat(&at, "%s: expected a mapping of %s keys, got %s", full, full, node_kind(vn));
            char sub[210];
            snprintf(sub, sizeof sub, "%s.", full);
            NB_TRY(walk_map(c, vn, sub));
        } else {
            char best[64];
            loc kat = node_loc(c, kn);
            int d = closest_child(prefix, name, len, best, sizeof best);
            if (close_enough(d, len)) return failat(&kat, "unknown key '%s'; did you mean '%s%s'?", full, prefix, best);
            char names[600];
            list_children(prefix, names, sizeof names);
            return failat(&kat, "unknown key '%s'; %s has %s", full, *prefix ? sect : "the top level", names);
        }
    }
    return NB_OK;
}

/* libyaml's complaint with its position ("did not find expected key" ...). */
static nb_status yaml_error(const ctx *c, yaml_parser_t *p) {
    if (p->error == YAML_MEMORY_ERROR) return nb_fail(NB_ENOMEM, "%s: out of memory while parsing YAML", c->file);
    int line = (int)p->problem_mark.line + 1, col = (int)p->problem_mark.column + 1;
    if (p->error == YAML_READER_ERROR) { /* only a byte offset: count lines up to it */
        line = 1, col = 1;
        for (size_t i = 0; i < p->problem_offset && i < c->len; i++) {
            if (c->text[i] == '\n')
                line++, col = 1;
            else
                col++;
        }
    }
    loc at = {c->file, line, col, c->cur_ov >= 0 ? c->ovs[c->cur_ov] : NULL};
    if (p->context)
        return failat(&at, "malformed YAML: %s (%s at line %d)", p->problem ? p->problem : "error", p->context,
                      (int)p->context_mark.line + 1);
    return failat(&at, "malformed YAML: %s", p->problem ? p->problem : "error");
}

/* Loads exactly one YAML document (an empty input gives a document without a root). */
static nb_status load_doc(ctx *c, const char *text, size_t len, yaml_document_t *doc) {
    yaml_parser_t p;
    if (!yaml_parser_initialize(&p)) return nb_fail(NB_ENOMEM, "%s: out of memory", c->file);
    const char *old_text = c->text;
    size_t old_len = c->len;
    c->text = text, c->len = len;
    yaml_parser_set_input_string(&p, (const unsigned char *)text, len);
    nb_status s = NB_OK;
    if (!yaml_parser_load(&p, doc)) { /* libyaml frees the partial document itself */
        s = yaml_error(c, &p);
    } else if (yaml_document_get_root_node(doc)) {
        yaml_document_t extra;
        if (!yaml_parser_load(&p, &extra)) {
            s = yaml_error(c, &p);
        } else {
            yaml_node_t *root = yaml_document_get_root_node(&extra);
            if (root) {
                loc at = node_loc(c, root);
                s = failat(&at, "expected one YAML document, found a second one");
            }
            yaml_document_delete(&extra);
        }
        if (s) yaml_document_delete(doc);
    }
    yaml_parser_delete(&p);
    c->text = old_text, c->len = old_len;
    return s;
}

/* ---------------------------------------------------------------------------------------------- */
/* Overrides                                                                                      */

static void trim(const char **s, size_t *len) {
    while (*len && (**s == ' ' || **s == '\t')) (*s)++, (*len)--;
    while (*len && ((*s)[*len - 1] == ' ' || (*s)[*len - 1] == '\t')) (*len)--;
}

/* key=value, with key a dotted path; rules by index: quant.weights.0.bits or quant.weights[0].bits. */
static nb_status apply_override(ctx *c, int idx) {
    const char *text = c->ovs[idx];
    loc at = {c->file, 0, 0, text};
    c->cur_ov = idx;
    const char *eq = strchr(text, '=');
    if (!eq) return failat(&at, "expected key=value (e.g. optim.lr=3e-4 or quant.weights.0.bits=4)");
    const char *k = text, *v = eq + 1;
    size_t kl = (size_t)(eq - text), vl = strlen(v);
    trim(&k, &kl);
    trim(&v, &vl);
    if (kl == 0) return failat(&at, "expected key=value, the key is empty");
    /* normalise [N] to .N */
    char path[160];
    size_t pl = 0;
    for (size_t i = 0; i < kl; i++) {
        char ch = k[i];
        if (ch == '[') ch = '.';
        if (ch == ']') continue;
        if (pl + 1 >= sizeof path) return failat(&at, "unknown key '%.60s...'", k);
        path[pl++] = ch;
    }
    path[pl] = 0;
    int quoted = vl >= 2 && (v[0] == '"' || v[0] == '\'') && v[vl - 1] == v[0];
    if (quoted) v++, vl -= 2;

    int i = find_key(path);
    if (i >= 0 && keys[i].type != T_RULES) {
        NB_TRY(set_scalar(&keys[i], 0, c->r, path, v, vl, quoted, &at));
        c->km[i] = (mark){0, 0, idx + 1};
        return NB_OK;
    }
    if (i >= 0) { /* a whole list: quant.weights=[{match: "*", bits: 4}] */
        int list = keys[i].off == offsetof(nb_recipe, quant.acts);
        if (quoted) return failat(&at, "%s: expected a list of rules, got a quoted string", path);
        yaml_document_t doc;
        NB_TRY(load_doc(c, v, vl, &doc));
        yaml_node_t *root = yaml_document_get_root_node(&doc);
        yaml_document_t *old = c->doc;
        c->doc = &doc;
        nb_status s;
        if (!root) {
            *rule_count(c->r, list) = 0;
            memset(rule_array(c->r, list), 0, sizeof(nb_qrule) * NB_MAX_QRULES);
            s = NB_OK;
        } else {
            s = walk_rules(c, root, list);
        }
        c->doc = old;
        yaml_document_delete(&doc);
        if (s == NB_OK) c->km[i] = (mark){0, 0, idx + 1};
        return s;
    }
    /* quant.weights.N.field */
    for (int list = 0; list < 2; list++) {
        size_t ll = strlen(list_path[list]);
        if (strncmp(path, list_path[list], ll) || path[ll] != '.') continue;
        const char *num = path + ll + 1, *dot = strchr(num, '.');
        size_t nl = dot ? (size_t)(dot - num) : strlen(num);
        long long n;
        if (!parse_ll(num, nl, &n) || num[0] == '+' || num[0] == '-')
            return failat(&at, "%s: expected a rule index after %s. (e.g. %s.0.bits)", path, list_path[list],
                          list_path[list]);
        int count = *rule_count(c->r, list);
        if (n > count || n >= NB_MAX_QRULES)
            return failat(&at, "%s: rule index %lld out of range: %s has %d rules (index %d adds one, at most %d)",
                          path, n, list_path[list], count, count, NB_MAX_QRULES);
        if (!dot)
            return failat(&at, "%s is a rule; set one of its keys, e.g. %s.%lld.bits=4", path, list_path[list], n);
        const char *field = dot + 1;
        int f = find_rule_key(field, strlen(field));
        if (f < 0) {
            char best[64];
            int d = closest_rule_key(field, strlen(field), best, sizeof best);
            if (close_enough(d, strlen(field)))
                return failat(&at, "unknown key '%s'; did you mean '%s.%lld.%s'?", path, list_path[list], n, best);
            return failat(&at, "unknown key '%s'", path);
        }
        nb_qrule q;
        if (n == count)
            rule_defaults(&q, list);
        else
            q = rule_array(c->r, list)[n];
        char full[200];
        snprintf(full, sizeof full, "%s[%lld].%s", list_path[list], n, rule_keys[f].path);
        NB_TRY(set_scalar(&rule_keys[f], list, &q, full, v, vl, quoted, &at));
        if (n == count) {
            *rule_count(c->r, list) = count + 1;
            for (int g = 0; g <= N_RKEYS; g++) c->rm[list][n][g] = (mark){0, 0, 0};
            c->rm[list][n][N_RKEYS] = (mark){0, 0, idx + 1};
        }
        rule_array(c->r, list)[n] = q;
        c->rm[list][n][f] = (mark){0, 0, idx + 1};
        return NB_OK;
    }
    if (is_section(path, pl))
        return failat(&at, "'%s' is a section; set one of its keys (e.g. %s.%s)", path, path,
                      !strcmp(path, "quant") ? "enabled=false" : "...=VALUE");
    /* unknown: closest full path */
    const char *best = NULL;
    int bd = 1000;
    for (int j = 0; j < N_KEYS; j++) {
        int d = edit_distance(path, pl, keys[j].path, strlen(keys[j].path));
        if (d < bd) bd = d, best = keys[j].path;
    }
    if (best && close_enough(bd, pl)) return failat(&at, "unknown key '%s'; did you mean '%s'?", path, best);
    return failat(&at, "unknown key '%s' (nibble train --help lists the keys)", path);
}

/* ---------------------------------------------------------------------------------------------- */
/* Validation                                                                                     */

/* Where key `path` was set (file position, override), else just the file. */
static loc key_loc(const ctx *c, const nb_recipe *r, const char *path) {
    int i = find_key(path);
    NB_ASSERT(i >= 0);
    return c ? mark_loc(c, c->km[i], r->path) : (loc){r->path, 0, 0, NULL};
}

static loc rule_loc(const ctx *c, const nb_recipe *r, int list, int idx, const char *field) {
    loc at = {r->path, 0, 0, NULL};
    if (!c) return at;
    int f = field ? find_rule_key(field, strlen(field)) : N_RKEYS;
    mark m = c->rm[list][idx][f];
    if (!m.line && !m.ov) m = c->rm[list][idx][N_RKEYS];
    return mark_loc(c, m, r->path);
}

static nb_status check_file(const ctx *c, const nb_recipe *r, const char *key_path, const char *file) {
    struct stat st;
    loc at = key_loc(c, r, key_path);
    if (stat(file, &st) != 0) return failat(&at, "%s: cannot open '%s': %s", key_path, file, strerror(errno));
    if (S_ISDIR(st.st_mode)) return failat(&at, "%s: '%s' is a directory, expected a file", key_path, file);
    return NB_OK;
}

/* "byte" | "char" | "llama2c:PATH" (data.tokenizer); "random" | "llama2c:PATH" | "checkpoint:PATH". */
static nb_status check_source(const ctx *c, const nb_recipe *r, const char *key_path, const char *v, const char *plain1,
                              const char *plain2, const char *pre2) {
    if (!strcmp(v, plain1) || (plain2 && !strcmp(v, plain2))) return NB_OK;
    const char *file = NULL;
    if (!strncmp(v, "llama2c:", 8))
        file = v + 8;
    else if (pre2 && !strncmp(v, pre2, strlen(pre2)))
        file = v + strlen(pre2);
    loc at = key_loc(c, r, key_path);
    if (!file) {
        if (plain2) return failat(&at, "%s: expected %s, %s or llama2c:PATH, got '%s'", key_path, plain1, plain2, v);
        return failat(&at, "%s: expected %s, llama2c:PATH or %sPATH, got '%s'", key_path, plain1, pre2, v);
    }
    if (!*file) return failat(&at, "%s: '%s' names no file (expected %.*sPATH)", key_path, v, (int)(file - v), v);
    return check_file(c, r, key_path, file);
}

static nb_status validate_rule(const ctx *c, const nb_recipe *r, int list, int i) {
    const nb_qrule *q = list ? &r->quant.acts[i] : &r->quant.weights[i];
    const char *lp = list_path[list];
    loc at;
    if (!strcmp(q->granularity, "group") && q->group_size != 32 && q->group_size != 64 && q->group_size != 128) {
        at = rule_loc(c, r, list, i, "group_size");
        return failat(&at, "%s[%d].group_size: expected 32, 64 or 128 with granularity group, got %d", lp, i,
                      q->group_size);
    }
    if (!strcmp(q->estimator, "pact") && !list) {
        at = rule_loc(c, r, list, i, "estimator");
        return failat(&at, "%s[%d].estimator: pact learns an activation clip; use it in quant.activations", lp, i);
    }
    if (!strcmp(q->estimator, "lsq+") && q->symmetric) {
        at = rule_loc(c, r, list, i, "estimator");
        return failat(&at, "%s[%d].estimator: lsq+ learns an offset and needs symmetric: false", lp, i);
    }
    if (q->restrict_range && !q->symmetric) {
        at = rule_loc(c, r, list, i, "restrict_range");
        return failat(&at, "%s[%d].restrict_range: only for symmetric grids (symmetric: true)", lp, i);
    }
    if (q->ternary && list) {
        at = rule_loc(c, r, list, i, "ternary");
        return failat(&at, "%s[%d].ternary: ternary grids are for weights only", lp, i);
    }
    if (!q->match[0]) {
        at = rule_loc(c, r, list, i, "match");
        return failat(&at, "%s[%d].match: empty pattern (use \"*\" for every parameter)", lp, i);
    }
    if (r->quant.anneal_from_bits && q->bits && !q->ternary && r->quant.anneal_from_bits < q->bits) {
        at = key_loc(c, r, "quant.anneal_from_bits");
        return failat(&at, "quant.anneal_from_bits: %d is below %s[%d].bits (%d); annealing goes from more bits to fewer",
                      r->quant.anneal_from_bits, lp, i, q->bits);
    }
    return NB_OK;
}

static nb_status validate(const nb_recipe *r, const ctx *c) {
    const nb_recipe_model *m = &r->model;
    loc at;
    if (m->dim % m->n_heads) {
        at = key_loc(c, r, "model.n_heads");
        return failat(&at, "model.n_heads: %d does not divide model.dim (%d)", m->n_heads, m->dim);
    }
    if ((m->dim / m->n_heads) % 2) {
        at = key_loc(c, r, "model.dim");
        return failat(&at, "model.dim: the head dimension dim / n_heads = %d / %d = %d must be even (RoPE rotates pairs)",
                      m->dim, m->n_heads, m->dim / m->n_heads);
    }
    int kv = m->n_kv_heads ? m->n_kv_heads : m->n_heads;
    if (m->n_heads % kv) {
        at = key_loc(c, r, "model.n_kv_heads");
        return failat(&at, "model.n_kv_heads: %d does not divide model.n_heads (%d)", kv, m->n_heads);
    }
    if (r->optim.min_lr > r->optim.lr) {
        at = key_loc(c, r, "optim.min_lr");
        return failat(&at, "optim.min_lr: %g is above optim.lr (%g)", r->optim.min_lr, r->optim.lr);
    }
    if (!r->out_dir[0]) {
        at = key_loc(c, r, "out_dir");
        return failat(&at, "out_dir: must not be empty");
    }
    const nb_recipe_quant *qt = &r->quant;
    if (qt->lambda_end < qt->lambda_start) {
        at = key_loc(c, r, "quant.lambda_end");
        return failat(&at, "quant.lambda_end: %d is before quant.lambda_start (%d)", qt->lambda_end, qt->lambda_start);
    }
    if (qt->anneal_from_bits && qt->anneal_end < qt->anneal_start) {
        at = key_loc(c, r, "quant.anneal_end");
        return failat(&at, "quant.anneal_end: %d is before quant.anneal_start (%d)", qt->anneal_end, qt->anneal_start);
    }
    if (qt->n_weight_rules < 0 || qt->n_weight_rules > NB_MAX_QRULES || qt->n_act_rules < 0 ||
        qt->n_act_rules > NB_MAX_QRULES)
        return nb_fail(NB_EINVAL, "%s: quant: rule counts %d/%d out of range", r->path, qt->n_weight_rules,
                       qt->n_act_rules);
    for (int list = 0; list < 2; list++)
        for (int i = 0; i < (list ? qt->n_act_rules : qt->n_weight_rules); i++) NB_TRY(validate_rule(c, r, list, i));
    if (qt->enabled && !qt->n_weight_rules && !qt->n_act_rules && !qt->preset[0]) {
        at = key_loc(c, r, "quant.enabled");
        return failat(&at, "quant.enabled: true, but quant.weights, quant.activations and quant.preset are all empty "
                           "(add a rule such as quant.weights: [{match: \"*\", bits: 4}])");
    }
    /* files last: everything else is checked without touching the disk */
    if (r->data.train[0]) NB_TRY(check_file(c, r, "data.train", r->data.train));
    if (r->data.val[0]) NB_TRY(check_file(c, r, "data.val", r->data.val));
    NB_TRY(check_source(c, r, "data.tokenizer", r->data.tokenizer, "byte", "char", NULL));
    NB_TRY(check_source(c, r, "model.init", m->init, "random", NULL, "checkpoint:"));
    if (r->distill.teacher[0]) NB_TRY(check_file(c, r, "distill.teacher", r->distill.teacher));
    return NB_OK;
}

nb_status nb_recipe_validate(const nb_recipe *r) { return validate(r, NULL); }

/* ---------------------------------------------------------------------------------------------- */
/* Output: resolved YAML and the Markdown reference                                               */

typedef struct sbuf {
    char *p;
    size_t len, cap;
    int oom;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n + 1) cap *= 2;
        char *p = nb_realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p, b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...) {
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n < sizeof tmp) {
        sb_put(b, tmp, (size_t)n);
        return;
    }
    char *big = nb_malloc((size_t)n + 1);
    if (!big) {
        b->oom = 1;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    sb_put(b, big, (size_t)n);
    nb_free(big);
}

static char *sb_done(sbuf *b) {
    if (b->oom || !b->p) {
        nb_free(b->p);
        return NULL;
    }
    return b->p;
}

/* YAML printable code point (what libyaml accepts unescaped). */
static int yaml_printable(unsigned cp) {
    return cp == 0x9 || cp == 0xa || (cp >= 0x20 && cp <= 0x7e) || cp == 0x85 || (cp >= 0xa0 && cp <= 0xd7ff) ||
           (cp >= 0xe000 && cp <= 0xfffd && cp != 0xfeff) || (cp >= 0x10000 && cp <= 0x10ffff);
}

/* A double-quoted YAML string that reads back as the same bytes (s is valid UTF-8). */
static void put_quoted(sbuf *b, const char *s) {
    const unsigned char *u = (const unsigned char *)s;
    sb_put(b, "\"", 1);
    size_t i = 0, n = strlen(s);
    while (i < n) {
        unsigned c = u[i];
        int extra = c < 0x80 ? 0 : c >= 0xf0 ? 3 : c >= 0xe0 ? 2 : 1;
        unsigned cp = extra ? c & (0x3f >> extra) : c;
        for (int k = 1; k <= extra && i + k < n; k++) cp = cp << 6 | (u[i + k] & 0x3f);
        if (c == '"' || c == '\\')
            sb_printf(b, "\\%c", c);
        else if (c == '\n')
            sb_put(b, "\\n", 2);
        else if (c == '\t')
            sb_put(b, "\\t", 2);
        else if (!yaml_printable(cp) || cp == 0x85 || cp == 0x2028 || cp == 0x2029) /* line breaks to libyaml */
            sb_printf(b, cp < 0x100 ? "\\x%02x" : cp < 0x10000 ? "\\u%04x" : "\\U%08x", cp);
        else
            sb_put(b, s + i, (size_t)extra + 1);
        i += (size_t)extra + 1;
    }
    sb_put(b, "\"", 1);
}

/* Shortest "%g" that reads back as the same float. */
static void put_float(sbuf *b, float v) {
    char tmp[40];
    for (int prec = 6; prec <= 9; prec++) {
        snprintf(tmp, sizeof tmp, "%.*g", prec, (double)v);
        if (strtof(tmp, NULL) == v) break;
    }
    sb_put(b, tmp, strlen(tmp));
}

static void put_value(sbuf *b, const key *k, const void *base) {
    const char *f = (const char *)base + k->off;
    switch (k->type) {
    case T_INT: sb_printf(b, "%d", *(const int *)f); break;
    case T_FLOAT: put_float(b, *(const float *)f); break;
    case T_BOOL: sb_printf(b, "%s", *(const int *)f ? "true" : "false"); break;
    case T_U64: sb_printf(b, "%llu", *(const unsigned long long *)f); break;
    case T_STR:
    case T_ENUM: {
        char tmp[1100];
        snprintf(tmp, sizeof tmp, "%.*s", (int)k->size, f); /* fields are NUL-terminated; be safe anyway */
        put_quoted(b, tmp);
        break;
    }
    case T_RULES: break;
    }
}

static void put_rules(sbuf *b, const nb_recipe *r, int list, const char *name) {
    int n = list ? r->quant.n_act_rules : r->quant.n_weight_rules;
    if (n <= 0) {
        sb_printf(b, "  %s: []\n", name);
        return;
    }
    if (n > NB_MAX_QRULES) n = NB_MAX_QRULES;
    sb_printf(b, "  %s:\n", name);
    for (int i = 0; i < n; i++) {
        const nb_qrule *q = list ? &r->quant.acts[i] : &r->quant.weights[i];
        for (int f = 0; f < N_RKEYS; f++) {
            sb_printf(b, "    %s %s: ", f ? " " : "-", rule_keys[f].path);
            put_value(b, &rule_keys[f], q);
            sb_put(b, "\n", 1);
        }
    }
}

static int ascii_printable(char ch) { return (unsigned char)ch >= 0x20 && (unsigned char)ch < 0x7f; }

static char *to_yaml(const nb_recipe *r, int n_ovs, char **ovs) {
    sbuf b = {0};
    sb_printf(&b, "# nibble recipe, resolved (every key)\n");
    if (r->path[0]) {
        sb_put(&b, "# from: ", 8);
        for (const char *s = r->path; *s; s++) sb_put(&b, ascii_printable(*s) ? s : "?", 1);
        sb_put(&b, "\n", 1);
    }
    for (int i = 0; i < n_ovs; i++) { /* a comment line: no newline may escape into the YAML */
        sb_put(&b, "# override: ", 12);
        for (const char *s = ovs[i]; *s; s++) sb_put(&b, ascii_printable(*s) ? s : "?", 1);
        sb_put(&b, "\n", 1);
    }
    char section[32] = "";
    for (int i = 0; i < N_KEYS; i++) {
        const key *k = &keys[i];
        const char *dot = strchr(k->path, '.');
        if (dot && (strlen(section) != (size_t)(dot - k->path) || strncmp(section, k->path, dot - k->path))) {
            snprintf(section, sizeof section, "%.*s", (int)(dot - k->path), k->path);
            sb_printf(&b, "%s:\n", section);
        }
        const char *name = dot ? dot + 1 : k->path;
        if (k->type == T_RULES) {
            put_rules(&b, r, k->off == offsetof(nb_recipe, quant.acts), name);
            continue;
        }
        sb_printf(&b, "%s%s: ", dot ? "  " : "", name);
        put_value(&b, k, r);
        sb_put(&b, "\n", 1);
    }
    return sb_done(&b);
}

char *nb_recipe_to_yaml(const nb_recipe *r) { return to_yaml(r, 0, NULL); }

static const char *type_name(const key *k) {
    switch (k->type) {
    case T_INT: return "int";
    case T_FLOAT: return "float";
    case T_BOOL: return "bool";
    case T_STR: return "string";
    case T_ENUM: return "enum";
    case T_U64: return "u64";
    case T_RULES: return "list";
    }
    return "?";
}

static void put_md(sbuf *b, const char *s) { /* Markdown cell text: escape the column bar */
    for (; *s; s++) sb_put(b, *s == '|' ? "\\|" : s, *s == '|' ? 2 : 1);
}

static void ref_row(sbuf *b, const char *path, const key *k, int act) {
    char want[200];
    expect_text(want, sizeof want, k, act);
    const char *d = kdef(k, act);
    sb_printf(b, "| `%s` | %s | `%s` | ", path, type_name(k), *d ? d : "\"\"");
    const char *w = want; /* short form: "2..8 or 0", ">= 1", "[0, 1)", "stop, skip" */
    static const char *const drop[] = {"an integer in ", "an integer ", "a number in ", "a number ", "one of "};
    for (int i = 0; i < 5; i++)
        if (!strncmp(w, drop[i], strlen(drop[i]))) {
            w += strlen(drop[i]);
            break;
        }
    if (k->type == T_STR) snprintf(want, sizeof want, "text, up to %zu bytes", k->size - 1), w = want;
    put_md(b, k->type == T_RULES ? "up to 32 rules" : w);
    sb_put(b, " | ", 3);
    put_md(b, k->help);
    sb_put(b, " |\n", 3);
}

char *nb_recipe_reference(void) {
    sbuf b = {0};
    sb_printf(&b, "| key | type | default | allowed | meaning |\n|---|---|---|---|---|\n");
    for (int i = 0; i < N_KEYS; i++) {
        ref_row(&b, keys[i].path, &keys[i], 0);
        if (keys[i].type != T_RULES) continue;
        int act = keys[i].off == offsetof(nb_recipe, quant.acts);
        for (int f = 0; f < N_RKEYS; f++) {
            char path[96];
            snprintf(path, sizeof path, "%s[].%s", list_path[act], rule_keys[f].path);
            ref_row(&b, path, &rule_keys[f], act);
        }
    }
    return sb_done(&b);
}

int nb_recipe_key_count(void) { return N_KEYS + 2 * N_RKEYS; }

const char *nb_recipe_key_path(int i) {
    static const char *const rule_paths[2][N_RKEYS] = {
        {"quant.weights[].match", "quant.weights[].bits", "quant.weights[].symmetric",
         "quant.weights[].restrict_range", "quant.weights[].ternary", "quant.weights[].granularity",
         "quant.weights[].group_size", "quant.weights[].estimator", "quant.weights[].observer",
         "quant.weights[].percentile", "quant.weights[].ema_decay", "quant.weights[].scale_dtype",
         "quant.weights[].tail"},
        {"quant.activations[].match", "quant.activations[].bits", "quant.activations[].symmetric",
         "quant.activations[].restrict_range", "quant.activations[].ternary", "quant.activations[].granularity",
         "quant.activations[].group_size", "quant.activations[].estimator", "quant.activations[].observer",
         "quant.activations[].percentile", "quant.activations[].ema_decay", "quant.activations[].scale_dtype",
         "quant.activations[].tail"},
    };
    if (i < 0 || i >= nb_recipe_key_count()) return NULL;
    if (i < N_KEYS) return keys[i].path;
    i -= N_KEYS;
    return rule_paths[i / N_RKEYS][i % N_RKEYS];
}

/* ---------------------------------------------------------------------------------------------- */
/* Entry points                                                                                   */

static void ctx_init(ctx *c, nb_recipe *r, const char *file, char **ovs) {
    memset(c, 0, sizeof *c);
    c->r = r;
    c->file = file;
    c->ovs = ovs;
    c->cur_ov = -1;
}

static nb_status parse_text(const char *name, const char *text, size_t len, int n_ovs, char **ovs, nb_recipe *r) {
    NB_ASSERT(r && text && (n_ovs == 0 || ovs));
    nb_recipe_defaults(r);
    if (!name) name = "recipe";
    if (strlen(name) < sizeof r->path)
        strcpy(r->path, name);
    else
        snprintf(r->path, sizeof r->path, "...%s", name + strlen(name) - (sizeof r->path - 4));
    ctx *c = nb_malloc(sizeof *c);
    if (!c) return nb_fail(NB_ENOMEM, "%s: out of memory", r->path);
    ctx_init(c, r, r->path, ovs);
    yaml_document_t doc;
    nb_status s = load_doc(c, text, len, &doc);
    if (s) goto done;
    c->doc = &doc;
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (!root) {
        s = nb_fail(NB_EINVAL, "%s: empty recipe (expected a mapping of keys and sections such as model:, optim:)",
                    r->path);
    } else if (root->type != YAML_MAPPING_NODE) {
        loc at = node_loc(c, root);
        s = failat(&at, "expected a mapping of keys and sections (model:, optim:, ...) at the top level, got %s",
                   node_kind(root));
    } else {
        s = walk_map(c, root, "");
    }
    c->doc = NULL;
    yaml_document_delete(&doc);
    for (int i = 0; i < n_ovs && s == NB_OK; i++) s = apply_override(c, i);
    c->cur_ov = -1;
    if (s == NB_OK) s = validate(r, c);
    if (s == NB_OK) {
        r->text = to_yaml(r, n_ovs, ovs);
        if (!r->text) s = nb_fail(NB_ENOMEM, "%s: out of memory", r->path);
    }
done:
    nb_free(c);
    return s;
}

nb_status nb_recipe_parse(const char *name, const char *yaml, int n_overrides, char **overrides, nb_recipe *r) {
    return parse_text(name, yaml, strlen(yaml), n_overrides, overrides, r);
}

#define MAX_RECIPE_BYTES (1 << 20)

nb_status nb_recipe_load(const char *path, int n_overrides, char **overrides, nb_recipe *r) {
    nb_recipe_defaults(r);
    struct stat st;
    if (stat(path, &st) != 0) return nb_fail(NB_EIO, "cannot open recipe %s: %s", path, strerror(errno));
    if (S_ISDIR(st.st_mode)) return nb_fail(NB_EIO, "recipe %s is a directory, expected a YAML file", path);
    if (st.st_size > MAX_RECIPE_BYTES)
        return nb_fail(NB_EINVAL, "%s: recipe is %lld bytes, more than the %d a recipe may have", path,
                       (long long)st.st_size, MAX_RECIPE_BYTES);
    FILE *f = fopen(path, "rb");
    if (!f) return nb_fail(NB_EIO, "cannot open recipe %s: %s", path, strerror(errno));
    char *text = nb_malloc(MAX_RECIPE_BYTES + 1);
    if (!text) {
        fclose(f);
        return nb_fail(NB_ENOMEM, "%s: out of memory", path);
    }
    size_t n = fread(text, 1, MAX_RECIPE_BYTES + 1, f);
    int err = ferror(f);
    fclose(f);
    nb_status s;
    if (err)
        s = nb_fail(NB_EIO, "read %s: %s", path, strerror(errno));
    else if (n > MAX_RECIPE_BYTES)
        s = nb_fail(NB_EINVAL, "%s: recipe is more than %d bytes", path, MAX_RECIPE_BYTES);
    else if (memchr(text, 0, n))
        s = nb_fail(NB_EINVAL, "%s: not a YAML text file (contains NUL bytes)", path);
    else {
        text[n] = 0;
        s = parse_text(path, text, n, n_overrides, overrides, r);
    }
    nb_free(text);
    return s;
}

nb_status nb_recipe_set(nb_recipe *r, const char *assignment) {
    NB_ASSERT(r && assignment);
    ctx *c = nb_malloc(sizeof *c);
    if (!c) return nb_fail(NB_ENOMEM, "out of memory");
    char *ovs[1] = {(char *)assignment};
    ctx_init(c, r, r->path, ovs);
    nb_status s = apply_override(c, 0);
    nb_free(c);
    if (s) return s;
    char *text = to_yaml(r, 0, NULL);
    if (!text) return nb_fail(NB_ENOMEM, "out of memory");
    nb_free(r->text);
    r->text = text;
    return NB_OK;
}

void nb_recipe_free(nb_recipe *r) {
    if (!r) return;
    nb_free(r->text);
    r->text = NULL;
}
