/* cli_train.c: `nibble train` (not written yet). */
#include <stdio.h>

#include "cli.h"

int nb_cmd_train(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "nibble train: not implemented yet\n");
    return 2;
}
