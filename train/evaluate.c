/* evaluate.c: windowed evaluation loss and generation. */
#include "../data/tokenizer.h"
#include "evaluate.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../ops/ops.h"
#include "../data/dataset.h"
#include "checkpoint.h"
#include "runtime.h"
#include "import_llama2c.h"

static int ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

/* ---- evaluation ---- */

/* loss of `b` windows of T targets starting at starts[0..b) */
static nb_status eval_batch(nb_tape *tape, nb_model *m, const int32_t *tokens, const int64_t *starts, int b, int T,
                            double *sum) {
    nb_arena_reset(tape->arena);
    nb_tape_reset(tape);
    int64_t shape[2] = {b, T};
    nb_tensor *ids = nb_tensor_new(tape->arena, NB_I32, 2, shape);
    nb_tensor *tgt = nb_tensor_new(tape->arena, NB_I32, 2, shape);
    if (!ids || !tgt) return nb_fail(NB_ENOMEM, "eval: batch (%d, %d)", b, T);
    int32_t *pi = ids->data, *pt = tgt->data;
    for (int i = 0; i < b; i++) {
        memcpy(pi + (size_t)i * T, tokens + starts[i], (size_t)T * sizeof(int32_t));
        memcpy(pt + (size_t)i * T, tokens + starts[i] + 1, (size_t)T * sizeof(int32_t));
    }
    nb_tensor *logits = NULL, *loss = NULL;
    NB_TRY(nb_model_forward(tape, m, ids, tgt, &logits, &loss));
    float l = nb_f32(loss)[0];
    if (!isfinite(l)) return nb_fail(NB_ENAN, "eval: loss is %s", isnan(l) ? "nan" : "inf");
    *sum += (double)l * b * T;
    return NB_OK;
}

nb_status nb_eval_tokens(nb_tape *tape, nb_model *m, const int32_t *tokens, int64_t n, int B, int T,
                         int64_t max_windows, double *loss, int64_t *n_targets) {
    *loss = NAN;
    *n_targets = 0;
    if (n < 2) return nb_fail(NB_EINVAL, "eval: %lld tokens, need at least 2", (long long)n);
    if (B < 1 || T < 1 || T > m->cfg.seq_len)
        return nb_fail(NB_EINVAL, "eval: batch %d x %d (seq_len %d)", B, T, m->cfg.seq_len);
    const int V = m->cfg.vocab_size;
    for (int64_t i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= V)
            return nb_fail(NB_EINVAL, "eval: token %lld is %d, outside the model's vocabulary 0..%d", (long long)i,
                           tokens[i], V - 1);
    int64_t nw = (n - 1) / T, tail = (n - 1) % T;
    int all = max_windows <= 0 || max_windows >= nw;
    int64_t count = all ? nw : max_windows;
    int rec = nb_tape_grad(tape, 0);
    int training = tape->training;
    tape->training = 0;
    double sum = 0.0;
    int64_t starts[64];
    if (B > 64) B = 64;
    nb_status s = NB_OK;
    for (int64_t k = 0; k < count && s == NB_OK;) {
        int b = 0;
        for (; b < B && k < count; b++, k++) starts[b] = (all ? k : k * nw / count) * T;
        s = eval_batch(tape, m, tokens, starts, b, T, &sum);
    }
    int64_t targets = count * T;
    if (s == NB_OK && all && tail > 0) {
        starts[0] = nw * T;
        s = eval_batch(tape, m, tokens, starts, 1, (int)tail, &sum);
        targets += tail;
    }
    nb_arena_reset(tape->arena);
    nb_tape_reset(tape);
    nb_tape_grad(tape, rec);
    tape->training = training;
    if (s != NB_OK) return s;
    *loss = sum / (double)targets;
    *n_targets = targets;
    return NB_OK;
}

/* ---- generation ---- */


nb_status nb_generate(nb_model *m, const nb_tokenizer *tok, const char *prompt, const nb_generate_opts *o,
                      int32_t **out, int *n_out, char **text) {
    if (out) *out = NULL;
    if (n_out) *n_out = 0;
    if (text) *text = NULL;
    if (o->n_tokens < 0) return nb_fail(NB_EINVAL, "generate: %d tokens", o->n_tokens);
    if (nb_tokenizer_vocab(tok) > m->cfg.vocab_size)
        return nb_fail(NB_EINVAL, "generate: tokenizer has %d tokens but the model only %d", nb_tokenizer_vocab(tok),
                       m->cfg.vocab_size);
    /* prompt ids (with BOS; a tokenizer without BOS starts from a newline when the prompt is empty) */
    int32_t *pids = NULL;
    int64_t np = 0;
    const char *pr = prompt ? prompt : "";
    if (!pr[0] && nb_tokenizer_bos(tok) < 0) pr = "\n";
    NB_TRY(nb_tokenizer_encode(tok, pr, strlen(pr), 1, 0, &pids, &np));
    if (np == 0) {
        nb_free(pids);
        pids = nb_malloc(sizeof(int32_t));
        if (!pids) return nb_fail(NB_ENOMEM, "generate: prompt");
        pids[0] = 0;
        np = 1;
    }
    const int T = m->cfg.seq_len;
    int64_t total = np + o->n_tokens;
    int32_t *seq = nb_malloc((size_t)total * sizeof *seq);
    nb_decoder d;
    nb_sampler smp;
    memset(&d, 0, sizeof d);
    memset(&smp, 0, sizeof smp);
    char *buf = NULL;
    size_t blen = 0, bcap = 0;
    nb_status s = NB_OK;
    if (!seq) {
        nb_free(pids);
        return nb_fail(NB_ENOMEM, "generate: %lld tokens", (long long)total);
    }
    memcpy(seq, pids, (size_t)np * sizeof *seq);
    nb_free(pids);
    if ((s = nb_decoder_init(&d, m, T)) != NB_OK) goto done;
    if ((s = nb_sampler_init(&smp, m->cfg.vocab_size, o->temperature, o->top_p, o->seed)) != NB_OK) goto done;
    int64_t len = np;   /* tokens in seq */
    int64_t ctx0 = 0;   /* seq index at cache position 0 */
    int64_t fed = 0;    /* tokens of seq [ctx0, ctx0 + fed) are in the cache */
    const int bos = nb_tokenizer_bos(tok), eos = nb_tokenizer_eos(tok);
    while (len < total) {
        /* context full: keep the last T/2 tokens and prefill them again */
        if (len - ctx0 > T) {
            ctx0 = len - (T / 2 > 0 ? T / 2 : 1);
            fed = 0;
        }
        const float *logits = NULL;
        while (ctx0 + fed < len) {
            if ((s = nb_model_decode(&d, seq[ctx0 + fed], (int)fed, &logits)) != NB_OK) goto done;
            fed++;
        }
        int next = nb_sampler_sample(&smp, logits);
        if (o->stop_at_eos && (next == bos || next == eos) && next >= 0) break;
        seq[len] = next;
        if ((s = nb_tokenizer_append_piece(tok, seq[len - 1], next, &buf, &blen, &bcap)) != NB_OK) goto done;
        len++;
    }
    if (out) {
        *out = nb_malloc((size_t)(len - np > 0 ? len - np : 1) * sizeof **out);
        if (!*out) {
            s = nb_fail(NB_ENOMEM, "generate: output");
            goto done;
        }
        memcpy(*out, seq + np, (size_t)(len - np) * sizeof **out);
    }
    if (n_out) *n_out = (int)(len - np);
    if (text) {
        if (!buf) buf = nb_strdup("");
        *text = buf;
        buf = NULL;
    }
done:
    nb_free(buf);
    nb_free(seq);
    nb_sampler_free(&smp);
    nb_decoder_free(&d);
    return s;
}

/* ---- loading ---- */

/* "byte", "llama2c:PATH" or a bare PATH (a llama2.c tokenizer.bin) */
static nb_status tokenizer_open(const char *arg, nb_tokenizer **tok) {
    if (!strcmp(arg, "byte") || !strncmp(arg, "llama2c:", 8)) return nb_tokenizer_from_spec(arg, NULL, 0, tok);
    char spec[2048];
    snprintf(spec, sizeof spec, "llama2c:%s", arg);
    return nb_tokenizer_from_spec(spec, NULL, 0, tok);
}

nb_status nb_model_open_any(const char *path, const char *tokenizer_path, nb_model *m, nb_tokenizer **tok) {
    memset(m, 0, sizeof *m);
    *tok = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return nb_fail(NB_EIO, "open %s: %s", path, strerror(errno));
    fclose(f);
    if (nb_file_is_hdf5(path)) {
        nb_ckpt *c = NULL;
        NB_TRY(nb_ckpt_open(path, &c));
        nb_status s = nb_ckpt_load_model(c, m);
        if (s == NB_OK) {
            if (tokenizer_path) s = tokenizer_open(tokenizer_path, tok);
            else if (nb_ckpt_has_tokenizer(c)) s = nb_ckpt_read_tokenizer(c, tok);
            else s = nb_fail(NB_EINVAL, "%s has no tokenizer; give one with --tokenizer llama2c:PATH", path);
            if (s != NB_OK) nb_model_free(m);
        }
        nb_ckpt_close(c);
        return s;
    }
    if (ends_with(path, ".bin")) {
        if (!tokenizer_path)
            return nb_fail(NB_EINVAL, "%s is a llama2.c model: give its tokenizer with --tokenizer PATH", path);
        NB_TRY(nb_llama2c_load(path, m));
        nb_status s = tokenizer_open(tokenizer_path, tok);
        if (s != NB_OK) nb_model_free(m);
        return s;
    }
    return nb_fail(NB_EFORMAT,
                   "%s: unknown model format: not a nibble checkpoint, a llama2.c model (.bin) or an export (GGUF, "
                   "nibble export .h5, llama2.c version-2 .bin)",
                   path);
}

