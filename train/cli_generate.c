/* cli_generate.c: `nibble generate` (not written yet). */
#include <stdio.h>

#include "cli.h"

int nb_cmd_generate(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "nibble generate: not implemented yet\n");
    return 2;
}
