/* cli_bench.c: `nibble bench train`: time full training steps (the logic is train/bench.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/simd.h"
#include "bench.h"
#include "cli.h"

static void usage(FILE *f) {
    fprintf(f, "usage: nibble bench train [--model tiny|small] [--quant none|w8|w4g32a8] [--steps N]\n"
               "                          [--warmup N] [--threads T] [--seed S] [--json]\n"
               "  Times full training steps (arena reset, forward, backward, AdamW) of a llama model\n"
               "  with random weights on random token batches; prints the median step, tokens/s,\n"
               "  GFLOP/s, peak RSS and (without --json) a per-phase and per-op breakdown.\n"
               "  tiny:  dim 64, 5 layers, 8 heads, 4 kv heads, hidden 172, vocab 512, seq 256, batch 16\n"
               "  small: dim 288, 6 layers, 6 heads, 6 kv heads, hidden 768, vocab 512, seq 256, batch 8\n"
               "  quant: none (fp32), w8 (int8 per-channel weights), w4g32a8 (int4 g32 weights +\n"
               "         int8 per-token activations), STE, as tests/bench/torch_step.py.\n"
               "  --steps 10, --warmup 2, --threads: OMP_NUM_THREADS or all cores.\n"
               "  JSON keys: tokens_per_s, step_ms, gflops, peak_rss_mb (+ forward_ms, backward_ms, ...).\n");
}

static int parse_int(const char *flag, const char *v, int lo, int *out) {
    char *end;
    long x = v ? strtol(v, &end, 10) : 0;
    if (!v || *end || end == v || x < lo || x > 1000000) {
        fprintf(stderr, "nibble bench: error: %s expects an integer >= %d, got '%s'\n", flag, lo, v ? v : "");
        return 0;
    }
    *out = (int)x;
    return 1;
}

int nb_cmd_bench(int argc, char **argv) {
    if (argc < 2 || nb_cli_is_help(argv[1])) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 1 : 0;
    }
    if (strcmp(argv[1], "train")) {
        fprintf(stderr, "nibble bench: error: unknown benchmark '%s' (expected train)\n", argv[1]);
        return 1;
    }
    nb_bench_config c = {.model = "tiny", .quant = "none", .steps = 10, .warmup = 2, .threads = 0, .seed = 1};
    int json = 0;
    for (int i = 2; i < argc; i++) {
        const char *v;
        if (nb_cli_is_help(argv[i])) {
            usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--json")) {
            json = 1;
        } else if (nb_cli_flag_value(argc, argv, &i, "--model", &v)) {
            c.model = v ? v : "";
        } else if (nb_cli_flag_value(argc, argv, &i, "--quant", &v)) {
            c.quant = v ? v : "";
        } else if (nb_cli_flag_value(argc, argv, &i, "--steps", &v)) {
            if (!parse_int("--steps", v, 1, &c.steps)) return 1;
        } else if (nb_cli_flag_value(argc, argv, &i, "--warmup", &v)) {
            if (!parse_int("--warmup", v, 0, &c.warmup)) return 1;
        } else if (nb_cli_flag_value(argc, argv, &i, "--threads", &v)) {
            if (!parse_int("--threads", v, 1, &c.threads)) return 1;
        } else if (nb_cli_flag_value(argc, argv, &i, "--seed", &v)) {
            int s;
            if (!parse_int("--seed", v, 0, &s)) return 1;
            c.seed = (uint64_t)s;
        } else {
            fprintf(stderr, "nibble bench: error: unexpected argument '%s'\n", argv[i]);
            usage(stderr);
            return 1;
        }
    }
    c.profile = !json;
    nb_bench_result r;
    nb_status s = nb_bench_train(&c, &r);
    if (s != NB_OK) return nb_cli_fail("bench", s);
    const char *simd = nb_simd_name(nb_simd_active());
    if (json) {
        printf("{\"framework\": \"nibble\", \"model\": \"%s\", \"quant\": \"%s\", \"threads\": %d, \"simd\": \"%s\", "
               "\"batch\": %d, \"seq\": %d, \"steps\": %d, \"step_ms\": %.3f, \"min_step_ms\": %.3f, "
               "\"cpu_ms\": %.3f, \"tokens_per_s\": %.1f, \"gflops\": %.2f, \"peak_rss_mb\": %.1f, \"forward_ms\": %.3f, "
               "\"backward_ms\": %.3f, \"optimizer_ms\": %.3f, \"params\": %lld, \"arena_mb\": %.1f, "
               "\"arena_mallocs\": %ld, \"first_loss\": %.4f, \"last_loss\": %.4f}\n",
               c.model, c.quant, r.threads, simd, r.B, r.T, c.steps, r.step_ms, r.min_ms, r.cpu_ms, r.tokens_per_s, r.gflops,
               r.peak_rss_mb, r.fwd_ms, r.bwd_ms, r.opt_ms, (long long)r.params, r.arena_peak / 1048576.0,
               r.arena_mallocs, r.first_loss, r.last_loss);
        return 0;
    }
    printf("nibble bench train: model %s (%lld params), quant %s, batch %d x %d, %d threads, %s, %d steps\n",
           c.model, (long long)r.params, c.quant, r.B, r.T, r.threads, simd, c.steps);
    printf("  step %.2f ms (median; min %.2f; CPU %.2f ms)  %.0f tokens/s  %.1f GFLOP/s  peak RSS %.1f MB\n",
           r.step_ms, r.min_ms, r.cpu_ms, r.tokens_per_s, r.gflops, r.peak_rss_mb);
    printf("  forward %.2f ms  backward %.2f ms  optimizer %.2f ms  (fake-quant %.2f ms of fwd+bwd)\n", r.fwd_ms,
           r.bwd_ms, r.opt_ms, r.fq_ms);
    printf("  arena %.1f MB per step, %ld heap allocations in the timed steps; loss %.4f -> %.4f\n",
           r.arena_peak / 1048576.0, r.arena_mallocs, r.first_loss, r.last_loss);
    printf("  %-18s %10s %10s\n", "op (median ms)", "forward", "backward");
    for (int j = 0; j < r.n_ops; j++)
        printf("  %-18s %10.2f %10.2f\n", r.op_name[j], r.op_fwd_ms[j], r.op_bwd_ms[j]);
    return 0;
}
