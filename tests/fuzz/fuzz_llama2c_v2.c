/* fuzz_llama2c_v2.c: libFuzzer target for the reader of llama2.c version-2 int8 export (magic ak42, 256-byte header, Q8_0 groups): nb_llama2c_read_v2 on the input written to a temp
   file. It must load or fail with a message; a model that loads is run for two tokens on the
   integer runtime (short KV cache) so that what the reader accepted is also safe to compute with. */
#include "../../train/llama2c.h"
#include "../../train/runtime.h"
#include "fuzz_util.h"
#include "fuzz_run.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_file(data, size, ".bin");
    nb_qmodel *m = NULL;
    if (nb_llama2c_read_v2(path, &m) != NB_OK) {
        FUZZ_CHECK(m == NULL && fuzz_has_msg(nb_errmsg()));
        return 0;
    }
    fuzz_run_qmodel(m);
    nb_qmodel_free(m);
    return 0;
}
