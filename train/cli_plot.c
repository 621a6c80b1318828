/* cli_plot.c: `nibble plot` (not written yet). */
#include <stdio.h>

#include "cli.h"

int nb_cmd_plot(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "nibble plot: not implemented yet\n");
    return 2;
}
