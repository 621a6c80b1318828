/* linear_exact.h: the linear layers of an evaluation forward computed by the integer runtime's
   matmul (nb_qmatmul) instead of the fp32 GEMM of the fake-quant values.

   A weight and an input that are both on integer grids (Q4_0 / Q8_0 blocks x Q8_0 activation
   blocks, int8 / int4 groups x int8 activations) have an exact product per block: the runtime sums
   the int32 block sums scaled by d_w * d_x, the fp32 GEMM rounds every product and sums in its own
   order. Both are roundings of the same value, but a last-bit difference can flip an activation
   code downstream. With an nb_exact on the model (nb_model.exact), a no-grad forward (tape not
   recording) runs every linear through the runtime tensor that `nibble export` would write for
   the same weights under the same policy (nb_export_build: codes and scales of the policy, blocks
   for the presets, F16/F32 as they are), applied to the fake-quantized input: the tape forward
   then computes the numbers of the exported model. `nibble verify` uses it. Training (recording)
   keeps the GEMM and its straight-through gradients. */
#ifndef NB_LINEAR_EXACT_H
#define NB_LINEAR_EXACT_H

#include "../autograd/tape.h"

struct nb_model;
struct nb_qat;

typedef struct nb_exact nb_exact;

/* The runtime tensors of m's current weights under policy q (NULL: fp32). Rebuild after the
   weights change. *out owned by the caller; m must outlive it. */
nb_status nb_exact_new(struct nb_model *m, struct nb_qat *q, nb_exact **out);
void nb_exact_free(nb_exact *e); /* NULL is fine */

/* y (..., Cout) = x (..., Cin) W^T for the linear parameter `param` (index in m's paramset; the
   tied classifier is tok_emb's index) through nb_qmatmul: x is quantized by the weight's runtime
   activation scheme, which reproduces the fake-quant codes when x is already on that grid. No
   gradient: the tape must not be recording. Fails the tape on a bad shape or unknown param. */
nb_tensor *nb_exact_linear(nb_tape *t, nb_exact *e, int param, nb_tensor *x);

#endif
