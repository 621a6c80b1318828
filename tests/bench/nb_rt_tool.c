/* nb_rt_tool.c: a small driver of the runtime for shell tests (until `nibble export` takes
   checkpoints and `nibble generate` dispatches on export files):
     nb_rt_tool export MODEL.bin TOK.bin FORMAT TYPE [GROUP] OUT   FORMAT gguf|llama2c|nibble,
                                                                 TYPE f32|f16|q8_0|q4_0|int8|int4
     nb_rt_tool greedy FILE [--tok TOK.bin] N ID...               prints N greedy ids after the prompt
     nb_rt_tool info FILE [--json] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../train/export_nb.h"
#include "../../train/gguf.h"
#include "../../train/llama2c.h"
#include "../../train/runtime.h"

static int fail(const char *what) {
    fprintf(stderr, "nb_rt_tool %s: error: %s\n", what, nb_errmsg());
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: nb_rt_tool export|greedy|info ...\n");
        return 1;
    }
    if (!strcmp(argv[1], "export") && (argc == 7 || argc == 8)) {
        nb_qmodel *m, *q;
        if (nb_qmodel_from_llama2c(argv[2], argv[3], &m)) return fail("export");
        int t = nb_qtype_parse(argv[5]);
        if (t < 0) {
            fprintf(stderr, "nb_rt_tool export: unknown type %s\n", argv[5]);
            return 1;
        }
        int group = argc == 8 ? atoi(argv[6]) : 0;
        const char *out = argv[argc - 1];
        if (!strcmp(argv[4], "llama2c")) {
            int gs;
            if (nb_llama2c_write_v2(m, out, group, &gs)) return fail("export");
            fprintf(stderr, "wrote %s (group size %d)\n", out, gs);
            nb_qmodel_free(m);
            return 0;
        }
        if (nb_qmodel_quantize(m, (nb_qtype)t, group, NB_QT_F32, &q)) return fail("export");
        nb_status st = !strcmp(argv[4], "gguf") ? nb_gguf_write(q, out, "stories260K")
                       : !strcmp(argv[4], "nibble") ? nb_export_nb_write(q, out)
                                                    : nb_fail(NB_EINVAL, "unknown format %s", argv[4]);
        if (st) return fail("export");
        nb_qmodel_free(q);
        nb_qmodel_free(m);
        return 0;
    }
    if (!strcmp(argv[1], "greedy")) {
        int i = 3;
        const char *tok = NULL;
        if (i + 1 < argc && !strcmp(argv[i], "--tok")) tok = argv[i + 1], i += 2;
        if (i >= argc) return 1;
        int n = atoi(argv[i++]);
        int np = argc - i;
        if (np < 1 || n < 1 || n > 4096) return 1;
        int32_t *p = malloc(sizeof(int32_t) * np), *o = malloc(sizeof(int32_t) * n);
        for (int k = 0; k < np; k++) p[k] = atoi(argv[i + k]);
        nb_qmodel *m;
        if (nb_qmodel_open(argv[2], tok, &m)) return fail("greedy");
        nb_gen_opts opts = {.max_new = n};
        int got;
        if (nb_runtime_generate(m, p, np, &opts, o, &got)) return fail("greedy");
        for (int k = 0; k < got; k++) printf("%s%d", k ? " " : "", o[k]);
        printf("\n");
        nb_qmodel_free(m);
        free(p), free(o);
        return 0;
    }
    if (!strcmp(argv[1], "info")) {
        nb_qmodel *m;
        if (nb_qmodel_open(argv[2], NULL, &m)) return fail("info");
        char *txt;
        if (nb_runtime_info(m, argc > 3 && !strcmp(argv[3], "--json"), &txt)) return fail("info");
        fputs(txt, stdout);
        nb_free(txt);
        nb_qmodel_free(m);
        return 0;
    }
    fprintf(stderr, "nb_rt_tool: bad arguments\n");
    return 1;
}
