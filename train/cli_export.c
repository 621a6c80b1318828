/* cli_export.c: `nibble export` (not written yet). */
#include <stdio.h>

#include "cli.h"

int nb_cmd_export(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "nibble export: not implemented yet\n");
    return 2;
}
