/* gguf.h: GGUF v3 files for llama.cpp's llama architecture (ggml docs/gguf.md): writer and reader
   of an nb_qmodel. Tensor types F32 (0), F16 (1), Q4_0 (2), Q8_0 (8); alignment 32. Tensor names
   token_embd.weight, blk.N.{attn_norm,attn_q,attn_k,attn_v,attn_output,ffn_norm,ffn_gate,ffn_down,
   ffn_up}.weight, output_norm.weight and output.weight (untied only). llama2.c / nibble weights are
   in Meta's layout, which is what llama.cpp's llama architecture expects (its rope rotates pairs
   (2i, 2i+1)): no q/k row permutation is applied, as llama.cpp's convert-llama2c-to-ggml does not
   apply one either. The vocabulary is stored with U+2581 in place of spaces (sentencepiece). */
#ifndef NB_GGUF_H
#define NB_GGUF_H

#include "runtime.h"

enum { NB_GGUF_F32 = 0, NB_GGUF_F16 = 1, NB_GGUF_Q4_0 = 2, NB_GGUF_Q8_0 = 8 };

/* Write m as GGUF v3. Fails with NB_EUNSUPPORTED (naming the tensor) for int8/int4 tensors, which
   GGUF's ggml types cannot hold, and for a model without a vocabulary (llama.cpp needs one).
   name goes to general.name. */
nb_status nb_gguf_write(const nb_qmodel *m, const char *path, const char *name);
/* Read a GGUF written by nibble or llama.cpp (llama architecture, types F32/F16/Q4_0/Q8_0). Every
   count, length and offset is checked against the file size before use. */
nb_status nb_gguf_read(const char *path, nb_qmodel **out);

#endif
