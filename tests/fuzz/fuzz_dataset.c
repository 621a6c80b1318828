/* fuzz_dataset.c: libFuzzer target for HDF5 token datasets (data/dataset.c, `nibble prepare`'s
   output): the input is written to a temp file and both splits and the tokenizer are read as
   training and evaluation do; loaded tokens are checked against the vocabulary and cut into
   windows. Failures must be errors with a message, never a crash, over-read or leak. */
#include "../../data/dataset.h"
#include "fuzz_util.h"
#include "fuzz_h5mut.h"

FUZZ_HDF5_TARGET

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_file(data, size, ".h5");
    nb_tokenizer *tok = NULL;
    int V = -1;
    if (nb_dataset_tokenizer(path, &tok) == NB_OK) {
        V = nb_tokenizer_vocab(tok);
        FUZZ_CHECK(V > 0);
    } else {
        FUZZ_CHECK(tok == NULL && fuzz_has_msg(nb_errmsg()));
    }
    static const char *splits[] = {"train", "val"};
    for (int k = 0; k < 2; k++) {
        nb_tokens t = {0};
        if (nb_dataset_open_split(path, splits[k], &t) != NB_OK) {
            FUZZ_CHECK(fuzz_has_msg(nb_errmsg()));
            continue;
        }
        for (int64_t i = 0; i < t.n; i++) FUZZ_CHECK(t.ids[i] >= 0 && (V < 0 || t.ids[i] < V));
        int32_t x[2 * 4], y[2 * 4];
        (void)nb_tokens_batch(&t, 1, 0, 2, 4, x, y);
        int64_t nw = nb_tokens_eval_count(&t, 4);
        const int32_t *wx, *wy;
        for (int64_t i = 0; i < nw; i++) FUZZ_CHECK(nb_tokens_eval_window(&t, 4, i, &wx, &wy) > 0);
        nb_tokens_free(&t);
    }
    if (tok) {
        nb_tokens t = {0};
        if (nb_tokens_load(path, tok, NULL, &t) == NB_OK) nb_tokens_free(&t);
        nb_tokenizer_free(tok);
    }
    return 0;
}
