/* cli_ptq.c: `nibble ptq` (not written yet). */
#include <stdio.h>

#include "cli.h"

int nb_cmd_ptq(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "nibble ptq: not implemented yet\n");
    return 2;
}
