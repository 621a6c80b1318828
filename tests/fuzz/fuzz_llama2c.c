/* fuzz_llama2c.c: libFuzzer target for the llama2.c .bin loader (from memory, the same parser as
   the file loader). When a model loads, a few tokens are decoded and the logits must be produced
   without a crash; loading must never crash, over-read, leak or allocate more than the input
   implies (the exact-size check bounds the model by the input length). */
#include <stdint.h>
#include <stdlib.h>

#include "../../train/import_llama2c.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    nb_model m;
    if (nb_llama2c_load_mem(data, size, "fuzz.bin", &m) != NB_OK) return 0;
    if ((size_t)nb_model_numel(&m) * 4 > size) abort(); /* the model must come from the input */
    nb_decoder d;
    int T = m.cfg.seq_len < 3 ? m.cfg.seq_len : 3;
    if (nb_decoder_init(&d, &m, T) == NB_OK) {
        const float *logits;
        for (int t = 0; t < T; t++)
            if (nb_model_decode(&d, t % m.cfg.vocab_size, t, &logits) != NB_OK) abort();
        nb_decoder_free(&d);
    }
    nb_model_free(&m);
    return 0;
}
