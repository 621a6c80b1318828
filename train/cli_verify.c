/* cli_verify.c: `nibble verify` (not written yet). */
#include <stdio.h>

#include "cli.h"

int nb_cmd_verify(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "nibble verify: not implemented yet\n");
    return 2;
}
