/* export_open.c: the one place the export code reaches evaluate.h's loader (evaluate.h and
   runtime.h both define nb_gen_opts, so no file includes both). */
#include "evaluate.h"
#include "export.h"

nb_status nb_export_open_model(const char *path, const char *tok_path, nb_model *m, nb_tokenizer **tok) {
    return nb_model_open_any(path, tok_path, m, tok);
}
