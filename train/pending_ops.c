/* pending_ops.c: weak placeholders for ops not merged yet, so the model links; each fails the tape.
   Delete this file as soon as ops/ has landed on main. */
#include "../ops/ops.h"
#include "../autograd/gradcheck.h"

/* In a static link a weak definition found first would stop the linker from ever pulling the
   member with the real op; referencing the op registry pulls every ops/ family file in, and their
   strong definitions then replace these. */
extern const nb_opcase *const nb_opcase_tables[];
__attribute__((used)) static const void *const pull_ops = nb_opcase_tables;

#define PENDING(name) return nb_tape_fail(t, NB_EUNSUPPORTED, "op %s is not available in this build yet", name)
__attribute__((weak)) nb_tensor *nb_add(nb_tape *t, nb_tensor *a, nb_tensor *b) { PENDING("add"); }
__attribute__((weak)) nb_tensor *nb_reshape(nb_tape *t, nb_tensor *a, int ndim, const int64_t *shape) { PENDING("reshape"); }
__attribute__((weak)) nb_tensor *nb_embedding(nb_tape *t, nb_tensor *table, nb_tensor *ids) { PENDING("embedding"); }
__attribute__((weak)) nb_tensor *nb_rmsnorm(nb_tape *t, nb_tensor *x, nb_tensor *w, float eps) { PENDING("rmsnorm"); }
__attribute__((weak)) nb_tensor *nb_rope(nb_tape *t, nb_tensor *x, float theta, int64_t pos0) { PENDING("rope"); }
__attribute__((weak)) nb_tensor *nb_swiglu(nb_tape *t, nb_tensor *gate, nb_tensor *up) { PENDING("swiglu"); }
__attribute__((weak)) nb_tensor *nb_dropout(nb_tape *t, nb_tensor *x, float p) { PENDING("dropout"); }
__attribute__((weak)) nb_tensor *nb_attention(nb_tape *t, nb_tensor *q, nb_tensor *k, nb_tensor *v) { PENDING("attention"); }
__attribute__((weak)) nb_tensor *nb_cross_entropy(nb_tape *t, nb_tensor *logits, nb_tensor *targets) { PENDING("cross_entropy"); }
