/* cli_import.c: `nibble import` (not written yet). */
#include <stdio.h>

#include "cli.h"

int nb_cmd_import(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "nibble import: not implemented yet\n");
    return 2;
}
