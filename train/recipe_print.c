/* recipe_print.c: a recipe as YAML (every key, reads back to the same values) and the Markdown
   reference of every key. */
#include "recipe_impl.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------------------------------------- */
/* Output: resolved YAML and the Markdown reference                                               */

typedef struct sbuf {
    char *p;
    size_t len, cap;
    int oom;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n + 1) cap *= 2;
        char *p = nb_realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p, b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...) {
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n < sizeof tmp) {
        sb_put(b, tmp, (size_t)n);
        return;
    }
    char *big = nb_malloc((size_t)n + 1);
    if (!big) {
        b->oom = 1;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    sb_put(b, big, (size_t)n);
    nb_free(big);
}

static char *sb_done(sbuf *b) {
    if (b->oom || !b->p) {
        nb_free(b->p);
        return NULL;
    }
    return b->p;
}

/* YAML printable code point (what libyaml accepts unescaped). */
static int yaml_printable(unsigned cp) {
    return cp == 0x9 || cp == 0xa || (cp >= 0x20 && cp <= 0x7e) || cp == 0x85 || (cp >= 0xa0 && cp <= 0xd7ff) ||
           (cp >= 0xe000 && cp <= 0xfffd && cp != 0xfeff) || (cp >= 0x10000 && cp <= 0x10ffff);
}

/* A double-quoted YAML string that reads back as the same bytes (s is valid UTF-8). */
static void put_quoted(sbuf *b, const char *s) {
    const unsigned char *u = (const unsigned char *)s;
    sb_put(b, "\"", 1);
    size_t i = 0, n = strlen(s);
    while (i < n) {
        unsigned c = u[i];
        int extra = c < 0x80 ? 0 : c >= 0xf0 ? 3 : c >= 0xe0 ? 2 : 1;
        unsigned cp = extra ? c & (0x3f >> extra) : c;
        for (int k = 1; k <= extra && i + k < n; k++) cp = cp << 6 | (u[i + k] & 0x3f);
        if (c == '"' || c == '\\')
            sb_printf(b, "\\%c", c);
        else if (c == '\n')
            sb_put(b, "\\n", 2);
        else if (c == '\t')
            sb_put(b, "\\t", 2);
        else if (!yaml_printable(cp) || cp == 0x85 || cp == 0x2028 || cp == 0x2029) /* line breaks to libyaml */
            sb_printf(b, cp < 0x100 ? "\\x%02x" : cp < 0x10000 ? "\\u%04x" : "\\U%08x", cp);
        else
            sb_put(b, s + i, (size_t)extra + 1);
        i += (size_t)extra + 1;
    }
    sb_put(b, "\"", 1);
}

/* Shortest "%g" that reads back as the same float. */
static void put_float(sbuf *b, float v) {
    char tmp[40];
    for (int prec = 6; prec <= 9; prec++) {
        snprintf(tmp, sizeof tmp, "%.*g", prec, (double)v);
        if (strtof(tmp, NULL) == v) break;
    }
    sb_put(b, tmp, strlen(tmp));
}

static void put_value(sbuf *b, const nb_recipe_key *k, const void *base) {
    const char *f = (const char *)base + k->off;
    switch (k->type) {
    case NB_K_INT: sb_printf(b, "%d", *(const int *)f); break;
    case NB_K_FLOAT: put_float(b, *(const float *)f); break;
    case NB_K_BOOL: sb_printf(b, "%s", *(const int *)f ? "true" : "false"); break;
    case NB_K_U64: sb_printf(b, "%llu", *(const unsigned long long *)f); break;
    case NB_K_STR:
    case NB_K_ENUM: {
        char tmp[1100];
        snprintf(tmp, sizeof tmp, "%.*s", (int)k->size, f); /* fields are NUL-terminated; be safe anyway */
        put_quoted(b, tmp);
        break;
    }
    case NB_K_RULES: break;
    }
}

static void put_rules(sbuf *b, const nb_recipe *r, int list, const char *name) {
    int n = list ? r->quant.n_act_rules : r->quant.n_weight_rules;
    if (n <= 0) {
        sb_printf(b, "  %s: []\n", name);
        return;
    }
    if (n > NB_MAX_QRULES) n = NB_MAX_QRULES;
    sb_printf(b, "  %s:\n", name);
    for (int i = 0; i < n; i++) {
        const nb_qrule *q = list ? &r->quant.acts[i] : &r->quant.weights[i];
        for (int f = 0; f < NB_RECIPE_N_RULE_KEYS; f++) {
            sb_printf(b, "    %s %s: ", f ? " " : "-", nb_recipe_rule_keys[f].path);
            put_value(b, &nb_recipe_rule_keys[f], q);
            sb_put(b, "\n", 1);
        }
    }
}

static int ascii_printable(char ch) { return (unsigned char)ch >= 0x20 && (unsigned char)ch < 0x7f; }

char *nb_recipe_yaml_text(const nb_recipe *r, int n_ovs, char **ovs) {
    sbuf b = {0};
    sb_printf(&b, "# nibble recipe, resolved (every key)\n");
    if (r->path[0]) {
        sb_put(&b, "# from: ", 8);
        for (const char *s = r->path; *s; s++) sb_put(&b, ascii_printable(*s) ? s : "?", 1);
        sb_put(&b, "\n", 1);
    }
    for (int i = 0; i < n_ovs; i++) { /* a comment line: no newline may escape into the YAML */
        sb_put(&b, "# override: ", 12);
        for (const char *s = ovs[i]; *s; s++) sb_put(&b, ascii_printable(*s) ? s : "?", 1);
        sb_put(&b, "\n", 1);
    }
    char section[32] = "";
    for (int i = 0; i < nb_recipe_n_keys; i++) {
        const nb_recipe_key *k = &nb_recipe_keys[i];
        const char *dot = strchr(k->path, '.');
        if (dot && (strlen(section) != (size_t)(dot - k->path) || strncmp(section, k->path, dot - k->path))) {
            snprintf(section, sizeof section, "%.*s", (int)(dot - k->path), k->path);
            sb_printf(&b, "%s:\n", section);
        }
        const char *name = dot ? dot + 1 : k->path;
        if (k->type == NB_K_RULES) {
            put_rules(&b, r, k->off == offsetof(nb_recipe, quant.acts), name);
            continue;
        }
        sb_printf(&b, "%s%s: ", dot ? "  " : "", name);
        put_value(&b, k, r);
        sb_put(&b, "\n", 1);
    }
    return sb_done(&b);
}

char *nb_recipe_to_yaml(const nb_recipe *r) { return nb_recipe_yaml_text(r, 0, NULL); }

static const char *type_name(const nb_recipe_key *k) {
    switch (k->type) {
    case NB_K_INT: return "int";
    case NB_K_FLOAT: return "float";
    case NB_K_BOOL: return "bool";
    case NB_K_STR: return "string";
    case NB_K_ENUM: return "enum";
    case NB_K_U64: return "u64";
    case NB_K_RULES: return "list";
    }
    return "?";
}

static void put_md(sbuf *b, const char *s) { /* Markdown cell text: escape the column bar */
    for (; *s; s++) sb_put(b, *s == '|' ? "\\|" : s, *s == '|' ? 2 : 1);
}

static void ref_row(sbuf *b, const char *path, const nb_recipe_key *k, int act) {
    char want[200];
    nb_recipe_expect(want, sizeof want, k, act);
    const char *d = kdef(k, act);
    sb_printf(b, "| `%s` | %s | `%s` | ", path, type_name(k), *d ? d : "\"\"");
    const char *w = want; /* short form: "2..8 or 0", ">= 1", "[0, 1)", "stop, skip" */
    static const char *const drop[] = {"an integer in ", "an integer ", "a number in ", "a number ", "one of "};
    for (int i = 0; i < 5; i++)
        if (!strncmp(w, drop[i], strlen(drop[i]))) {
            w += strlen(drop[i]);
            break;
        }
    if (k->type == NB_K_STR) snprintf(want, sizeof want, "text, up to %zu bytes", k->size - 1), w = want;
    put_md(b, k->type == NB_K_RULES ? "up to 32 rules" : w);
    sb_put(b, " | ", 3);
    put_md(b, k->help);
    sb_put(b, " |\n", 3);
}

char *nb_recipe_reference(void) {
    sbuf b = {0};
    sb_printf(&b, "| key | type | default | allowed | meaning |\n|---|---|---|---|---|\n");
    for (int i = 0; i < nb_recipe_n_keys; i++) {
        ref_row(&b, nb_recipe_keys[i].path, &nb_recipe_keys[i], 0);
        if (nb_recipe_keys[i].type != NB_K_RULES) continue;
        int act = nb_recipe_keys[i].off == offsetof(nb_recipe, quant.acts);
        for (int f = 0; f < NB_RECIPE_N_RULE_KEYS; f++) {
            char path[96];
            snprintf(path, sizeof path, "%s[].%s", list_path[act], nb_recipe_rule_keys[f].path);
            ref_row(&b, path, &nb_recipe_rule_keys[f], act);
        }
    }
    return sb_done(&b);
}

int nb_recipe_key_count(void) { return nb_recipe_n_keys + 2 * NB_RECIPE_N_RULE_KEYS; }

const char *nb_recipe_key_path(int i) {
    static const char *const rule_paths[2][NB_RECIPE_N_RULE_KEYS] = {
        {"quant.weights[].match", "quant.weights[].bits", "quant.weights[].symmetric", "quant.weights[].restrict_range",
         "quant.weights[].ternary", "quant.weights[].granularity", "quant.weights[].group_size",
         "quant.weights[].estimator", "quant.weights[].observer", "quant.weights[].percentile",
         "quant.weights[].ema_decay", "quant.weights[].scale_dtype", "quant.weights[].tail"},
        {"quant.activations[].match", "quant.activations[].bits", "quant.activations[].symmetric",
         "quant.activations[].restrict_range", "quant.activations[].ternary", "quant.activations[].granularity",
         "quant.activations[].group_size", "quant.activations[].estimator", "quant.activations[].observer",
         "quant.activations[].percentile", "quant.activations[].ema_decay", "quant.activations[].scale_dtype",
         "quant.activations[].tail"},
    };
    if (i < 0 || i >= nb_recipe_key_count()) return NULL;
    if (i < nb_recipe_n_keys) return nb_recipe_keys[i].path;
    i -= nb_recipe_n_keys;
    return rule_paths[i / NB_RECIPE_N_RULE_KEYS][i % NB_RECIPE_N_RULE_KEYS];
}
