/* qat.h: the quantization policy applied during training. The model's forward calls these two
   hooks on every linear weight and every linear input; with qat == NULL (or the policy off for
   that tensor at this step) they return their input unchanged. */
#ifndef NB_QAT_H
#define NB_QAT_H

#include "../autograd/tape.h"
#include "params.h"

typedef struct nb_qat nb_qat; /* opaque: policy, per-tensor quantizer state, schedule position */

/* W (Cout, Cin), the parameter at index `param` of the model's paramset: returns the tensor the
   matmul should read (fake-quantized once per step) or W itself. */
nb_tensor *nb_qat_weight(nb_tape *t, nb_qat *q, int param, nb_tensor *w);
/* x (..., Cin), the input of the linear weight `param`: fake-quantized activations or x. */
nb_tensor *nb_qat_act(nb_tape *t, nb_qat *q, int param, nb_tensor *x);

#endif
