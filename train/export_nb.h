/* export_nb.h: nibble's own export, an HDF5 file that h5py can read:
     /               attributes: format = "nibble-export", version = 1, dim, hidden_dim, n_layers,
                     n_heads, n_kv_heads, vocab_size, seq_len, tied (0/1), norm_eps, rope_theta,
                     policy (the quantization policy text, "" if none)
     /tensors/NAME   one group per tensor, NAME as the model's parameters ("tok_emb",
                     "layers.3.attn.wq", "layers.3.ffn_norm", "norm", "classifier" when untied);
                     attributes qtype (int: 0 f32, 1 f16, 2 q8_0, 3 q4_0, 4 int8, 5 int4),
                     qtype_name, rows, cols, group (elements per scale along a row; 0 for types
                     without nibble scales);
                     dataset "data": f32 (rows, cols) | f16 (rows, cols) | int8 (rows, cols) |
                     uint8 (rows, ceil(cols/2)) for int4: element 2k in the low nibble of byte k,
                     2k+1 in the high nibble, two's-complement codes -8..7, each row packed on its
                     own (an odd row leaves the last high nibble 0) | uint8 (rows, cols/32*34 or
                     *18) raw ggml block_q8_0 / block_q4_0 bytes;
                     "scales" f32 (rows, ngroups) and, for asymmetric grids, "zeros" int8 (rows,
                     ngroups): w = scale * (code - zero)
     /vocab          pieces as bytes: "bytes" uint8 (concatenated), "offsets" int64 (n + 1),
                     "scores" f32 (n), "types" int32 (n); attributes bos, eos, unk.
     /tokenizer      the model's tokenizer as data/tokenizer.h stores it (nb_tokenizer_save_h5),
                     when the model has one or a vocabulary. */
#ifndef NB_EXPORT_NB_H
#define NB_EXPORT_NB_H

#include "runtime.h"

nb_status nb_export_nb_write(const nb_qmodel *m, const char *path);
/* Read back; every dataset's shape and type is checked against the config before reading. */
nb_status nb_export_nb_read(const char *path, nb_qmodel **out);
/* 1 when path is an HDF5 file whose root attribute format is "nibble-export". */
int nb_export_nb_is_export(const char *path);

#endif
