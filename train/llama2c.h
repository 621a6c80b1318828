/* llama2.c.h: llama2.c's version-2 int8 export ("Q8_0" in llama2.c's words), as its export.py
   version2_export writes it and runq.c runs it. Layout (little endian):
     256-byte header: uint32 magic 0x616b3432 ("ak42"), int32 version 2, int32 dim, hidden_dim,
       n_layers, n_heads, n_kv_heads, vocab_size, seq_len, uint8 shared_classifier, int32 group_size
       (GS), zero padding to 256 bytes;
     fp32 norms: attention norms (L, C), ffn norms (L, C), final norm (C);
     then for each of tok_embeddings (V, C), wq (L, C, C), wk (L, kv, C), wv (L, kv, C), wo (L, C, C),
       w1 (L, H, C), w2 (L, C, H), w3 (L, H, C) and, when not shared, the classifier (V, C):
       layer by layer, that layer's int8 codes (numel) followed by its fp32 scales (numel / GS),
       groups of GS consecutive elements, x = code * scale. */
#ifndef NB_LLAMA2C_H
#define NB_LLAMA2C_H

#include "runtime.h"

#define NB_LLAMA2C_MAGIC 0x616b3432u

/* Write m in llama2.c version-2 format. group: requested GS (0: 64); it is halved until it divides
   both dim and hidden_dim (export.py checks dim only; runq.c needs every row length divisible).
   Tensors already int8 with that group and no zero points are copied code for code; others are
   quantized with export.py's rule: scale = max|w| / 127, code = round-half-even(w / scale).
   *gs_out (may be NULL) receives the group size used. */
nb_status nb_llama2c_write_v2(const nb_qmodel *m, const char *path, int group, int *gs_out);
/* Read a version-2 file into an nb_qmodel with int8 per-group (GS) tensors. Sizes are checked
   against the file length. The vocabulary is not part of the format (load tokenizer.bin apart). */
nb_status nb_llama2c_read_v2(const char *path, nb_qmodel **out);

#endif
