/* pending.c: weak placeholders for ops and tokenizer functions not merged yet (so the model links); each fails the
   tape. The real definitions in ops/ and data/ override these. Delete this file once they have landed. */
#include "../ops/ops.h"

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

#include "../data/tokenizer.h"
__attribute__((weak)) nb_status nb_tokenizer_save_h5(const nb_tokenizer *t, hid_t group) {
    return nb_fail(NB_EUNSUPPORTED, "tokenizer storage is not available in this build yet");
}
__attribute__((weak)) nb_status nb_tokenizer_load_h5(hid_t group, nb_tokenizer **out) {
    return nb_fail(NB_EUNSUPPORTED, "tokenizer storage is not available in this build yet");
}
__attribute__((weak)) nb_status nb_tokenizer_llama2c_load(const char *path, int vocab_size, nb_tokenizer **out) {
    return nb_fail(NB_EUNSUPPORTED, "llama2.c tokenizer is not available in this build yet");
}
__attribute__((weak)) void nb_tokenizer_free(nb_tokenizer *t) {}
__attribute__((weak)) int nb_tokenizer_vocab(const nb_tokenizer *t) { return 0; }
__attribute__((weak)) nb_tok_kind nb_tokenizer_kind(const nb_tokenizer *t) { return NB_TOK_BYTE; }
