/* recipe_keys.c: the table of every recipe key, the defaults, and the strict scalar parser. */
#include "recipe_impl.h"

#include <errno.h>
#include <float.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------------------------------------- */
/* The key table                                                                                  */

/* clang-format off */
#define FLD(s, f) offsetof(s, f), sizeof(((s *)0)->f)
#define KI(p, f, d, lo, hi, fl, h) { p, NB_K_INT, FLD(nb_recipe, f), d, lo, hi, fl, NULL, h, NULL, NULL }
#define KF(p, f, d, lo, hi, fl, h) { p, NB_K_FLOAT, FLD(nb_recipe, f), d, lo, hi, fl, NULL, h, NULL, NULL }
#define KB(p, f, d, h) { p, NB_K_BOOL, FLD(nb_recipe, f), d, 0, 1, 0, NULL, h, NULL, NULL }
#define KS(p, f, d, h) { p, NB_K_STR, FLD(nb_recipe, f), d, 0, 0, 0, NULL, h, NULL, NULL }
#define KE(p, f, d, v, h) { p, NB_K_ENUM, FLD(nb_recipe, f), d, 0, 0, 0, v, h, NULL, NULL }
#define KU(p, f, d, h) { p, NB_K_U64, FLD(nb_recipe, f), d, 0, 0, 0, NULL, h, NULL, NULL }
#define KR(p, f, h) { p, NB_K_RULES, FLD(nb_recipe, f), "[]", 0, NB_MAX_QRULES, 0, NULL, h, NULL, NULL }
/* clang-format on */

/* Every key, grouped by section: top-level keys first, then one block per section (the YAML
   printer relies on this order). */
const nb_recipe_key nb_recipe_keys[] = {
    KS("name", name, "run", "run name (free text, used in logs)"),
    KS("out_dir", out_dir, "runs/run", "run folder: metrics.jsonl, ckpt-STEP.h5, latest.h5"),
    KU("seed", seed, "1337", "seed of every random draw (init, batches, dropout, sampling)"),
    KI("threads", threads, "0", 0, 1024, 0, "worker threads; 0 = OMP_NUM_THREADS or all cores"),
    KI("steps", steps, "2000", 1, NB_K_NOMAX_I, 0, "optimizer steps"),
    KI("eval_every", eval_every, "0", 0, NB_K_NOMAX_I, 0, "evaluate every N steps; 0 = only at the end"),
    KI("eval_batches", eval_batches, "0", 0, NB_K_NOMAX_I, 0, "batches per evaluation; 0 = whole validation split"),
    KI("log_every", log_every, "10", 1, NB_K_NOMAX_I, 0, "write a metrics line every N steps"),
    KI("ckpt_every", ckpt_every, "0", 0, NB_K_NOMAX_I, 0, "checkpoint every N steps; 0 = only at the end"),
    KI("keep_last", keep_last, "3", 0, NB_K_NOMAX_I, 0, "keep this many ckpt-STEP.h5; 0 = all"),
    KB("resume", resume, "false", "continue from out_dir/latest.h5 if it exists"),
    KE("on_nan", on_nan, "stop", "stop|skip",
       "non-finite loss or gradient: stop (keep the last good checkpoint) or skip the step"),
    KI("max_skips", max_skips, "10", 0, NB_K_NOMAX_I, 0, "with on_nan: skip, stop after this many skipped steps"),
    KI("sample_tokens", sample_tokens, "0", 0, 1000000, 0, "print a sample of N tokens at the end; 0 = none"),
    KS("sample_prompt", sample_prompt, "", "prompt of that sample"),

    KI("model.dim", model.dim, "128", 2, 65536, 0, "model width C"),
    KI("model.n_layers", model.n_layers, "4", 1, 1024, 0, "transformer blocks L"),
    KI("model.n_heads", model.n_heads, "4", 1, 1024, 0, "attention heads; must divide dim, head dim even"),
    KI("model.n_kv_heads", model.n_kv_heads, "0", 0, 1024, 0, "key/value heads (grouped-query); 0 = n_heads"),
    KI("model.hidden_dim", model.hidden_dim, "0", 0, 1 << 20, 0, "SwiGLU width; 0 = llama2.c rule from dim"),
    KI("model.vocab_size", model.vocab_size, "0", 0, 1 << 24, 0, "vocabulary V; 0 = from the tokenizer"),
    KI("model.seq_len", model.seq_len, "128", 1, 1 << 20, 0, "context length T"),
    KF("model.norm_eps", model.norm_eps, "1e-5", 0, 1, NB_K_OPEN_MIN, "RMSNorm epsilon"),
    KF("model.rope_theta", model.rope_theta, "10000", 0, 1e12, NB_K_OPEN_MIN, "RoPE base frequency"),
    KB("model.tied_embeddings", model.tied_embeddings, "true", "classifier shares the token embedding"),
    KF("model.dropout", model.dropout, "0", 0, 1, NB_K_OPEN_MAX, "dropout probability (training only)"),
    KS("model.init", model.init, "random", "random, llama2c:PATH (llama2.c .bin) or checkpoint:PATH (.h5)"),
    KF("model.init_std", model.init_std, "0.02", 0, 10, 0, "std of the random normal init"),

    KS("data.train", data.train, "", "training text file or prepared .h5 token dataset"),
    KS("data.val", data.val, "", "validation text or .h5; \"\" = tail of data.train"),
    KF("data.val_fraction", data.val_fraction, "0.1", 0, 1, NB_K_OPEN_MAX,
       "share of data.train held out for validation when data.val is \"\""),
    KS("data.tokenizer", data.tokenizer, "byte", "byte, char (vocabulary from the corpus) or llama2c:PATH"),
    KS("data.cache_dir", data.cache_dir, "", "where prepared .h5 datasets go; \"\" = out_dir"),
    KI("data.batch_size", data.batch_size, "16", 1, 65536, 0, "sequences per micro-batch B"),

    KE("optim.name", optim.name, "adamw", "adamw|sgd", "optimizer"),
    KF("optim.lr", optim.lr, "1e-3", 0, 10, 0, "peak learning rate"),
    KF("optim.min_lr", optim.min_lr, "1e-4", 0, 10, 0, "learning rate at the end of the decay"),
    KF("optim.beta1", optim.beta1, "0.9", 0, 1, NB_K_OPEN_MAX, "AdamW first-moment decay"),
    KF("optim.beta2", optim.beta2, "0.95", 0, 1, NB_K_OPEN_MAX, "AdamW second-moment decay"),
    KF("optim.eps", optim.eps, "1e-8", 0, 1, NB_K_OPEN_MIN, "AdamW epsilon"),
    KF("optim.weight_decay", optim.weight_decay, "0.1", 0, 10, 0,
       "decoupled weight decay (matrices only unless decay_embeddings)"),
    KB("optim.decay_embeddings", optim.decay_embeddings, "false", "also decay norms and embeddings"),
    KF("optim.momentum", optim.momentum, "0.9", 0, 1, NB_K_OPEN_MAX, "SGD momentum"),
    KF("optim.grad_clip", optim.grad_clip, "1.0", 0, 1e9, 0, "global gradient-norm clip; 0 = off"),
    KI("optim.grad_accum", optim.grad_accum, "1", 1, 65536, 0, "micro-batches per optimizer step"),

    KE("schedule.kind", schedule.kind, "cosine", "cosine|linear|constant", "decay after warm-up, lr -> min_lr"),
    KI("schedule.warmup_steps", schedule.warmup_steps, "100", 0, NB_K_NOMAX_I, 0, "linear warm-up from 0 to lr"),

    KB("quant.enabled", quant.enabled, "false", "apply the quantization policy (false = plain fp32 run)"),
    KE("quant.preset", quant.preset, "", "|q8_0|q4_0", "llama.cpp grid the rules come from; \"\" = none"),
    KI("quant.start_step", quant.start_step, "0", 0, NB_K_NOMAX_I, 0, "weights are fake-quantized from this step"),
    KI("quant.act_start_step", quant.act_start_step, "-1", -1, NB_K_NOMAX_I, 0,
       "activations from this step; -1 = with the weights"),
    KI("quant.freeze_observers_step", quant.freeze_observers_step, "-1", -1, NB_K_NOMAX_I, 0,
       "observers stop updating at this step; -1 = never"),
    KI("quant.lambda_start", quant.lambda_start, "0", 0, NB_K_NOMAX_I, 0,
       "x + lambda (Q(x) - x): lambda ramps 0 -> 1 from this step ..."),
    KI("quant.lambda_end", quant.lambda_end, "0", 0, NB_K_NOMAX_I, 0, "... to this one (both 0 = no ramp)"),
    KI("quant.anneal_from_bits", quant.anneal_from_bits, "0", 2, 8, NB_K_ZERO_OK,
       "bit-width annealing starts at this width; 0 = off"),
    KI("quant.anneal_start", quant.anneal_start, "0", 0, NB_K_NOMAX_I, 0, "annealing runs from this step ..."),
    KI("quant.anneal_end", quant.anneal_end, "0", 0, NB_K_NOMAX_I, 0, "... to this one, ending at each rule's bits"),
    KF("quant.scale_lr_mult", quant.scale_lr_mult, "1", 0, 1e6, 0, "learning-rate multiplier of learned scales"),
    KF("quant.scale_weight_decay", quant.scale_weight_decay, "0", 0, 10, 0, "weight decay of learned scales"),
    KI("quant.lsq_warmup_steps", quant.lsq_warmup_steps, "0", 0, NB_K_NOMAX_I, 0,
       "learned scales follow their observer for these steps"),
    KB("quant.osc_track", quant.osc_track, "false",
       "track weight oscillations (integer-code flips) and log them; implied by freeze_threshold/osc_damp"),
    KI("quant.osc_start_step", quant.osc_start_step, "-1", -1, NB_K_NOMAX_I, 0,
       "oscillation tracking starts at this step; -1 = when learned scales start learning"),
    KF("quant.osc_momentum", quant.osc_momentum, "0.01", 0, 1, NB_K_OPEN_MIN,
       "EMA momentum of the oscillation frequency and of each weight's integer code"),
    KF("quant.freeze_threshold", quant.freeze_threshold, "0", 0, 1, 0,
       "freeze a weight on its EMA code's grid point once its oscillation frequency exceeds this; 0 = off"),
    KF("quant.freeze_threshold_final", quant.freeze_threshold_final, "0", 0, 1, 0,
       "with freeze_anneal_end: the threshold anneals (cosine) from freeze_threshold to this ..."),
    KI("quant.freeze_anneal_start", quant.freeze_anneal_start, "0", 0, NB_K_NOMAX_I, 0, "... from this step ..."),
    KI("quant.freeze_anneal_end", quant.freeze_anneal_end, "0", 0, NB_K_NOMAX_I, 0,
       "... to this one; 0 = constant threshold"),
    KF("quant.osc_damp", quant.osc_damp, "0", 0, 1e9, 0,
       "oscillation dampening: after each step W -= lr * osc_damp * (W - Q(W)); 0 = off"),
    KB("quant.quantize_embeddings", quant.quantize_embeddings, "false", "rules also apply to the token embedding"),
    KB("quant.quantize_classifier", quant.quantize_classifier, "false", "rules also apply to an untied classifier"),
    KR("quant.weights", quant.weights, "weight rules, first match wins (keys: quant.weights[].*)"),
    KR("quant.activations", quant.acts,
       "rules for the inputs of matching linear weights (keys: quant.activations[].*)"),

    KB("distill.enabled", distill.enabled, "false", "add a distillation loss from a teacher"),
    KS("distill.teacher", distill.teacher, "", "teacher checkpoint; \"\" = frozen copy of the starting model"),
    KF("distill.alpha", distill.alpha, "0.5", 0, 1, 0, "loss = alpha CE + (1 - alpha) T^2 KL(teacher || student)"),
    KF("distill.temperature", distill.temperature, "2", 0, 100, NB_K_OPEN_MIN, "softmax temperature T"),
    KB("distill.data_free", distill.data_free, "false",
       "the teacher generates the training text itself (LLM-QAT); data.train is then not used"),
    KI("distill.gen_sequences", distill.gen_sequences, "256", 1, 1 << 24, 0, "data_free: sequences the teacher writes"),
    KI("distill.gen_length", distill.gen_length, "0", 2, 1 << 20, NB_K_ZERO_OK,
       "data_free: tokens per sequence (start included); 0 = model.seq_len + 1, at most the teacher's seq_len"),
    KF("distill.gen_temperature", distill.gen_temperature, "1", 0, 100, 0,
       "data_free: sampling temperature of the teacher; 0 = greedy"),
    KF("distill.gen_top_p", distill.gen_top_p, "1", 0, 1, NB_K_OPEN_MIN, "data_free: nucleus sampling when < 1"),
    KI("distill.gen_greedy_tokens", distill.gen_greedy_tokens, "0", 0, 1 << 20, 0,
       "data_free: tokens after the start taken top-1 before sampling (LLM-QAT: 3-5 with gen_start random)"),
    KE("distill.gen_start", distill.gen_start, "bos", "bos|random",
       "data_free: sequences start at BOS, or BOS + a uniformly random ordinary token (LLM-QAT)"),
};
const int nb_recipe_n_keys = (int)(sizeof nb_recipe_keys / sizeof nb_recipe_keys[0]);
_Static_assert(sizeof nb_recipe_keys / sizeof nb_recipe_keys[0] <= NB_RECIPE_MAX_KEYS, "raise NB_RECIPE_MAX_KEYS");

/* clang-format off */
#define RI(p, f, d, lo, hi, fl, h) { p, NB_K_INT, FLD(nb_qrule, f), d, lo, hi, fl, NULL, h, NULL, NULL }
#define RF(p, f, d, lo, hi, fl, h) { p, NB_K_FLOAT, FLD(nb_qrule, f), d, lo, hi, fl, NULL, h, NULL, NULL }
#define RB(p, f, d, h) { p, NB_K_BOOL, FLD(nb_qrule, f), d, 0, 1, 0, NULL, h, NULL, NULL }
#define RS(p, f, d, h) { p, NB_K_STR, FLD(nb_qrule, f), d, 0, 0, 0, NULL, h, NULL, NULL }
#define RE(p, f, d, v, h, da, va) { p, NB_K_ENUM, FLD(nb_qrule, f), d, 0, 0, 0, v, h, da, va }
/* clang-format on */

/* The keys of one rule (an item of quant.weights or quant.activations). */
const nb_recipe_key nb_recipe_rule_keys[] = {
    RS("match", match, "*", "glob on parameter names (* ? [abc]); first matching rule wins"),
    RI("bits", bits, "8", 2, 8, NB_K_ZERO_OK, "grid width; 0 = keep matching tensors in fp32"),
    RB("symmetric", symmetric, "true", "zero point 0 (else asymmetric with a zero point)"),
    RB("restrict_range", restrict_range, "false", "symmetric grid -(2^(b-1)-1)..2^(b-1)-1"),
    RB("ternary", ternary, "false", "weights in {-1, 0, 1} x scale (bits ignored)"),
    RE("granularity", granularity, "channel", "tensor|channel|row|group|q8_0|q4_0|f16",
       "weights: one scale per tensor, output channel (row), group of group_size inputs, or a llama.cpp/f16 "
       "grid; activations: token (dynamic), group (dynamic), tensor (static, observer) or q8_0",
       "token", "token|group|tensor|q8_0"),
    RI("group_size", group_size, "32", 1, 65536, 0, "inputs per group: 32, 64 or 128 with granularity group"),
    RE("estimator", estimator, "ste", "ste|clipped_ste|lsq|lsq+|pact",
       "gradient estimator; lsq/lsq+ learn the scale (lsq+ also the offset), pact learns a clip (activations)", NULL,
       NULL),
    RE("observer", observer, "minmax", "minmax|ema_minmax|ema|mse|percentile", "how scales are initialised or tracked",
       NULL, NULL),
    RF("percentile", percentile, "99.99", 0, 100, NB_K_OPEN_MIN, "observer percentile: clip at this percentile"),
    RF("ema_decay", ema_decay, "0.99", 0, 1, NB_K_OPEN_MAX, "observer ema_minmax: decay of the running min/max"),
    RE("scale_dtype", scale_dtype, "f32", "f32|f16", "scales stored as f32 or rounded to f16 (llama.cpp)", NULL, NULL),
    RE("tail", tail, "error", "error|short_group",
       "row length not a multiple of group_size: error, or a shorter last group", NULL, NULL),
};
_Static_assert(sizeof nb_recipe_rule_keys / sizeof nb_recipe_rule_keys[0] == NB_RECIPE_N_RULE_KEYS,
               "NB_RECIPE_N_RULE_KEYS must count the rows");

/* "file:line:col", "file", "override 'k=v'" (long overrides shortened). */
static void loc_text(char *buf, size_t n, const nb_recipe_loc *at) {
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

nb_status nb_recipe_fail_at(const nb_recipe_loc *at, const char *fmt, ...) {
    char where[160], what[800];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    loc_text(where, sizeof where, at);
    return nb_fail(NB_EINVAL, "%s: %s", where, what);
}

/* A value as shown in messages: numbers as they are, anything else quoted, long ones cut. */
static void describe(char *buf, size_t n, const char *s, size_t len, int quoted) {
    if (len == 0 && !quoted) {
        snprintf(buf, n, "nothing");
        return;
    }
    int numeric = !quoted && len <= 40;
    for (size_t i = 0; i < len && numeric; i++) numeric = strchr("0123456789+-.eE", s[i]) != NULL;
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
int nb_recipe_edit_distance(const char *a, size_t na, const char *b, size_t nb) {
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
int nb_recipe_close_enough(int dist, size_t len) {
    return (size_t)dist < len && (dist <= 2 || (size_t)dist * 3 <= len);
}

/* ---------------------------------------------------------------------------------------------- */
/* Scalars                                                                                        */

/* Strict integer: optional sign, decimal digits, nothing else, no overflow. */
int nb_recipe_parse_ll(const char *s, size_t len, long long *out) {
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
static int parse_float(const char *s, size_t len, double *out, float *outf) {
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
    *outf = strtof(buf, NULL); /* rounded once, as the printer's check reads it back */
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

int nb_recipe_is_null(const char *s, size_t len) {
    return len == 0 || (len == 1 && s[0] == '~') ||
           (len == 4 && (!memcmp(s, "null", 4) || !memcmp(s, "Null", 4) || !memcmp(s, "NULL", 4)));
}

/* The allowed values in words: "an integer in 2..8 or 0", "a number in [0, 1)", "one of a, b". */
void nb_recipe_expect(char *buf, size_t n, const nb_recipe_key *k, int act) {
    switch (k->type) {
    case NB_K_INT:
        if (k->max >= NB_K_NOMAX_I)
            snprintf(buf, n, "an integer >= %.0f", k->min);
        else
            snprintf(buf, n, "an integer in %.0f..%.0f%s", k->min, k->max, k->flags & NB_K_ZERO_OK ? " or 0" : "");
        break;
    case NB_K_FLOAT: {
        int omin = k->flags & NB_K_OPEN_MIN, omax = k->flags & NB_K_OPEN_MAX;
        if (k->max >= NB_K_NOMAX_F)
            snprintf(buf, n, "a number %s %g", omin ? ">" : ">=", k->min);
        else
            snprintf(buf, n, "a number in %c%g, %g%c", omin ? '(' : '[', k->min, k->max, omax ? ')' : ']');
        break;
    }
    case NB_K_BOOL: snprintf(buf, n, "true or false"); break;
    case NB_K_U64: snprintf(buf, n, "an integer in 0..18446744073709551615"); break;
    case NB_K_STR: snprintf(buf, n, "text of at most %zu bytes", k->size - 1); break;
    case NB_K_RULES: snprintf(buf, n, "a list of at most %d rules", NB_MAX_QRULES); break;
    case NB_K_ENUM: {
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
nb_status nb_recipe_set_scalar(const nb_recipe_key *k, int act, void *base, const char *path, const char *s, size_t len,
                               int quoted, const nb_recipe_loc *at) {
    char *f = (char *)base + k->off;
    char got[80], want[200];
    describe(got, sizeof got, s, len, quoted);
    nb_recipe_expect(want, sizeof want, k, act);
    switch (k->type) {
    case NB_K_INT: {
        long long v = 0;
        int ok = !quoted && nb_recipe_parse_ll(s, len, &v);
        if (!ok || ((v < k->min || v > k->max) && !(v == 0 && (k->flags & NB_K_ZERO_OK))))
            return nb_recipe_fail_at(at, "%s: expected %s, got %s", path, want, got);
        *(int *)f = (int)v;
        return NB_OK;
    }
    case NB_K_FLOAT: {
        double v = 0;
        float vf = 0;
        int ok = !quoted && parse_float(s, len, &v, &vf);
        if (ok) {
            ok = (k->flags & NB_K_OPEN_MIN) ? v > k->min : v >= k->min;
            ok = ok && ((k->flags & NB_K_OPEN_MAX) ? v < k->max : v <= k->max);
        }
        if (!ok) return nb_recipe_fail_at(at, "%s: expected %s, got %s", path, want, got);
        *(float *)f = vf;
        return NB_OK;
    }
    case NB_K_U64: {
        unsigned long long v = 0;
        if (quoted || !parse_u64(s, len, &v)) return nb_recipe_fail_at(at, "%s: expected %s, got %s", path, want, got);
        *(unsigned long long *)f = v;
        return NB_OK;
    }
    case NB_K_BOOL: {
        static const char *const yes[] = {"true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON"};
        static const char *const no[] = {"false", "False", "FALSE", "no", "No", "NO", "off", "Off", "OFF"};
        for (int i = 0; i < 9 && !quoted; i++) {
            if (strlen(yes[i]) == len && !memcmp(yes[i], s, len)) return *(int *)f = 1, NB_OK;
            if (strlen(no[i]) == len && !memcmp(no[i], s, len)) return *(int *)f = 0, NB_OK;
        }
        return nb_recipe_fail_at(at, "%s: expected %s, got %s", path, want, got);
    }
    case NB_K_STR:
    case NB_K_ENUM:
        if (!quoted && nb_recipe_is_null(s, len)) len = 0;
        if (memchr(s, 0, len)) return nb_recipe_fail_at(at, "%s: the text contains a NUL character", path);
        if (!valid_utf8((const unsigned char *)s, len))
            return nb_recipe_fail_at(at, "%s: the text is not valid UTF-8", path);
        if (k->type == NB_K_ENUM && !enum_has(kvalues(k, act), s, len)) {
            /* suggest the closest allowed value */
            const char *v = kvalues(k, act), *best = NULL;
            size_t best_len = 0;
            int bd = 1000;
            for (;;) {
                const char *bar = strchr(v, '|');
                size_t l = bar ? (size_t)(bar - v) : strlen(v);
                int d = nb_recipe_edit_distance(s, len, v, l);
                if (l && d < bd) bd = d, best = v, best_len = l;
                if (!bar) break;
                v = bar + 1;
            }
            if (best && nb_recipe_close_enough(bd, len))
                return nb_recipe_fail_at(at, "%s: expected %s, got %s; did you mean '%.*s'?", path, want, got,
                                         (int)best_len, best);
            return nb_recipe_fail_at(at, "%s: expected %s, got %s", path, want, got);
        }
        if (len >= k->size)
            return nb_recipe_fail_at(at, "%s: the text is %zu bytes long, this key holds at most %zu", path, len,
                                     k->size - 1);
        memset(f, 0, k->size);
        memcpy(f, s, len);
        return NB_OK;
    case NB_K_RULES: break;
    }
    NB_ASSERT(0);
    return NB_EINVAL;
}

void nb_recipe_rule_defaults(nb_qrule *q, int act) {
    memset(q, 0, sizeof *q);
    nb_recipe_loc at = {"defaults", 0, 0, NULL};
    for (int i = 0; i < NB_RECIPE_N_RULE_KEYS; i++) {
        const char *d = kdef(&nb_recipe_rule_keys[i], act);
        nb_status s =
            nb_recipe_set_scalar(&nb_recipe_rule_keys[i], act, q, nb_recipe_rule_keys[i].path, d, strlen(d), 0, &at);
        NB_ASSERT(s == NB_OK);
    }
}

void nb_recipe_defaults(nb_recipe *r) {
    memset(r, 0, sizeof *r);
    nb_recipe_loc at = {"defaults", 0, 0, NULL};
    for (int i = 0; i < nb_recipe_n_keys; i++) {
        const nb_recipe_key *k = &nb_recipe_keys[i];
        if (k->type == NB_K_RULES) continue; /* memset: no rules */
        /* the table's sizes must match the types of the fields */
        NB_ASSERT(k->type == NB_K_STR || k->type == NB_K_ENUM ||
                  k->size == (k->type == NB_K_FLOAT ? sizeof(float)
                              : k->type == NB_K_U64 ? sizeof(unsigned long long)
                                                    : sizeof(int)));
        nb_status s = nb_recipe_set_scalar(k, 0, r, k->path, k->def, strlen(k->def), 0, &at);
        NB_ASSERT(s == NB_OK);
    }
}
