/* cli_info.c: `nibble info MODEL [--json]`: config, parameter count, tensors, quantization. One
   reader per file format (table `formats` below: the first whose probe accepts the file shows it). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../data/tokenizer.h"
#include "checkpoint.h"
#include "export.h"
#include "cli.h"
#include "import_llama2c.h"
#include "recipe.h"

/* ---- output helpers (text or JSON) ---- */

static void json_str(FILE *f, const char *s) {
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') fprintf(f, "\\%c", *p);
        else if (*p == '\n') fputs("\\n", f);
        else if (*p == '\t') fputs("\\t", f);
        else if (*p < 0x20) fprintf(f, "\\u%04x", *p);
        else fputc(*p, f);
    }
    fputc('"', f);
}

static const char *kind_name(nb_param_kind k) {
    switch (k) {
    case NB_PARAM_EMBED: return "embed";
    case NB_PARAM_NORM: return "norm";
    case NB_PARAM_LINEAR: return "linear";
    case NB_PARAM_CLASSIFIER: return "classifier";
    case NB_PARAM_QUANT: return "quant";
    }
    return "?";
}

static const char *tok_kind_name(nb_tok_kind k) {
    switch (k) {
    case NB_TOK_BYTE: return "byte";
    case NB_TOK_CHAR: return "char";
    case NB_TOK_LLAMA2C: return "llama2c";
    }
    return "?";
}

static int64_t spec_numel(const nb_param_spec *s) {
    int64_t n = 1;
    for (int k = 0; k < s->ndim; k++) n *= s->shape[k];
    return n;
}

static void shape_text(char *buf, size_t n, const nb_param_spec *s, int json) {
    size_t o = (size_t)snprintf(buf, n, json ? "[" : "(");
    for (int k = 0; k < s->ndim && o < n; k++) o += (size_t)snprintf(buf + o, n - o, "%s%lld", k ? ", " : "", (long long)s->shape[k]);
    if (o < n) snprintf(buf + o, n - o, json ? "]" : ")");
}

static void print_tensors(FILE *f, int n, const nb_param_spec *s, int json, int with_kind) {
    char sh[96];
    if (json) {
        fputc('[', f);
        for (int i = 0; i < n; i++) {
            shape_text(sh, sizeof sh, &s[i], 1);
            fprintf(f, "%s{\"name\": ", i ? ", " : "");
            json_str(f, s[i].name);
            fprintf(f, ", \"shape\": %s", sh);
            if (with_kind) fprintf(f, ", \"kind\": \"%s\"", kind_name(s[i].kind));
            fputc('}', f);
        }
        fputc(']', f);
        return;
    }
    for (int i = 0; i < n; i++) {
        shape_text(sh, sizeof sh, &s[i], 0);
        fprintf(f, "  %-32s %-14s %s\n", s[i].name, sh, with_kind ? kind_name(s[i].kind) : "");
    }
}

static void print_config(FILE *f, const nb_model_config *c, int64_t numel, int json) {
    char buf[512];
    if (json) {
        fprintf(f, "\"config\": %s, \"parameters\": %lld", nb_model_config_json(c, buf, sizeof buf), (long long)numel);
        return;
    }
    fprintf(f,
            "config:      dim %d, n_layers %d, n_heads %d, n_kv_heads %d, hidden_dim %d, vocab_size %d, seq_len %d,\n"
            "             norm_eps %g, rope_theta %g, %s classifier, dropout %g\n"
            "parameters:  %lld (%.2f MB as fp32)\n",
            c->dim, c->n_layers, c->n_heads, c->n_kv_heads, c->hidden_dim, c->vocab_size, c->seq_len,
            (double)c->norm_eps, (double)c->rope_theta, c->tied ? "tied" : "untied", (double)c->dropout,
            (long long)numel, (double)numel * 4.0 / 1e6);
}

/* ---- nibble checkpoint (HDF5) ---- */

/* "layers.10" after "layers.9": compare digit runs by value */
static int natural_cmp(const void *pa, const void *pb) {
    const char *a = ((const nb_param_spec *)pa)->name, *b = ((const nb_param_spec *)pb)->name;
    while (*a && *b) {
        if (*a >= '0' && *a <= '9' && *b >= '0' && *b <= '9') {
            char *ea, *eb;
            long long x = strtoll(a, &ea, 10), y = strtoll(b, &eb, 10);
            if (x != y) return x < y ? -1 : 1;
            a = ea;
            b = eb;
        } else {
            if (*a != *b) return (unsigned char)*a - (unsigned char)*b;
            a++;
            b++;
        }
    }
    return (unsigned char)*a - (unsigned char)*b;
}

static int probe_hdf5(const char *path) { return nb_file_is_hdf5(path); }

static void print_rule(FILE *f, const nb_qrule *q, int json, int first) {
    if (json) {
        fprintf(f, "%s{\"match\": ", first ? "" : ", ");
        json_str(f, q->match);
        fprintf(f, ", \"bits\": %d, \"symmetric\": %s, \"ternary\": %s, \"granularity\": \"%s\", \"group_size\": %d, "
                   "\"estimator\": \"%s\", \"observer\": \"%s\"}",
                q->bits, q->symmetric ? "true" : "false", q->ternary ? "true" : "false", q->granularity, q->group_size,
                q->estimator, q->observer);
        return;
    }
    if (!q->ternary && !q->bits) {
        fprintf(f, "    %-24s fp32 (not quantized)\n", q->match);
        return;
    }
    if (q->ternary) fprintf(f, "    %-24s ternary", q->match);
    else fprintf(f, "    %-24s int%d %s", q->match, q->bits, q->symmetric ? "symmetric" : "asymmetric");
    fprintf(f, ", per %s", q->granularity);
    if (!strcmp(q->granularity, "group")) fprintf(f, " of %d", q->group_size);
    fprintf(f, ", %s, observer %s\n", q->estimator, q->observer);
}

/* The quantization policy of the recipe stored in a checkpoint (text or JSON members), or 0 when
   there is no parseable recipe or quantization is off. */
static int print_recipe_quant(FILE *f, const char *recipe_text, int json) {
    if (!recipe_text) return 0;
    nb_recipe *r = nb_calloc(1, sizeof *r);
    if (!r) return 0;
    int shown = 0;
    if (nb_recipe_parse("checkpoint recipe", recipe_text, 0, NULL, r) == NB_OK && r->quant.enabled) {
        const nb_recipe_quant *q = &r->quant;
        if (json) {
            fprintf(f, "\"enabled\": true, \"preset\": ");
            json_str(f, q->preset);
            fprintf(f, ", \"start_step\": %d, \"weights\": [", q->start_step);
            for (int i = 0; i < q->n_weight_rules; i++) print_rule(f, &q->weights[i], 1, i == 0);
            fprintf(f, "], \"acts\": [");
            for (int i = 0; i < q->n_act_rules; i++) print_rule(f, &q->acts[i], 1, i == 0);
            fprintf(f, "]");
        } else {
            fprintf(f, "  policy (from the stored recipe): %s%s, fake-quant from step %d\n", q->preset[0] ? "preset " : "",
                    q->preset[0] ? q->preset : "custom rules", q->start_step);
            if (q->n_weight_rules) fprintf(f, "  weights (first matching rule applies):\n");
            for (int i = 0; i < q->n_weight_rules; i++) print_rule(f, &q->weights[i], 0, i == 0);
            if (q->n_act_rules) fprintf(f, "  activations (inputs of matching weights):\n");
            for (int i = 0; i < q->n_act_rules; i++) print_rule(f, &q->acts[i], 0, i == 0);
        }
        shown = 1;
    }
    nb_recipe_free(r);
    nb_free(r);
    nb_clear_error();
    return shown;
}

static nb_status info_checkpoint(const char *path, int json) {
    nb_ckpt *c;
    NB_TRY(nb_ckpt_open(path, &c));
    nb_status st = NB_OK;
    int np = 0, nsets = 0, nattrs = 0;
    nb_param_spec *ps = NULL;
    char **sets = NULL, **attrs = NULL;
    nb_tokenizer *tok = NULL;
    st = nb_ckpt_list_set(c, "params", &np, &ps);
    if (st == NB_OK) st = nb_ckpt_set_names(c, &nsets, &sets);
    if (st == NB_OK) st = nb_ckpt_attr_names(c, &nattrs, &attrs);
    if (st == NB_OK && nb_ckpt_has_tokenizer(c)) st = nb_ckpt_read_tokenizer(c, &tok);
    if (st != NB_OK) goto done;
    /* model order (and kinds) from the model's own table; anything else after it, by name */
    qsort(ps, (size_t)np, sizeof *ps, natural_cmp);
    int nm = 0, done_n = 0;
    nb_param_spec *ms = NULL;
    if (nb_model_specs(nb_ckpt_config(c), &nm, &ms) == NB_OK) {
        for (int j = 0; j < nm; j++)
            for (int i = done_n; i < np; i++)
                if (!strcmp(ps[i].name, ms[j].name)) {
                    nb_param_spec t = ps[i];
                    memmove(&ps[done_n + 1], &ps[done_n], (size_t)(i - done_n) * sizeof *ps);
                    ps[done_n] = t;
                    ps[done_n++].kind = ms[j].kind;
                    break;
                }
    }
    nb_free(ms);
    int64_t numel = 0;
    for (int i = 0; i < np; i++) numel += spec_numel(&ps[i]);
    const nb_model_config *cfg = nb_ckpt_config(c);
    FILE *f = stdout;
    if (json) {
        fprintf(f, "{\"file\": ");
        json_str(f, path);
        fprintf(f, ", \"format\": \"nibble-checkpoint\", \"version\": %d, \"step\": %lld, ", NB_CKPT_VERSION,
                (long long)nb_ckpt_step(c));
        print_config(f, cfg, numel, 1);
        fprintf(f, ", \"tokenizer\": ");
        if (tok) fprintf(f, "{\"kind\": \"%s\", \"vocab\": %d}", tok_kind_name(nb_tokenizer_kind(tok)), nb_tokenizer_vocab(tok));
        else fprintf(f, "null");
        fprintf(f, ", \"tensors\": ");
        print_tensors(f, np, ps, 1, 1);
        fprintf(f, ", \"sets\": {");
    } else {
        fprintf(f, "file:        %s\nformat:      nibble checkpoint v%d, step %lld\n", path, NB_CKPT_VERSION,
                (long long)nb_ckpt_step(c));
        print_config(f, cfg, numel, 0);
        if (tok)
            fprintf(f, "tokenizer:   %s, %d tokens\n", tok_kind_name(nb_tokenizer_kind(tok)), nb_tokenizer_vocab(tok));
        else
            fprintf(f, "tokenizer:   none stored\n");
    }
    /* extra sets (optimizer state, quantizer state, ...) */
    int has_quant = 0;
    for (int i = 0; i < nsets && st == NB_OK; i++) {
        int n;
        nb_param_spec *s;
        st = nb_ckpt_list_set(c, sets[i], &n, &s);
        if (st != NB_OK) break;
        int64_t e = 0;
        for (int k = 0; k < n; k++) e += spec_numel(&s[k]);
        int quant = !strncmp(sets[i], "quant", 5);
        has_quant |= quant;
        if (json) {
            fprintf(f, "%s", i ? ", " : "");
            json_str(f, sets[i]);
            fprintf(f, ": {\"tensors\": %d, \"numel\": %lld", n, (long long)e);
            if (quant) {
                qsort(s, (size_t)n, sizeof *s, natural_cmp);
                fprintf(f, ", \"shapes\": ");
                print_tensors(f, n, s, 1, 0);
            }
            fputc('}', f);
        } else {
            fprintf(f, "%s%s: %d tensors, %lld floats\n", i ? "             " : "sets:        ", sets[i], n, (long long)e);
        }
        nb_free(s);
    }
    if (st != NB_OK) goto done;
    /* quantization: the stored recipe's policy, the quantizer sets and any "quant*" attribute */
    if (json) fprintf(f, "}, \"quantization\": ");
    char *recipe = NULL;
    if (nb_ckpt_read_attr(c, "recipe", &recipe) != NB_OK) recipe = NULL;
    int nq = 0;
    for (int i = 0; i < nattrs; i++) nq += !strncmp(attrs[i], "quant", 5);
    nb_recipe *probe = nb_calloc(1, sizeof *probe);
    int policy = 0;
    if (probe && recipe && nb_recipe_parse("checkpoint recipe", recipe, 0, NULL, probe) == NB_OK)
        policy = probe->quant.enabled;
    if (probe) {
        nb_recipe_free(probe);
        nb_free(probe);
    }
    nb_clear_error();
    if (!has_quant && !nq && !policy) {
        fprintf(f, json ? "null" : "quantization: none (fp32 model)\n");
    } else {
        if (json) fputc('{', f);
        else fprintf(f, "quantization:%s\n", has_quant ? " learned quantizer state stored (see sets)" : "");
        int k = 0;
        if (policy) {
            print_recipe_quant(f, recipe, json);
            k++;
        }
        for (int i = 0; i < nattrs && st == NB_OK; i++) {
            if (strncmp(attrs[i], "quant", 5)) continue;
            char *v = NULL;
            st = nb_ckpt_read_attr(c, attrs[i], &v);
            if (st != NB_OK) break;
            if (json) {
                fprintf(f, "%s", k++ ? ", " : "");
                json_str(f, attrs[i]);
                fputs(": ", f);
                json_str(f, v ? v : "");
            } else
                fprintf(f, "  %s: %s\n", attrs[i], v ? v : "");
            nb_free(v);
        }
        if (json) fputc('}', f);
    }
    nb_free(recipe);
    /* other free-form attributes (the recipe is only summarised) */
    if (json) fprintf(f, ", \"attributes\": {");
    int k = 0;
    for (int i = 0; i < nattrs && st == NB_OK; i++) {
        if (!strncmp(attrs[i], "quant", 5)) continue;
        char *v = NULL;
        st = nb_ckpt_read_attr(c, attrs[i], &v);
        if (st != NB_OK) break;
        int recipe = !strcmp(attrs[i], "recipe");
        if (json) {
            fprintf(f, "%s", k++ ? ", " : "");
            json_str(f, attrs[i]);
            fputs(": ", f);
            json_str(f, v ? v : "");
        } else if (recipe)
            fprintf(f, "recipe:      %zu bytes of YAML stored\n", v ? strlen(v) : 0);
        else
            fprintf(f, "%-12s %s\n", attrs[i], v ? v : "");
        nb_free(v);
    }
    if (st != NB_OK) goto done;
    if (json) fprintf(f, "}}\n");
    else {
        fprintf(f, "tensors:     %d\n", np);
        print_tensors(f, np, ps, 0, 1);
    }
done:
    nb_free(ps);
    nb_ckpt_free_names(nsets, sets);
    nb_ckpt_free_names(nattrs, attrs);
    nb_tokenizer_free(tok);
    nb_ckpt_close(c);
    return st;
}

/* ---- llama2.c legacy .bin ---- */

static int probe_llama2c(const char *path) { return !nb_file_is_hdf5(path); }

static nb_status info_llama2c(const char *path, int json) {
    nb_model_config cfg;
    nb_status st = nb_llama2c_read_config(path, &cfg);
    if (st == NB_EFORMAT) {
        char why[600];
        snprintf(why, sizeof why, "%s", nb_errmsg());
        return nb_fail(st, "%s: not a nibble checkpoint, nor a llama2.c model (read as one: %s)", path, why);
    }
    NB_TRY(st);
    int n;
    nb_param_spec *s;
    NB_TRY(nb_model_specs(&cfg, &n, &s));
    int64_t numel = nb_model_config_numel(&cfg);
    FILE *f = stdout;
    if (json) {
        fprintf(f, "{\"file\": ");
        json_str(f, path);
        fprintf(f, ", \"format\": \"llama2c\", ");
        print_config(f, &cfg, numel, 1);
        fprintf(f, ", \"tokenizer\": null, \"tensors\": ");
        print_tensors(f, n, s, 1, 1);
        fprintf(f, ", \"quantization\": null}\n");
    } else {
        fprintf(f, "file:        %s\nformat:      llama2.c legacy checkpoint (fp32)\n", path);
        print_config(f, &cfg, numel, 0);
        fprintf(f, "tokenizer:   none (llama2.c keeps it in a separate tokenizer.bin)\nquantization: none (fp32 model)\n");
        fprintf(f, "tensors:     %d (names as after `nibble import`)\n", n);
        print_tensors(f, n, s, 0, 1);
    }
    nb_free(s);
    return NB_OK;
}

/* ---- the format table: add a row (probe + show) per new format, most specific first ---- */

typedef struct info_format {
    const char *name;
    int (*probe)(const char *path);                  /* 1: this reader takes the file */
    nb_status (*show)(const char *path, int json);   /* prints the report (text or one JSON object) */
} info_format;

/* ---- exports (GGUF, nibble export, llama2.c version 2): the runtime's description ---- */

static nb_status info_export(const char *path, int json) { return nb_export_info(stdout, path, json); }

static const info_format formats[] = {
    {"export", nb_export_is_file, info_export},
    {"nibble-checkpoint", probe_hdf5, info_checkpoint},
    {"llama2c", probe_llama2c, info_llama2c},
};

static void usage(FILE *f) {
    fprintf(f, "usage: nibble info MODEL [--json]\n\n"
               "Shows a model file's config, parameter count, tensors (name, shape) and quantization.\n"
               "MODEL: a nibble checkpoint (.h5), a llama2.c .bin, or an export (GGUF, nibble export .h5,\n"
               "llama2.c version-2 .bin). --json prints one JSON object.\n");
}

int nb_cmd_info(int argc, char **argv) {
    const char *path = NULL;
    int json = 0;
    for (int i = 1; i < argc; i++) {
        if (nb_cli_is_help(argv[i])) {
            usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--json")) {
            json = 1;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "nibble info: unknown option '%s'\n", argv[i]);
            usage(stderr);
            return 1;
        } else if (!path) {
            path = argv[i];
        } else {
            fprintf(stderr, "nibble info: unexpected argument '%s'\n", argv[i]);
            return 1;
        }
    }
    if (!path) {
        usage(stderr);
        return 1;
    }
    if (nb_cli_input_missing("info", NULL, path)) return 1;
    for (size_t i = 0; i < sizeof formats / sizeof formats[0]; i++) {
        if (!formats[i].probe(path)) continue;
        nb_status s = formats[i].show(path, json);
        return s == NB_OK ? 0 : nb_cli_fail("info", s);
    }
    return nb_cli_fail("info", nb_fail(NB_EFORMAT, "%s: unknown model format", path));
}
