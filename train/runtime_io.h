/* runtime_io.h: helpers shared by the model file formats (gguf.c, llama2c.c, export_nb.c) and the
   runtime's own loaders. Not a public API: the formats' headers are. */
#ifndef NB_RUNTIME_IO_H
#define NB_RUNTIME_IO_H

#include <stdint.h>

#include "runtime.h"

/* Read a whole file into a block owned by m; *len set. Refuses files over NB_MAX_ALLOC. */
nb_status nb_rt_read_file(nb_qmodel *m, const char *path, uint8_t **buf, size_t *len);
/* Symmetric int8/int4 per-group quantization of one row: s = amax / qmax, q = round-half-even(x / s). */
void nb_rt_quantize_sym(const float *x, int64_t n, int64_t group, int bits, void *codes, float *scales);
/* Quantize a dense fp32 matrix (rows, cols) into t (type, group set by caller; memory from m). */
nb_status nb_rt_quantize_tensor(nb_qmodel *m, const float *w, nb_qtensor *t);
/* Call fn on every tensor of the model with its nibble name ("layers.3.attn.wq", "tok_emb", ...). The
   classifier is visited only when untied. */
typedef nb_status (*nb_rt_visit_fn)(void *ctx, const char *name, nb_qtensor *t, int layer);
nb_status nb_rt_visit(nb_qmodel *m, nb_rt_visit_fn fn, void *ctx);
/* Set vocabulary entry i (copies the string). */
nb_status nb_rt_vocab_init(nb_qmodel *m, int n);
nb_status nb_rt_vocab_set(nb_qmodel *m, int i, const char *piece, size_t len, float score, int type);
/* Token type of a llama2.c piece: 2 for id 0, 3 for BOS/EOS and empty pieces, 6 for <0xXX>, else 1. */
int nb_rt_piece_type(int id, const char *piece);
/* Is every float finite? */
int nb_rt_all_finite(const float *x, int64_t n);

#endif
