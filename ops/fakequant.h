/* fakequant.h: fake-quant ops on the tape: y = x + lambda (Q(x) - x) with Q = dequant(quant(.)) of
   core/quant.h, and the gradient estimators of quantization-aware training. */
#ifndef NB_FAKEQUANT_H
#define NB_FAKEQUANT_H

#include "../autograd/tape.h"
#include "../core/quant.h"

/* On-disk values (checkpoints record the policy): explicit and append-only. */
typedef enum nb_qest {
    NB_QEST_STE = 0,     /* straight-through: dx = dy everywhere */
    NB_QEST_CLIPPED = 1, /* clipped STE: dx = dy where x is inside the representable range, 0 outside */
    NB_QEST_LSQ = 2,     /* learned step size (Esser et al. 2020): dx as clipped STE and
                            ds = g dy (round(x/s) - x/s) inside, g dy (qmin - z) below, g dy (qmax - z) above,
                            g = 1 / sqrt(N Qp), N = elements per scale, Qp = qmax (symmetric) or
                            qmax - qmin (asymmetric) */
    NB_QEST_LSQP = 3,    /* LSQ+: LSQ plus a learned zero point z (a float rounded in the forward, as
                            torch's learnable fake-quant): dz = g dy (-s) outside the range, 0 inside */
    NB_QEST_PACT = 4,    /* PACT (activations): learned clip alpha, symmetric restricted grid with
                            s = alpha / qmax; y = Q(clamp(x, -alpha, alpha));
                            dalpha = dy for x >= alpha, -dy for x <= -alpha; dx = dy inside */
} nb_qest;

const char *nb_qest_name(nb_qest e);

#define NB_QSCALE_MIN 1e-8f /* learned scales / clips are used as max(s, NB_QSCALE_MIN) */

typedef struct nb_fq {
    nb_qspec spec;
    nb_qest est;
    float lambda;        /* y = x + lambda (Q(x) - x): 1 = plain fake-quant (the BitNet ramp uses 0..1) */
    float grad_scale;    /* LSQ / LSQ+ g; 0 = 1 / sqrt(N Qp) */
    const float *cached; /* optional: y already computed for exactly these inputs (the QAT policy's
                            once-per-step weight cache); the op then only records the node */
} nb_fq;

/* x (..., cols) viewed as (rows, cols). scale: (nscales) scales of c->spec (PACT: (1) alpha);
   zero: (nscales) zero points or NULL (symmetric). Scale/zero that require grad (learned) get
   their gradients accumulated by backward. Block formats (Q8_0, Q4_0, F16) ignore scale/zero and
   take STE. Fails the tape (NB_ESHAPE) when the scale count does not fit the spec. */
nb_tensor *nb_fakequant(nb_tape *t, nb_tensor *x, const nb_fq *c, nb_tensor *scale, nb_tensor *zero);

/* Dynamic per-token fake-quant of activations x (..., cols): each row (or group, or Q8_0 block)
   takes its scale from its own range (nb_fakequant_dynamic), e.g. int8 symmetric per token as in
   torchao's 8da4w. Backward: STE (the scale is treated as a constant). */
nb_tensor *nb_fakequant_token(nb_tape *t, nb_tensor *x, const nb_qspec *spec, float lambda);

/* Integer operands for the forward of a linear layer (ops/kernels/qgemm.h), found among the
   tape's last recorded nodes. nb_fakequant_token_codes: y is the output of a per-token INT
   symmetric fake-quant (<= 8 bits, lambda 1) recorded with an AVX-512 VNNI CPU: its row scales and
   its codes packed by nb_qgemm_pack_x (packed on the first call, shared for the step).
   nb_fakequant_weight_codes: w is the output of a symmetric INT fake-quant with fixed scales (STE
   or clipped STE, lambda 1): its spec and scales (tensor: one scale). Both return 0 otherwise. */
int nb_fakequant_token_codes(nb_tape *t, const nb_tensor *y, const float **scales, const uint8_t **codes);
int nb_fakequant_weight_codes(nb_tape *t, const nb_tensor *w, nb_qspec *spec, const float **scales, int *tensor);

/* The backward of one fake-quant, exposed for tests and the torch comparison: accumulates
   dx (rows*cols), ds (nscales, may be NULL), dz (nscales, may be NULL) from dy. */
void nb_fakequant_backward_ref(const nb_fq *c, const float *x, const float *dy, int64_t rows, int64_t cols,
                               const float *scale, const float *zero, float *dx, float *ds, float *dz);

#endif
