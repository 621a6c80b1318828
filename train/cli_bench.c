/* cli_bench.c: `nibble bench` (not written yet). */
#include <stdio.h>

#include "cli.h"

int nb_cmd_bench(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "nibble bench: not implemented yet\n");
    return 2;
}
