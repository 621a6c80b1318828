/* import_llama2c.h: llama2.c's legacy model .bin (run.c's format) into a nibble model.
   Layout: 7 int32 (dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len; a negative
   vocab_size means an untied classifier), then fp32 arrays token_embedding (V, C), rms_att (L, C),
   wq (L, C, C), wk (L, KV, C), wv (L, KV, C), wo (L, C, C), rms_ffn (L, C), w1 (L, F, C),
   w2 (L, C, F), w3 (L, F, C), rms_final (C), freq_cis_real and freq_cis_imag (seq_len * H / 2 each,
   skipped: RoPE is recomputed with theta 10000), then the classifier (V, C) when untied. */
#ifndef NB_IMPORT_LLAMA2C_H
#define NB_IMPORT_LLAMA2C_H

#include "model.h"

/* Reads and checks the header (sane sizes, heads divide dim, ...) and that the file is exactly as
   long as the header implies. NB_EIO if it cannot be read, NB_EFORMAT naming the file otherwise. */
nb_status nb_llama2c_read_config(const char *path, nb_model_config *c);
/* Checks as above, then builds *m (nb_model_init) and reads every weight into its paramset.
   On failure *m is left freed. */
nb_status nb_llama2c_load(const char *path, nb_model *m);
/* The same from memory (size bytes); name is used in messages. For fuzzing and embedding. */
nb_status nb_llama2c_load_mem(const void *data, size_t size, const char *name, nb_model *m);

#endif
