/* cli.h: the nibble subcommands. Each lives in train/cli_<name>.c and returns an exit code:
   0 ok, 1 bad input (usage, recipe, file contents), 2 runtime failure, 130 interrupted. */
#ifndef NB_CLI_H
#define NB_CLI_H

#include "../core/status.h"

int nb_cli_main(int argc, char **argv);

/* Prints "nibble CMD: error: <message>" to stderr and maps the status to the exit code. */
int nb_cli_fail(const char *cmd, nb_status s);
/* Exit code of a status (0, 1, 2 or 130). */
int nb_cli_exit_code(nb_status s);

/* Small argument helpers: is argv[i] the flag `name` (then *val = argv[i+1], i advanced)? */
int nb_cli_flag_value(int argc, char **argv, int *i, const char *name, const char **val);
int nb_cli_is_help(const char *a);
/* An input file named on the command line that cannot be opened is bad input (exit 1), checked
   before any work: prints "nibble CMD: error: cannot read PATH: reason" and returns 1; 0 if it opens. */
int nb_cli_input_missing(const char *cmd, const char *what, const char *path);

/* subcommands (one file each) */
int nb_cmd_train(int argc, char **argv);
int nb_cmd_eval(int argc, char **argv);
int nb_cmd_generate(int argc, char **argv);
int nb_cmd_prepare(int argc, char **argv);
int nb_cmd_import(int argc, char **argv);
int nb_cmd_info(int argc, char **argv);
int nb_cmd_ptq(int argc, char **argv);
int nb_cmd_export(int argc, char **argv);
int nb_cmd_verify(int argc, char **argv);
int nb_cmd_bench(int argc, char **argv);
int nb_cmd_plot(int argc, char **argv);
int nb_cmd_version(int argc, char **argv);

#endif
