/* cli_prepare.c: `nibble prepare` (not written yet). */
#include <stdio.h>

#include "cli.h"

int nb_cmd_prepare(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "nibble prepare: not implemented yet\n");
    return 2;
}
