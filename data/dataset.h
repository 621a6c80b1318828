/* dataset.h: token datasets. Text files become documents (a line `<|endoftext|>` separates them),
   documents become tokens (BOS first when the tokenizer has one, as llama2.c does), and tokens go
   to an HDF5 file with /train, /val and the tokenizer, readable by h5py. Training draws random
   windows whose positions are a pure function of (seed, batch index); evaluation walks a split in
   non-overlapping windows that predict every token but the first exactly once. */
#ifndef NB_DATASET_H
#define NB_DATASET_H

#include <stdint.h>

#include "../core/status.h"
#include "tokenizer.h"

/* rng stream of training-window draws ("data") */
#define NB_DATA_RNG_STREAM 0x64617461ULL
/* the document separator line */
#define NB_DOC_SEPARATOR "<|endoftext|>"
/* on-disk layout version (attribute format_version) */
#define NB_DATASET_VERSION 1

/* A split's tokens in memory. You own ids (nb_tokens_free). */
typedef struct nb_tokens {
    int32_t *ids;   /* (n) token ids, all < vocab */
    int64_t n;      /* tokens */
    int64_t n_docs; /* documents (0 when unknown) */
} nb_tokens;

void nb_tokens_free(nb_tokens *t); /* frees ids, zeroes the struct; NULL is fine */

/* ---- preparing a dataset ---- */

typedef struct nb_prepare_opts {
    const char *const *train;  /* (n_train) text files; their documents are concatenated */
    int n_train;
    const char *val;           /* separate validation text file, or NULL/"" */
    double val_fraction;       /* without `val`: this fraction of tokens (the tail, cut at a document
                                  boundary when there are several documents) goes to /val; 0..0.9 */
    const char *tokenizer;     /* spec "byte" | "char" | "llama2c:PATH" (used when tok is NULL; a char
                                  vocabulary is built from all the documents, train and val) */
    const nb_tokenizer *tok;   /* or an existing tokenizer, e.g. a model's (not owned) */
} nb_prepare_opts;

typedef struct nb_prepare_stats {
    int64_t train_tokens, val_tokens;
    int64_t train_docs, val_docs;
    int vocab;
    double seconds;            /* wall time of the whole preparation */
} nb_prepare_stats;

/* Tokenizes the text files and writes out_path (atomically: temp file + rename). Layout:
     /train, /val       1-D uint16 (vocab <= 65536) or int32 tokens; attrs n_tokens, n_documents
     /tokenizer         the tokenizer group (see nb_tokenizer_save_h5)
     / attrs            format = "nibble-tokens", format_version, tokenizer (kind), tokenizer_spec,
                        vocab_size, bos, sources (array of str), val_source, val_fraction,
                        prepare_key (what nb_dataset_is_current compares)
   Errors: a missing file (NB_EIO), an unknown spec or empty text (NB_EINVAL), each naming it. */
nb_status nb_dataset_prepare(const nb_prepare_opts *o, const char *out_path, nb_prepare_stats *stats);

/* Writes a dataset from tokens already in memory (e.g. text a teacher model generated): /train and
   /val (either may be empty; n_docs as given), the tokenizer, and the root attributes of a prepared
   dataset with sources = [source], tokenizer_spec "(given)" and prepare_key = key (what the caller
   compares to reuse it; read it back with nb_dataset_key). Atomic: written to PATH.tmp-PID, then
   renamed (a run's stale-temp sweep removes a PATH.tmp-PID whose process is gone). */
nb_status nb_dataset_write_tokens(const char *path, const nb_tokenizer *tok, const nb_tokens *train,
                                  const nb_tokens *val, const char *source, const char *key);
/* The prepare_key attribute of a dataset (nb_malloc'ed into *key). */
nb_status nb_dataset_key(const char *path, char **key);

/* 1 when path is a dataset prepared with the same options from input files of the same size and
   modification time (and, for opts->tok, the same tokenizer): a cache that can be reused. */
int nb_dataset_is_current(const char *path, const nb_prepare_opts *o);

/* ---- text in memory (nibble eval --data TEXT) ---- */

/* Tokenizes text with the document rules above: with separator lines each document is stripped of
   surrounding whitespace and empty ones are dropped; text without separators is one document,
   used as is. Each document starts with BOS when the tokenizer has one. */
nb_status nb_text_tokenize(const nb_tokenizer *tok, const char *text, size_t len, nb_tokens *out);
nb_status nb_text_tokenize_file(const nb_tokenizer *tok, const char *path, nb_tokens *out);

/* ---- reading a dataset ---- */

/* Reads split "train" or "val" of a prepared dataset. The stored n_tokens must equal the dataset's
   length and every id must be below vocab_size, else NB_EFORMAT naming the file. */
nb_status nb_dataset_open_split(const char *path, const char *split, nb_tokens *out);
/* The dataset's tokenizer (you own it). */
nb_status nb_dataset_tokenizer(const char *path, nb_tokenizer **out);
/* Tokens for evaluation from a prepared .h5 (its `split`, NULL = "val"; its tokenizer must equal
   tok when tok is given) or from a text file (tokenized with tok, which is then required). */
nb_status nb_tokens_load(const char *path, const nb_tokenizer *tok, const char *split, nb_tokens *out);

/* ---- windows ---- */

/* A training batch: B random windows of T + 1 tokens; x (B, T) = window[0 .. T-1], y (B, T) =
   window[1 .. T]. Window b starts at a position drawn from nb_rng_hash(seed, NB_DATA_RNG_STREAM,
   batch_index * B + b), so a batch is a pure function of (seed, batch_index): use
   batch_index = step * grad_accum + micro_step. NB_EINVAL when the split has fewer than T + 1 tokens. */
nb_status nb_tokens_batch(const nb_tokens *t, uint64_t seed, int64_t batch_index, int B, int T, int32_t *x,
                          int32_t *y);

/* Evaluation windows: window i has inputs ids[i*T .. i*T + len - 1] and targets ids[i*T + 1 .. i*T + len]
   with len = min(T, n - 1 - i*T) (the last window may be short). Together they predict tokens
   1 .. n-1 exactly once. */
int64_t nb_tokens_eval_count(const nb_tokens *t, int T);
/* Window i: *x and *y point into t->ids (no copy); returns len (0 when i is out of range). */
int nb_tokens_eval_window(const nb_tokens *t, int T, int64_t i, const int32_t **x, const int32_t **y);

#endif
