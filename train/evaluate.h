/* evaluate.h: what `nibble train`, `nibble eval` and `nibble generate` share: the loss of a model
   over a token sequence cut into windows (the same windows as data/dataset.h's eval windows) and
   sampling a continuation with the model's KV-cache decoder. */
#ifndef NB_EVALUATE_H
#define NB_EVALUATE_H

#include "../data/tokenizer.h"
#include "model.h"

/* Mean cross-entropy (nats per predicted token) of the model on tokens[0..n): windows of T + 1
   tokens starting at 0, T, 2T, ... (inputs w[0..T), targets w[1..T]), a shorter last window for the
   tail, B windows per forward pass. max_windows > 0 evaluates that many windows spread evenly over
   the sequence instead of all (the same ones every call). Runs on `tape` (no-grad, not training;
   its arena is reset per batch and its recording flag is restored). Ids must be in [0, V). */
nb_status nb_eval_tokens(nb_tape *tape, nb_model *m, const int32_t *tokens, int64_t n, int B, int T,
                         int64_t max_windows, double *loss, int64_t *n_targets);

/* Generation settings (temperature 0 = greedy; top_p in (0, 1) = nucleus sampling). */
typedef struct nb_generate_opts {
    int n_tokens;        /* tokens to generate */
    float temperature;
    float top_p;
    uint64_t seed;
    int stop_at_eos;     /* stop early on BOS/EOS (llama2.c stops on BOS) */
} nb_generate_opts;

/* Encodes prompt with BOS (when the tokenizer has one; a char/byte tokenizer with an empty prompt
   starts from a newline) and samples up to o->n_tokens more. When the context reaches the model's
   seq_len, it continues from the last seq_len / 2 tokens (re-prefilled). *out = the generated ids
   (nb_malloc'ed, *n_out of them), *text = their decoded text (nb_malloc'ed); either may be NULL. */
nb_status nb_generate(nb_model *m, const nb_tokenizer *tok, const char *prompt, const nb_generate_opts *o,
                      int32_t **out, int *n_out, char **text);

/* A model and its tokenizer from a file: a nibble checkpoint (the tokenizer stored in it) or a
   llama2.c .bin (tokenizer_path, a llama2.c tokenizer.bin, required then; NULL otherwise). The
   seam for export files: other formats give NB_EUNSUPPORTED naming the file for now. */
nb_status nb_model_open_any(const char *path, const char *tokenizer_path, nb_model *m, nb_tokenizer **tok);


#endif
