/* main.c: the nibble command-line program (dispatch to train/cli_*.c). */
#include <stdio.h>
#include <string.h>

#include "cli.h"

int main(int argc, char **argv) { return nb_cli_main(argc, argv); }
