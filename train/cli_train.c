/* cli_train.c: `nibble train RECIPE [key=value ...] [--print-config] [--stop-at N]`. */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../core/status.h"
#include "cli.h"
#include "recipe.h"
#include "train.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: nibble train RECIPE [key=value ...] [--print-config] [--stop-at N] [--quiet]\n"
            "  Trains (or fine-tunes) the model a YAML recipe describes. Any key can be overridden:\n"
            "  nibble train r.yaml steps=500 optim.lr=3e-4 out_dir=runs/b\n"
            "  --print-config  print the resolved recipe (every key) as YAML and exit\n"
            "  --stop-at N     stop after N steps with a checkpoint (schedule unchanged; resume later)\n"
            "  --quiet         no progress lines (messages and the summary are still printed)\n"
            "  Ctrl-C saves a checkpoint and exits with 130; `resume: true` continues from out_dir/latest.h5.\n"
            "  Run folder (out_dir): metrics.jsonl, ckpt-STEP.h5, latest.h5, the prepared dataset\n"
            "  (with distill.data_free: generated.tokens.h5, the text the teacher wrote).\n"
            "  exit codes: 0 ok, 1 bad recipe/input, 2 runtime failure (NaN stop, I/O), 130 interrupted\n");
}

static volatile sig_atomic_t stop_flag = 0;

static void on_sigint(int sig) {
    (void)sig;
    if (stop_flag) signal(SIGINT, SIG_DFL); /* a second Ctrl-C kills */
    stop_flag = 1;
}

typedef struct ui {
    int tty;       /* stdout is a terminal: one live line */
    int quiet;
    int live;      /* a live line is on screen (needs a newline before other output) */
    double last;   /* elapsed_s of the last live update */
    int status_live; /* a live setup-progress line is on stderr (a terminal) */
} ui;

static void fmt_time(char *b, size_t n, double s) {
    if (!isfinite(s) || s < 0) s = 0;
    long t = lround(s);
    if (t >= 3600) snprintf(b, n, "%ldh%02ldm", t / 3600, t / 60 % 60);
    else if (t >= 60) snprintf(b, n, "%ldm%02lds", t / 60, t % 60);
    else snprintf(b, n, "%lds", t);
}

static void end_live(ui *u) {
    if (u->live) {
        fputc('\n', stdout);
        u->live = 0;
    }
}

static void end_status(ui *u);

static void on_step(void *ud, const nb_train_progress *p) {
    ui *u = ud;
    if (u->quiet) return;
    end_status(u);
    if (!u->tty && !p->logged) return;
    if (u->tty && !p->logged && p->elapsed_s - u->last < 0.1 && p->step != p->total) return;
    u->last = p->elapsed_s;
    char eta[32], val[32] = "";
    fmt_time(eta, sizeof eta, p->eta_s);
    if (!isnan(p->val_loss)) snprintf(val, sizeof val, " | val %.4f", p->val_loss);
    char line[256];
    snprintf(line, sizeof line, "step %lld/%lld | loss %.4f%s | lr %.3e | %.0f tok/s | ETA %s", (long long)p->step,
             (long long)p->total, p->loss, val, p->lr, p->tokens_per_s, eta);
    if (u->tty) {
        printf("\r%s\033[K", line);
        u->live = 1;
        if (!isnan(p->val_loss) || p->step == p->total) end_live(u); /* keep eval lines on screen */
    } else {
        printf("%s\n", line);
    }
    fflush(stdout);
}

/* setup progress (teacher text generation) on stderr: one live line on a terminal, else lines */
static void on_status(void *ud, const char *line) {
    ui *u = ud;
    if (u->quiet) return;
    end_live(u);
    fflush(stdout);
    if (isatty(STDERR_FILENO)) {
        fprintf(stderr, "\r%s\033[K", line);
        u->status_live = 1;
    } else {
        fprintf(stderr, "%s\n", line);
    }
    fflush(stderr);
}

static void end_status(ui *u) {
    if (u->status_live) {
        fputc('\n', stderr);
        fflush(stderr);
        u->status_live = 0;
    }
}

static void on_message(void *ud, int level, const char *msg) {
    ui *u = ud;
    end_live(u);
    end_status(u);
    fflush(stdout);
    if (level) fprintf(stderr, "warning: %s\n", msg);
    else printf("%s\n", msg);
    fflush(stdout);
}

int nb_cmd_train(int argc, char **argv) {
    const char *path = NULL;
    int print_config = 0, n_over = 0;
    long long stop_at = 0;
    ui u = {isatty(STDOUT_FILENO), 0, 0, -1.0, 0};
    char **over = calloc((size_t)argc + 1, sizeof *over);
    if (!over) return 2;
    for (int i = 1; i < argc; i++) {
        const char *v;
        if (nb_cli_is_help(argv[i])) {
            usage(stdout);
            free(over);
            return 0;
        } else if (!strcmp(argv[i], "--print-config")) {
            print_config = 1;
        } else if (!strcmp(argv[i], "--quiet") || !strcmp(argv[i], "-q")) {
            u.quiet = 1;
        } else if (nb_cli_flag_value(argc, argv, &i, "--stop-at", &v)) {
            char *end;
            stop_at = v ? strtoll(v, &end, 10) : -1;
            if (!v || *end || stop_at < 1) {
                fprintf(stderr, "nibble train: error: --stop-at needs a step count >= 1\n");
                free(over);
                return 1;
            }
        } else if (argv[i][0] == '-') {
            fprintf(stderr, "nibble train: error: unknown option '%s'\n", argv[i]);
            usage(stderr);
            free(over);
            return 1;
        } else if (strchr(argv[i], '=') && path) {
            over[n_over++] = argv[i];
        } else if (!path) {
            path = argv[i];
        } else {
            fprintf(stderr, "nibble train: error: unexpected argument '%s' (overrides are key=value)\n", argv[i]);
            free(over);
            return 1;
        }
    }
    if (!path) {
        usage(stderr);
        free(over);
        return 1;
    }
    nb_recipe r;
    nb_status s = nb_recipe_load(path, n_over, over, &r);
    free(over);
    if (s != NB_OK) return nb_cli_fail("train", s);
    if (print_config) {
        char *y = nb_recipe_to_yaml(&r);
        if (y) fputs(y, stdout);
        nb_free(y);
        nb_recipe_free(&r);
        return y ? 0 : 2;
    }

    nb_train_opts o;
    nb_train_opts_init(&o);
    o.ud = &u;
    o.on_step = on_step;
    o.on_message = on_message;
    o.on_status = on_status;
    o.stop = &stop_flag;
    o.stop_at = stop_at;
    const char *inj = getenv("NB_TEST_INJECT_NAN"); /* tests: poison a gradient at this step */
    if (inj && *inj) o.inject_nan_step = strtoll(inj, NULL, 10);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    nb_train_result res;
    s = nb_train(&r, &o, &res);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    end_live(&u);
    end_status(&u);
    char wall[32];
    fmt_time(wall, sizeof wall, res.wall_s);
    if (s == NB_OK) {
        if (res.sample) printf("\n--- sample ---\n%s%s\n--------------\n", r.sample_prompt, res.sample);
        printf("done: %lld/%d steps in %s (%.1f s) | train loss %.4f | val loss %.4f | %.0f tok/s | %lld params%s%s\n",
               (long long)res.steps_done, r.steps, wall, res.wall_s, res.train_loss, res.val_loss, res.tokens_per_s,
               (long long)res.n_params, res.ckpt[0] ? " | " : "", res.ckpt);
        if (res.skipped) printf("skipped steps (non-finite): %lld\n", (long long)res.skipped);
    }
    int code = s == NB_OK ? 0 : nb_cli_fail("train", s);
    fflush(stdout);
    nb_train_result_free(&res);
    nb_recipe_free(&r);
    return code;
}
