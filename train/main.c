/* main.c: the nibble command-line program (dispatch to train/cli_*.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

/* libgomp spins about 300,000 iterations (3 ms) at every barrier and idle pool before it sleeps.
   On a machine busier than its cores a spinning thread burns the time slice its partner needs: a
   2-thread training step measured 5-10x slower at load 20 on 2 cores, with 300 spins as fast as
   with none. libgomp reads its environment before main runs, so nibble sets the default and
   re-executes itself once (same pid). OMP_WAIT_POLICY or GOMP_SPINCOUNT set by the user win; not
   under valgrind, whose child would run untraced. */
static void short_spin(char **argv) {
    if (getenv("OMP_WAIT_POLICY") || getenv("GOMP_SPINCOUNT")) return;
    const char *pre = getenv("LD_PRELOAD");
    if (pre && strstr(pre, "vgpreload")) return;
    if (setenv("GOMP_SPINCOUNT", "300", 0)) return;
    execv("/proc/self/exe", argv); /* returns only on failure: carry on with the default */
}

int main(int argc, char **argv) {
    short_spin(argv);
    return nb_cli_main(argc, argv);
}
