/* datafree.h: data-free distillation as in LLM-QAT (Liu et al. 2023): the fp32 teacher writes the
   training text itself. N sequences of L tokens are decoded with the teacher's KV cache: a start
   (BOS, or BOS + a uniformly random ordinary token), K greedy (top-1) tokens, then tokens sampled
   from the teacher's distribution. Sequence i is a pure function of (seed, i), so the set is the
   same for any thread count. The set is stored as a token dataset (data/dataset.h) whose
   prepare_key records the settings and a hash of the teacher, and is reused while they match. */
#ifndef NB_DATAFREE_H
#define NB_DATAFREE_H

#include <signal.h>
#include <stdint.h>

#include "../data/dataset.h"
#include "../data/tokenizer.h"
#include "model.h"

/* rng streams: sampling draws (counter = sequence << 32 | draw) and random start tokens (counter =
   sequence) */
#define NB_RNG_STREAM_GEN 0x67656e74ULL       /* "gent" */
#define NB_RNG_STREAM_GEN_START 0x67737274ULL /* "gsrt" */
/* the generated set's file name in the run folder */
#define NB_DATAFREE_FILE "generated.tokens.h5"

typedef struct nb_datafree_opts {
    int n_seq;           /* sequences N */
    int len;             /* tokens per sequence L, start token(s) included; 2 .. teacher seq_len */
    float temperature;   /* sampling temperature after the greedy tokens; 0 = greedy throughout */
    float top_p;         /* nucleus sampling when in (0, 1); 1 = the whole distribution */
    int greedy;          /* K: tokens after the start taken top-1 */
    int random_start;    /* 0: start = BOS; 1: BOS (when the tokenizer has one) + a random token */
    uint64_t seed;
    int threads;         /* sequences decoded in parallel; 0 = nb_threads_get() */
    volatile sig_atomic_t *stop; /* polled between chunks of sequences: NB_EINTR when set */
    void *ud;
    /* progress, at most every 0.5 s and once at the end (may be NULL) */
    void (*on_progress)(void *ud, int64_t done, int64_t total, double tokens_per_s, double eta_s);
} nb_datafree_opts;

/* Writes o->n_seq sequences of o->len tokens into ids (n_seq * len, caller-allocated), decoded
   with `teacher` (fp32: teacher->qat must be NULL; not modified). Random starts are drawn
   uniformly from the ordinary tokens: not BOS/EOS, not <...> specials or <0xNN> byte fallbacks,
   not lone control or non-ASCII bytes. */
nb_status nb_datafree_generate(nb_model *teacher, const nb_tokenizer *tok, const nb_datafree_opts *o, int32_t *ids);

/* The settings that make a generated set, as a text key (into buf): format version, N, L,
   temperature, top_p, K, start, seed, vocabulary and an FNV-1a hash of the teacher's parameters. */
void nb_datafree_key(const nb_model *teacher, const nb_tokenizer *tok, const nb_datafree_opts *o, char *buf,
                     size_t n);

/* The generated set at path: loaded when the file exists with the same key and tokenizer (*reused
   = 1), else generated and written atomically (*reused = 0). out = its /train split (N x L tokens,
   N documents); you own it. */
nb_status nb_datafree_prepare(const char *path, nb_model *teacher, const nb_tokenizer *tok,
                              const nb_datafree_opts *o, nb_tokens *out, int *reused);

#endif
