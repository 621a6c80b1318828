/* cli_eval.c: `nibble eval` (not written yet). */
#include <stdio.h>

#include "cli.h"

int nb_cmd_eval(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "nibble eval: not implemented yet\n");
    return 2;
}
