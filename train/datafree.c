/* datafree.c: teacher-generated training text (LLM-QAT's data-free distillation). */
#include "datafree.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "../core/rng.h"
#include "../core/simd.h"
#include "../ops/kernels/vec.h"

#define KEY_VERSION 1

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Is token id an ordinary piece of text (a candidate random start)? */
static int ordinary(const nb_tokenizer *tok, int id) {
    if (id == nb_tokenizer_bos(tok) || id == nb_tokenizer_eos(tok)) return 0;
    size_t n = 0;
    float score;
    const char *s = nb_tokenizer_token(tok, id, &n, &score);
    if (!s || n == 0) return 0;
    if (n >= 3 && s[0] == '<' && s[n - 1] == '>') return 0; /* <unk>, <s>, <0x0A> */
    unsigned char c = (unsigned char)s[0];
    if (n == 1 && (c >= 0x80 || (c < 0x20 && c != '\n'))) return 0;
    if ((c & 0xc0) == 0x80) return 0; /* starts inside a UTF-8 sequence */
    return 1;
}

/* The start token when no BOS exists: a newline when it is one token, else token 0 (as nb_generate) */
static int plain_start(const nb_tokenizer *tok) {
    int32_t *ids = NULL;
    int64_t n = 0;
    int t = 0;
    if (nb_tokenizer_encode(tok, "\n", 1, 0, 0, &ids, &n) == NB_OK && n == 1) t = ids[0];
    nb_free(ids);
    nb_clear_error();
    return t;
}

/* One sequence: seq[0 .. L) from the start tokens, K greedy tokens, then samples. */
static nb_status one_sequence(nb_decoder *d, nb_sampler *smp, const nb_datafree_opts *o, int64_t i, int start,
                              const int32_t *cands, int n_cands, int32_t *seq) {
    int n0 = 0;
    if (start >= 0) seq[n0++] = start;
    if (o->random_start) {
        uint64_t h = nb_rng_hash(o->seed, NB_RNG_STREAM_GEN_START, (uint64_t)i);
        seq[n0++] = cands[(int64_t)(((unsigned __int128)h * (uint64_t)n_cands) >> 64)];
    }
    smp->rng = nb_rng_make(o->seed, NB_RNG_STREAM_GEN);
    smp->rng.counter = (uint64_t)i << 32;
    const float *logits = NULL;
    for (int p = 0; p < o->len - 1; p++) {
        NB_TRY(nb_model_decode(d, seq[p], p, &logits));
        if (p + 1 < n0) continue; /* still feeding the start */
        int next = p + 1 < n0 + o->greedy ? nb_argmax(logits, d->m->cfg.vocab_size) : nb_sampler_sample(smp, logits);
        seq[p + 1] = next;
    }
    return NB_OK;
}

nb_status nb_datafree_generate(nb_model *teacher, const nb_tokenizer *tok, const nb_datafree_opts *o, int32_t *ids) {
    NB_ASSERT(teacher && tok && o && ids);
    if (teacher->qat) return nb_fail(NB_EINVAL, "data-free generation: the teacher must be fp32 (no quant policy)");
    const int V = teacher->cfg.vocab_size;
    if (nb_tokenizer_vocab(tok) > V)
        return nb_fail(NB_EINVAL, "data-free generation: the tokenizer has %d tokens, the teacher %d",
                       nb_tokenizer_vocab(tok), V);
    int bos = nb_tokenizer_bos(tok);
    int start = bos >= 0 ? bos : o->random_start ? -1 : plain_start(tok);
    int n_start = (start >= 0) + (o->random_start != 0);
    if (o->n_seq < 1) return nb_fail(NB_EINVAL, "data-free generation: %d sequences", o->n_seq);
    if (o->len < n_start + 1 || o->len > teacher->cfg.seq_len)
        return nb_fail(NB_EINVAL, "data-free generation: sequences of %d tokens; expected %d .. the teacher's seq_len %d",
                       o->len, n_start + 1, teacher->cfg.seq_len);
    if (o->greedy < 0) return nb_fail(NB_EINVAL, "data-free generation: %d greedy tokens", o->greedy);
    int32_t *cands = nb_malloc((size_t)V * sizeof *cands);
    if (!cands) return nb_fail(NB_ENOMEM, "data-free generation: %d token candidates", V);
    int n_cands = 0;
    for (int t = 0; o->random_start && t < nb_tokenizer_vocab(tok); t++)
        if (ordinary(tok, t)) cands[n_cands++] = t;
    if (o->random_start && n_cands == 0) {
        nb_free(cands);
        return nb_fail(NB_EINVAL, "data-free generation: the tokenizer has no ordinary token to start from");
    }

    int nt = o->threads > 0 ? o->threads : nb_threads_get();
    if (nt > o->n_seq) nt = o->n_seq;
    if (nt < 1) nt = 1;
    nb_decoder *dec = nb_calloc((size_t)nt, sizeof *dec);
    nb_sampler *smp = nb_calloc((size_t)nt, sizeof *smp);
    nb_status s = dec && smp ? NB_OK : nb_fail(NB_ENOMEM, "data-free generation: %d decoders", nt);
    for (int t = 0; t < nt && s == NB_OK; t++) {
        s = nb_decoder_init(&dec[t], teacher, o->len);
        if (s == NB_OK) s = nb_sampler_init(&smp[t], V, o->temperature, o->top_p, o->seed);
    }
    (void)nb_vec(); /* resolve the kernel table before the threads use it */
    double t0 = now_s(), last = t0;
    nb_status worker_s = NB_OK;
    char worker_msg[1024] = "";
    const int64_t chunk = (int64_t)nt * 4;
    for (int64_t c0 = 0; c0 < o->n_seq && s == NB_OK; c0 += chunk) {
        if (o->stop && *o->stop) {
            s = nb_fail(NB_EINTR, "interrupted while generating the training text (%lld of %d sequences; nothing saved)",
                        (long long)c0, o->n_seq);
            break;
        }
        int64_t c1 = c0 + chunk < o->n_seq ? c0 + chunk : o->n_seq;
        /* each sequence draws only from (seed, its index): who decodes it does not matter */
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt)
        for (int64_t i = c0; i < c1; i++) {
            int t = 0;
#ifdef _OPENMP
            t = omp_get_thread_num();
#endif
            nb_status si = one_sequence(&dec[t], &smp[t], o, i, start, cands, n_cands, ids + i * o->len);
            if (si != NB_OK) {
#pragma omp critical(nb_datafree_err)
                if (worker_s == NB_OK) {
                    worker_s = si;
                    snprintf(worker_msg, sizeof worker_msg, "sequence %lld: %s", (long long)i, nb_errmsg());
                }
            }
        }
        if (worker_s != NB_OK) {
            s = nb_fail(worker_s, "data-free generation: %s", worker_msg);
            break;
        }
        double t = now_s();
        if (o->on_progress && (t - last >= 0.5 || c1 == o->n_seq)) {
            last = t;
            double el = t - t0, rate = el > 0 ? (double)c1 * o->len / el : 0.0;
            double eta = c1 > 0 ? el / (double)c1 * (double)(o->n_seq - c1) : 0.0;
            o->on_progress(o->ud, c1, o->n_seq, rate, eta);
        }
    }
    for (int t = 0; dec && smp && t < nt; t++) {
        nb_decoder_free(&dec[t]);
        nb_sampler_free(&smp[t]);
    }
    nb_free(dec);
    nb_free(smp);
    nb_free(cands);
    return s;
}

void nb_datafree_key(const nb_model *teacher, const nb_tokenizer *tok, const nb_datafree_opts *o, char *buf,
                     size_t n) {
    uint64_t h = 0xcbf29ce484222325ULL;
    const unsigned char *p = (const unsigned char *)teacher->params.data;
    for (size_t i = 0; i < (size_t)teacher->params.numel * sizeof(float); i++) h = (h ^ p[i]) * 0x100000001b3ULL;
    snprintf(buf, n,
             "datafree v%d sequences=%d length=%d temperature=%.9g top_p=%.9g greedy=%d start=%s seed=%llu "
             "vocab=%d teacher=%d/%d/%d/%d fnv=%016llx",
             KEY_VERSION, o->n_seq, o->len, (double)o->temperature, (double)o->top_p, o->greedy,
             o->random_start ? "random" : "bos", (unsigned long long)o->seed, nb_tokenizer_vocab(tok), teacher->cfg.dim,
             teacher->cfg.n_layers, teacher->cfg.vocab_size, teacher->cfg.seq_len, (unsigned long long)h);
}

/* Does the file at path hold the set for key (and tokenizer tok)? Quiet: any error is "no". */
static int current(const char *path, const char *key, const nb_tokenizer *tok) {
    struct stat st;
    if (stat(path, &st) != 0) return 0;
    char *have = NULL;
    int same = nb_dataset_key(path, &have) == NB_OK && !strcmp(have, key);
    nb_free(have);
    if (same) {
        nb_tokenizer *t = NULL;
        same = nb_dataset_tokenizer(path, &t) == NB_OK && nb_tokenizer_equal(t, tok);
        nb_tokenizer_free(t);
    }
    nb_clear_error();
    return same;
}

nb_status nb_datafree_prepare(const char *path, nb_model *teacher, const nb_tokenizer *tok,
                              const nb_datafree_opts *o, nb_tokens *out, int *reused) {
    memset(out, 0, sizeof *out);
    *reused = 0;
    char key[1024];
    nb_datafree_key(teacher, tok, o, key, sizeof key);
    if (current(path, key, tok)) {
        NB_TRY(nb_dataset_open_split(path, "train", out));
        if (out->n == (int64_t)o->n_seq * o->len) {
            *reused = 1;
            return NB_OK;
        }
        nb_tokens_free(out); /* edited file: make it again */
    }
    int64_t total = (int64_t)o->n_seq * o->len;
    if (o->n_seq < 1 || o->len < 1 || total > ((int64_t)1 << 32))
        return nb_fail(NB_EINVAL, "data-free generation: %d sequences x %d tokens", o->n_seq, o->len);
    nb_tokens t = {0};
    t.ids = nb_malloc((size_t)total * sizeof(int32_t));
    if (!t.ids) return nb_fail(NB_ENOMEM, "data-free generation: %lld tokens", (long long)total);
    t.n = total;
    t.n_docs = o->n_seq;
    nb_status s = nb_datafree_generate(teacher, tok, o, t.ids);
    if (s == NB_OK) s = nb_dataset_write_tokens(path, tok, &t, NULL, "teacher (distill.data_free)", key);
    if (s != NB_OK) {
        nb_tokens_free(&t);
        return s;
    }
    *out = t;
    return NB_OK;
}
