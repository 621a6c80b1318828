/* cli_info.c: `nibble info` (not written yet). */
#include <stdio.h>

#include "cli.h"

int nb_cmd_info(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "nibble info: not implemented yet\n");
    return 2;
}
