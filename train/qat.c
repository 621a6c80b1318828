/* qat.c: quantization policy hooks (placeholder until the QAT issue: identity). */
#include "qat.h"

nb_tensor *nb_qat_weight(nb_tape *t, nb_qat *q, int param, nb_tensor *w) {
    (void)t;
    (void)q;
    (void)param;
    return w;
}

nb_tensor *nb_qat_act(nb_tape *t, nb_qat *q, int param, nb_tensor *x) {
    (void)t;
    (void)q;
    (void)param;
    return x;
}
