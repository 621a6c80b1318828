/* cli_plot.c: `nibble plot RUN_DIR [-o PNG]`: train and validation loss vs step to a PNG. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "plot.h"

static void usage(FILE *f) {
    fprintf(f, "usage: nibble plot RUN_DIR [-o PNG]\n"
               "  Draws train and validation loss vs step from RUN_DIR/metrics.jsonl.\n"
               "  -o PNG   output file (default RUN_DIR/loss.png)\n");
}

int nb_cmd_plot(int argc, char **argv) {
    const char *dir = NULL, *out = NULL;
    for (int i = 1; i < argc; i++) {
        const char *v;
        if (nb_cli_is_help(argv[i])) {
            usage(stdout);
            return 0;
        } else if (nb_cli_flag_value(argc, argv, &i, "-o", &v) || nb_cli_flag_value(argc, argv, &i, "--output", &v)) {
            if (!v) {
                fprintf(stderr, "nibble plot: error: -o needs a file name\n");
                return 1;
            }
            out = v;
        } else if (argv[i][0] == '-' || dir) {
            fprintf(stderr, "nibble plot: error: unexpected argument '%s'\n", argv[i]);
            usage(stderr);
            return 1;
        } else {
            dir = argv[i];
        }
    }
    if (!dir) {
        usage(stderr);
        return 1;
    }
    char metrics[2048];
    snprintf(metrics, sizeof metrics, "%s/metrics.jsonl", dir);
    if (nb_cli_input_missing("plot", NULL, metrics)) return 1;
    int n = 0;
    nb_status s = nb_plot_run(dir, out, &n);
    if (s != NB_OK) return nb_cli_fail("plot", s);
    char def[2048];
    snprintf(def, sizeof def, "%s/loss.png", dir);
    printf("%s (%d points)\n", out ? out : def, n);
    return 0;
}
