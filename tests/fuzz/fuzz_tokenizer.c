/* fuzz_tokenizer.c: libFuzzer target for the llama2.c tokenizer.bin loader. Any byte string is
   loaded (from memory, the same parser as the file loader); when it loads, a short text with
   multi-byte characters and stray bytes is encoded (ids checked against the vocabulary) and
   decoded. Loading must never crash, over-read or leak. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../data/tokenizer.h"

static void check(int ok) {
    if (!ok) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    nb_tokenizer *t = NULL;
    /* the first byte picks an explicit vocab size some of the time (0 = read to the end) */
    int vocab = size > 0 && data[0] == 0x7f ? 512 : 0;
    if (nb_tokenizer_llama2c_load_mem(data, size, "fuzz.bin", vocab, &t) != NB_OK) {
        check(t == NULL);
        return 0;
    }
    int V = nb_tokenizer_vocab(t);
    static const char *texts[] = {"Once upon a time", "na\xc3\xafve caf\xc3\xa9 \xe2\x80\x94 ok \xf0\x9f\x99\x82",
                                  "\x80\xff\x00z", ""};
    for (int k = 0; k < 4; k++) {
        size_t len = k == 2 ? 4 : strlen(texts[k]);
        int32_t *ids = NULL;
        int64_t n = 0;
        if (nb_tokenizer_encode(t, texts[k], len, 1, 1, &ids, &n) == NB_OK) {
            for (int64_t i = 0; i < n; i++) check(ids[i] >= 0 && ids[i] < V);
            char *text = NULL;
            check(nb_tokenizer_decode(t, ids, n, &text) == NB_OK);
            nb_free(text);
            nb_free(ids);
        }
    }
    size_t len;
    for (int id = 0; id < V && id < 64; id++) nb_tokenizer_piece(t, 1, id, &len);
    nb_tokenizer_free(t);
    return 0;
}
