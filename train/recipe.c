/* recipe.c: YAML recipes (libyaml) driven by one key table (recipe_keys.c): parsing, overrides,
   validation and the entry points; recipe_print.c writes the resolved YAML and the reference. */
#include "recipe.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <yaml.h>

#include "recipe_impl.h"

/* ---------------------------------------------------------------------------------------------- */
/* Parse state                                                                                    */

typedef struct mark {
    int line, col; /* 1-based position in the file; 0 = not set by the file */
    int ov;        /* 1 + index of the override that set it last; 0 = none */
} mark;

/* Parse state: the recipe being filled, where each key was set (for the cross-key messages of
   validation), and the override currently applied. */
typedef struct ctx {
    nb_recipe *r;
    const char *file;
    const char *text;
    size_t len;
    yaml_document_t *doc;
    char **ovs;
    int cur_ov; /* index of the override being applied, -1 = the file */
    mark km[NB_RECIPE_MAX_KEYS];
    mark rm[2][NB_MAX_QRULES][NB_RECIPE_N_RULE_KEYS + 1]; /* [NB_RECIPE_N_RULE_KEYS] = the rule itself */
} ctx;

static nb_recipe_loc node_loc(const ctx *c, const yaml_node_t *n) {
    nb_recipe_loc at = {c->file, 0, 0, NULL};
    if (c->cur_ov >= 0)
        at.override = c->ovs[c->cur_ov];
    else if (n) {
        at.line = (int)n->start_mark.line + 1;
        at.col = (int)n->start_mark.column + 1;
    }
    return at;
}

static mark node_mark(const ctx *c, const yaml_node_t *n) {
    mark m = {0, 0, 0};
    if (c->cur_ov >= 0)
        m.ov = c->cur_ov + 1;
    else if (n) {
        m.line = (int)n->start_mark.line + 1;
        m.col = (int)n->start_mark.column + 1;
    }
    return m;
}

static nb_recipe_loc mark_loc(const ctx *c, mark m, const char *file) {
    nb_recipe_loc at = {file, 0, 0, NULL};
    if (!c) return at;
    if (m.ov)
        at.override = c->ovs[m.ov - 1];
    else {
        at.line = m.line;
        at.col = m.col;
    }
    return at;
}

/* ---------------------------------------------------------------------------------------------- */
/* Walking the YAML document                                                                      */

static int find_key(const char *path) {
    for (int i = 0; i < nb_recipe_n_keys; i++)
        if (!strcmp(nb_recipe_keys[i].path, path)) return i;
    return -1;
}

static int find_rule_key(const char *name, size_t len) {
    for (int i = 0; i < NB_RECIPE_N_RULE_KEYS; i++)
        if (strlen(nb_recipe_rule_keys[i].path) == len && !memcmp(nb_recipe_rule_keys[i].path, name, len)) return i;
    return -1;
}

/* Is `prefix` (e.g. "model") a section, i.e. the start of some key "model.x"? */
static int is_section(const char *prefix, size_t len) {
    for (int i = 0; i < nb_recipe_n_keys; i++)
        if (!strncmp(nb_recipe_keys[i].path, prefix, len) && nb_recipe_keys[i].path[len] == '.') return 1;
    return 0;
}

/* The closest name among the keys directly under `prefix` ("" = top level; "model." = the
   model section): writes the name (a key or section) into best, returns its distance. */
static int closest_child(const char *prefix, const char *name, size_t len, char *best, size_t nbest) {
    size_t pl = strlen(prefix);
    int bd = 1000;
    best[0] = 0;
    for (int i = 0; i < nb_recipe_n_keys; i++) {
        const char *p = nb_recipe_keys[i].path;
        if (strncmp(p, prefix, pl)) continue;
        const char *child = p + pl, *dot = strchr(child, '.');
        size_t cl = dot ? (size_t)(dot - child) : strlen(child);
        int d = nb_recipe_edit_distance(name, len, child, cl);
        if (d < bd) {
            bd = d;
            snprintf(best, nbest, "%.*s", (int)cl, child);
        }
    }
    return bd;
}

/* A key whose last part is `name` but lives in another section ("lr" at the top: optim.lr). */
static const char *key_in_other_section(const char *prefix, const char *name, size_t len) {
    for (int i = 0; i < nb_recipe_n_keys; i++) {
        const char *p = nb_recipe_keys[i].path, *dot = strrchr(p, '.');
        const char *last = dot ? dot + 1 : p;
        size_t sl = (size_t)(last - p); /* "optim." or "" */
        if (strlen(last) == len && !memcmp(last, name, len) && (sl != strlen(prefix) || strncmp(p, prefix, sl)))
            return p;
    }
    return NULL;
}

/* "a, b, c": the names directly under prefix, each once, in table order. */
static void list_children(const char *prefix, char *buf, size_t n) {
    size_t pl = strlen(prefix), o = 0;
    buf[0] = 0;
    for (int i = 0; i < nb_recipe_n_keys && o < n; i++) {
        const char *p = nb_recipe_keys[i].path;
        if (strncmp(p, prefix, pl)) continue;
        const char *child = p + pl, *dot = strchr(child, '.');
        int cl = dot ? (int)(dot - child) : (int)strlen(child);
        if (i > 0 && !strncmp(nb_recipe_keys[i - 1].path, p, pl + cl) && (nb_recipe_keys[i - 1].path[pl + cl] == '.'))
            continue;
        o += (size_t)snprintf(buf + o, n - o, "%s%.*s", o ? ", " : "", cl, child);
    }
}

static int closest_rule_key(const char *name, size_t len, char *best, size_t nbest) {
    int bd = 1000;
    for (int i = 0; i < NB_RECIPE_N_RULE_KEYS; i++) {
        int d = nb_recipe_edit_distance(name, len, nb_recipe_rule_keys[i].path, strlen(nb_recipe_rule_keys[i].path));
        if (d < bd) {
            bd = d;
            snprintf(best, nbest, "%s", nb_recipe_rule_keys[i].path);
        }
    }
    return bd;
}

static const char *node_kind(const yaml_node_t *n) {
    return n->type == YAML_MAPPING_NODE ? "a mapping" : n->type == YAML_SEQUENCE_NODE ? "a list" : "a scalar";
}

static int scalar_is_null(const yaml_node_t *n) {
    return n->type == YAML_SCALAR_NODE && n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
           nb_recipe_is_null((const char *)n->data.scalar.value, n->data.scalar.length);
}

/* Key node of a mapping pair as text; non-scalar keys are an error. */
static nb_status pair_key(ctx *c, yaml_node_t *kn, const char *where, const char **name, size_t *len) {
    if (!kn || kn->type != YAML_SCALAR_NODE) {
        nb_recipe_loc at = node_loc(c, kn);
        return nb_recipe_fail_at(&at, "%s: expected a key name, got %s", where, kn ? node_kind(kn) : "nothing");
    }
    *name = (const char *)kn->data.scalar.value;
    *len = kn->data.scalar.length;
    if (*len == 0 || memchr(*name, 0, *len)) {
        nb_recipe_loc at = node_loc(c, kn);
        return nb_recipe_fail_at(&at, "%s: empty or invalid key name", where);
    }
    return NB_OK;
}

/* An earlier pair of the same mapping with the same key? Then it is a duplicate. */
static nb_status check_duplicate(ctx *c, yaml_node_t *map, yaml_node_pair_t *p, const char *full) {
    yaml_node_t *kn = yaml_document_get_node(c->doc, p->key);
    for (yaml_node_pair_t *q = map->data.mapping.pairs.start; q < p; q++) {
        yaml_node_t *qk = yaml_document_get_node(c->doc, q->key);
        if (qk && qk->type == YAML_SCALAR_NODE && qk->data.scalar.length == kn->data.scalar.length &&
            !memcmp(qk->data.scalar.value, kn->data.scalar.value, kn->data.scalar.length)) {
            nb_recipe_loc at = node_loc(c, kn);
            if (c->cur_ov >= 0) return nb_recipe_fail_at(&at, "%s: duplicate key", full);
            return nb_recipe_fail_at(&at, "%s: duplicate key (first at line %d)", full, (int)qk->start_mark.line + 1);
        }
    }
    return NB_OK;
}

/* One rule: a mapping of rule keys onto the defaults of its list. */
static nb_status walk_rule(ctx *c, yaml_node_t *item, int list, int idx, nb_qrule *q) {
    char path[96];
    snprintf(path, sizeof path, "%s[%d]", list_path[list], idx);
    nb_recipe_rule_defaults(q, list);
    c->rm[list][idx][NB_RECIPE_N_RULE_KEYS] = node_mark(c, item);
    for (int f = 0; f < NB_RECIPE_N_RULE_KEYS; f++) c->rm[list][idx][f] = (mark){0, 0, 0};
    if (scalar_is_null(item)) return NB_OK; /* "- " alone: a rule of defaults */
    if (item->type != YAML_MAPPING_NODE) {
        nb_recipe_loc at = node_loc(c, item);
        return nb_recipe_fail_at(&at, "%s: expected a mapping (match: ..., bits: ...), got %s", path, node_kind(item));
    }
    for (yaml_node_pair_t *p = item->data.mapping.pairs.start; p < item->data.mapping.pairs.top; p++) {
        yaml_node_t *kn = yaml_document_get_node(c->doc, p->key), *vn = yaml_document_get_node(c->doc, p->value);
        const char *name;
        size_t len;
        NB_TRY(pair_key(c, kn, path, &name, &len));
        char full[200];
        snprintf(full, sizeof full, "%s.%.*s", path, (int)(len > 64 ? 64 : len), name);
        NB_TRY(check_duplicate(c, item, p, full));
        int f = find_rule_key(name, len);
        if (f < 0) {
            char best[64];
            nb_recipe_loc at = node_loc(c, kn);
            int d = closest_rule_key(name, len, best, sizeof best);
            if (nb_recipe_close_enough(d, len))
                return nb_recipe_fail_at(&at, "unknown key '%s'; did you mean '%s.%s'?", full, path, best);
            return nb_recipe_fail_at(
                &at,
                "unknown key '%s'; a rule has match, bits, symmetric, restrict_range, ternary, "
                "granularity, group_size, estimator, observer, percentile, ema_decay, scale_dtype, tail",
                full);
        }
        snprintf(full, sizeof full, "%s.%s", path, nb_recipe_rule_keys[f].path);
        nb_recipe_loc at = node_loc(c, vn);
        if (!vn || vn->type != YAML_SCALAR_NODE) {
            char want[200];
            nb_recipe_expect(want, sizeof want, &nb_recipe_rule_keys[f], list);
            return nb_recipe_fail_at(&at, "%s: expected %s, got %s", full, want, vn ? node_kind(vn) : "nothing");
        }
        NB_TRY(nb_recipe_set_scalar(&nb_recipe_rule_keys[f], list, q, full, (const char *)vn->data.scalar.value,
                                    vn->data.scalar.length, vn->data.scalar.style != YAML_PLAIN_SCALAR_STYLE, &at));
        c->rm[list][idx][f] = node_mark(c, vn);
    }
    return NB_OK;
}

/* quant.weights / quant.activations: a list of rules replacing the current one. */
static nb_status walk_rules(ctx *c, yaml_node_t *seq, int list) {
    nb_recipe *r = c->r;
    if (scalar_is_null(seq)) {
        *rule_count(r, list) = 0;
        return NB_OK;
    }
    if (seq->type != YAML_SEQUENCE_NODE) {
        nb_recipe_loc at = node_loc(c, seq);
        return nb_recipe_fail_at(&at, "%s: expected a list of rules (- match: ..., bits: ...), got %s", list_path[list],
                                 node_kind(seq));
    }
    /* build the new list aside: a failure leaves the recipe as it was */
    nb_qrule tmp[NB_MAX_QRULES];
    memset(tmp, 0, sizeof tmp); /* unused slots are zero, so equal recipes compare equal */
    int n = 0;
    for (yaml_node_item_t *it = seq->data.sequence.items.start; it < seq->data.sequence.items.top; it++, n++) {
        yaml_node_t *item = yaml_document_get_node(c->doc, *it);
        if (n >= NB_MAX_QRULES) {
            nb_recipe_loc at = node_loc(c, item);
            return nb_recipe_fail_at(&at, "%s: at most %d rules, this is rule %d", list_path[list], NB_MAX_QRULES,
                                     n + 1);
        }
        NB_TRY(walk_rule(c, item, list, n, &tmp[n]));
    }
    memcpy(rule_array(r, list), tmp, sizeof tmp);
    *rule_count(r, list) = n;
    return NB_OK;
}

/* A mapping of keys under `prefix` ("" or "model."). */
static nb_status walk_map(ctx *c, yaml_node_t *map, const char *prefix) {
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *kn = yaml_document_get_node(c->doc, p->key), *vn = yaml_document_get_node(c->doc, p->value);
        const char *name;
        size_t len;
        char sect[80];
        snprintf(sect, sizeof sect, "%.*s", *prefix ? (int)strlen(prefix) - 1 : 9, *prefix ? prefix : "top level");
        NB_TRY(pair_key(c, kn, sect, &name, &len));
        char full[200];
        snprintf(full, sizeof full, "%s%.*s", prefix, (int)(len > 100 ? 100 : len), name);
        NB_TRY(check_duplicate(c, map, p, full));
        int i = len <= 100 ? find_key(full) : -1;
        nb_recipe_loc at = node_loc(c, vn);
        if (i >= 0 && nb_recipe_keys[i].type == NB_K_RULES) {
            NB_TRY(walk_rules(c, vn, nb_recipe_keys[i].off == offsetof(nb_recipe, quant.acts)));
            c->km[i] = node_mark(c, vn);
        } else if (i >= 0) {
            if (!vn || vn->type != YAML_SCALAR_NODE) {
                char want[200];
                nb_recipe_expect(want, sizeof want, &nb_recipe_keys[i], 0);
                return nb_recipe_fail_at(&at, "%s: expected %s, got %s", full, want, vn ? node_kind(vn) : "nothing");
            }
            NB_TRY(nb_recipe_set_scalar(&nb_recipe_keys[i], 0, c->r, full, (const char *)vn->data.scalar.value,
                                        vn->data.scalar.length, vn->data.scalar.style != YAML_PLAIN_SCALAR_STYLE, &at));
            c->km[i] = node_mark(c, vn);
        } else if (len <= 100 && is_section(full, strlen(full))) {
            if (scalar_is_null(vn)) continue; /* "model:" with nothing under it */
            if (vn->type != YAML_MAPPING_NODE)
                return nb_recipe_fail_at(&at, "%s: expected a mapping of %s keys, got %s", full, full, node_kind(vn));
            char sub[210];
            snprintf(sub, sizeof sub, "%s.", full);
            NB_TRY(walk_map(c, vn, sub));
        } else {
            char best[64];
            nb_recipe_loc kat = node_loc(c, kn);
            int d = closest_child(prefix, name, len, best, sizeof best);
            if (nb_recipe_close_enough(d, len))
                return nb_recipe_fail_at(&kat, "unknown key '%s'; did you mean '%s%s'?", full, prefix, best);
            const char *elsewhere = key_in_other_section(prefix, name, len);
            if (elsewhere) return nb_recipe_fail_at(&kat, "unknown key '%s'; did you mean '%s'?", full, elsewhere);
            if (find_rule_key(name, len) >= 0)
                return nb_recipe_fail_at(&kat,
                                         "unknown key '%s'; %.*s is a rule key: put it in a rule of quant.weights or "
                                         "quant.activations (- match: ..., %.*s: ...)",
                                         full, (int)len, name, (int)len, name);
            char names[600];
            list_children(prefix, names, sizeof names);
            return nb_recipe_fail_at(&kat, "unknown key '%s'; %s has %s", full, *prefix ? sect : "the top level",
                                     names);
        }
    }
    return NB_OK;
}

/* libyaml's complaint with its position ("did not find expected key" ...). */
static nb_status yaml_error(const ctx *c, yaml_parser_t *p) {
    if (p->error == YAML_MEMORY_ERROR) return nb_fail(NB_ENOMEM, "%s: out of memory while parsing YAML", c->file);
    int line = (int)p->problem_mark.line + 1, col = (int)p->problem_mark.column + 1;
    if (p->error == YAML_READER_ERROR) { /* only a byte offset: count lines up to it */
        line = 1, col = 1;
        for (size_t i = 0; i < p->problem_offset && i < c->len; i++) {
            if (c->text[i] == '\n')
                line++, col = 1;
            else
                col++;
        }
    }
    nb_recipe_loc at = {c->file, line, col, c->cur_ov >= 0 ? c->ovs[c->cur_ov] : NULL};
    if (p->context)
        return nb_recipe_fail_at(&at, "malformed YAML: %s (%s at line %d)", p->problem ? p->problem : "error",
                                 p->context, (int)p->context_mark.line + 1);
    return nb_recipe_fail_at(&at, "malformed YAML: %s", p->problem ? p->problem : "error");
}

#define MAX_FLOW_DEPTH 64

/* libyaml's scanner is quadratic in the nesting of [ and {, so deep nesting is refused up front.
   A light scan: brackets in comments and quoted scalars do not count (a quote opens a scalar only
   after a blank or an indicator, so "it's" stays plain text). Sets the position of the first
   bracket too many. */
static int flow_too_deep(const char *t, size_t len, int *line, int *col) {
    int depth = 0;
    *line = 1, *col = 0;
    for (size_t i = 0; i < len; i++) {
        char ch = t[i], prev = i ? t[i - 1] : '\n';
        (*col)++;
        if (ch == '\n') {
            (*line)++, *col = 0;
        } else if (ch == '#' && strchr(" \t\n", prev)) {
            while (i + 1 < len && t[i + 1] != '\n') i++;
        } else if ((ch == '"' || ch == '\'') && strchr(" \t\n[{,:-?", prev)) {
            size_t j = i + 1;
            for (; j < len; j++) {
                if (t[j] == '\n') (*line)++, *col = 0;
                if (ch == '"' && t[j] == '\\') {
                    j++;
                    continue;
                }
                if (t[j] == ch) {
                    if (ch == '\'' && j + 1 < len && t[j + 1] == '\'') { /* '' is a quote inside '...' */
                        j++;
                        continue;
                    }
                    break;
                }
            }
            i = j;
        } else if (ch == '[' || ch == '{') {
            if (++depth > MAX_FLOW_DEPTH) return 1;
        } else if ((ch == ']' || ch == '}') && depth > 0) {
            depth--;
        }
    }
    return 0;
}

/* Loads exactly one YAML document (an empty input gives a document without a root). */
static nb_status load_doc(ctx *c, const char *text, size_t len, yaml_document_t *doc) {
    int line, col;
    if (flow_too_deep(text, len, &line, &col)) {
        nb_recipe_loc at = {c->file, line, col, c->cur_ov >= 0 ? c->ovs[c->cur_ov] : NULL};
        memset(doc, 0, sizeof *doc);
        return nb_recipe_fail_at(&at, "[ and { nested more than %d deep", MAX_FLOW_DEPTH);
    }
    yaml_parser_t p;
    if (!yaml_parser_initialize(&p)) return nb_fail(NB_ENOMEM, "%s: out of memory", c->file);
    const char *old_text = c->text;
    size_t old_len = c->len;
    c->text = text, c->len = len;
    yaml_parser_set_input_string(&p, (const unsigned char *)text, len);
    nb_status s = NB_OK;
    if (!yaml_parser_load(&p, doc)) { /* libyaml frees the partial document itself */
        s = yaml_error(c, &p);
    } else if (yaml_document_get_root_node(doc)) {
        yaml_document_t extra;
        if (!yaml_parser_load(&p, &extra)) {
            s = yaml_error(c, &p);
        } else {
            yaml_node_t *root = yaml_document_get_root_node(&extra);
            if (root) {
                nb_recipe_loc at = node_loc(c, root);
                s = nb_recipe_fail_at(&at, "expected one YAML document, found a second one");
            }
            yaml_document_delete(&extra);
        }
        if (s) yaml_document_delete(doc);
    }
    yaml_parser_delete(&p);
    c->text = old_text, c->len = old_len;
    return s;
}

/* ---------------------------------------------------------------------------------------------- */
/* Overrides                                                                                      */

static void trim(const char **s, size_t *len) {
    while (*len && (**s == ' ' || **s == '\t')) (*s)++, (*len)--;
    while (*len && ((*s)[*len - 1] == ' ' || (*s)[*len - 1] == '\t')) (*len)--;
}

/* key=value, with key a dotted path; rules by index: quant.weights.0.bits or quant.weights[0].bits. */
static nb_status apply_override(ctx *c, int idx) {
    const char *text = c->ovs[idx];
    nb_recipe_loc at = {c->file, 0, 0, text};
    c->cur_ov = idx;
    const char *eq = strchr(text, '=');
    if (!eq) return nb_recipe_fail_at(&at, "expected key=value (e.g. optim.lr=3e-4 or quant.weights.0.bits=4)");
    const char *k = text, *v = eq + 1;
    size_t kl = (size_t)(eq - text), vl = strlen(v);
    trim(&k, &kl);
    trim(&v, &vl);
    if (kl == 0) return nb_recipe_fail_at(&at, "expected key=value, the key is empty");
    /* normalise [N] to .N */
    char path[160];
    size_t pl = 0;
    for (size_t i = 0; i < kl; i++) {
        char ch = k[i];
        if (ch == '[') ch = '.';
        if (ch == ']') continue;
        if (pl + 1 >= sizeof path) return nb_recipe_fail_at(&at, "unknown key '%.60s...'", k);
        path[pl++] = ch;
    }
    path[pl] = 0;
    int quoted = vl >= 2 && (v[0] == '"' || v[0] == '\'') && v[vl - 1] == v[0];
    if (quoted) v++, vl -= 2;

    int i = find_key(path);
    if (i >= 0 && nb_recipe_keys[i].type != NB_K_RULES) {
        NB_TRY(nb_recipe_set_scalar(&nb_recipe_keys[i], 0, c->r, path, v, vl, quoted, &at));
        c->km[i] = (mark){0, 0, idx + 1};
        return NB_OK;
    }
    if (i >= 0) { /* a whole list: quant.weights=[{match: "*", bits: 4}] */
        int list = nb_recipe_keys[i].off == offsetof(nb_recipe, quant.acts);
        if (quoted) return nb_recipe_fail_at(&at, "%s: expected a list of rules, got a quoted string", path);
        yaml_document_t doc;
        NB_TRY(load_doc(c, v, vl, &doc));
        yaml_node_t *root = yaml_document_get_root_node(&doc);
        yaml_document_t *old = c->doc;
        c->doc = &doc;
        nb_status s;
        if (!root) {
            *rule_count(c->r, list) = 0;
            memset(rule_array(c->r, list), 0, sizeof(nb_qrule) * NB_MAX_QRULES);
            s = NB_OK;
        } else {
            s = walk_rules(c, root, list);
        }
        c->doc = old;
        yaml_document_delete(&doc);
        if (s == NB_OK) c->km[i] = (mark){0, 0, idx + 1};
        return s;
    }
    /* quant.weights.N.field */
    for (int list = 0; list < 2; list++) {
        size_t ll = strlen(list_path[list]);
        if (strncmp(path, list_path[list], ll) || path[ll] != '.') continue;
        const char *num = path + ll + 1, *dot = strchr(num, '.');
        size_t nl = dot ? (size_t)(dot - num) : strlen(num);
        long long n;
        if (!nb_recipe_parse_ll(num, nl, &n) || num[0] == '+' || num[0] == '-')
            return nb_recipe_fail_at(&at, "%s: expected a rule index after %s. (e.g. %s.0.bits)", path, list_path[list],
                                     list_path[list]);
        int count = *rule_count(c->r, list);
        if (n > count || n >= NB_MAX_QRULES)
            return nb_recipe_fail_at(
                &at, "%s: rule index %lld out of range: %s has %d rules (index %d adds one, at most %d)", path, n,
                list_path[list], count, count, NB_MAX_QRULES);
        if (!dot)
            return nb_recipe_fail_at(&at, "%s is a rule; set one of its keys, e.g. %s.%lld.bits=4", path,
                                     list_path[list], n);
        const char *field = dot + 1;
        int f = find_rule_key(field, strlen(field));
        if (f < 0) {
            char best[64];
            int d = closest_rule_key(field, strlen(field), best, sizeof best);
            if (nb_recipe_close_enough(d, strlen(field)))
                return nb_recipe_fail_at(&at, "unknown key '%s'; did you mean '%s.%lld.%s'?", path, list_path[list], n,
                                         best);
            return nb_recipe_fail_at(&at, "unknown key '%s'", path);
        }
        nb_qrule q;
        if (n == count)
            nb_recipe_rule_defaults(&q, list);
        else
            q = rule_array(c->r, list)[n];
        char full[200];
        snprintf(full, sizeof full, "%s[%lld].%s", list_path[list], n, nb_recipe_rule_keys[f].path);
        NB_TRY(nb_recipe_set_scalar(&nb_recipe_rule_keys[f], list, &q, full, v, vl, quoted, &at));
        if (n == count) {
            *rule_count(c->r, list) = count + 1;
            for (int g = 0; g <= NB_RECIPE_N_RULE_KEYS; g++) c->rm[list][n][g] = (mark){0, 0, 0};
            c->rm[list][n][NB_RECIPE_N_RULE_KEYS] = (mark){0, 0, idx + 1};
        }
        rule_array(c->r, list)[n] = q;
        c->rm[list][n][f] = (mark){0, 0, idx + 1};
        return NB_OK;
    }
    if (is_section(path, pl))
        return nb_recipe_fail_at(&at, "'%s' is a section; set one of its keys (e.g. %s.%s)", path, path,
                                 !strcmp(path, "quant") ? "enabled=false" : "...=VALUE");
    /* unknown: closest full path */
    const char *best = NULL;
    int bd = 1000;
    for (int j = 0; j < nb_recipe_n_keys; j++) {
        int d = nb_recipe_edit_distance(path, pl, nb_recipe_keys[j].path, strlen(nb_recipe_keys[j].path));
        if (d < bd) bd = d, best = nb_recipe_keys[j].path;
    }
    if (best && nb_recipe_close_enough(bd, pl))
        return nb_recipe_fail_at(&at, "unknown key '%s'; did you mean '%s'?", path, best);
    return nb_recipe_fail_at(&at, "unknown key '%s' (nibble train --help lists the keys)", path);
}

/* ---------------------------------------------------------------------------------------------- */
/* Validation                                                                                     */

/* Where key `path` was set (file position, override), else just the file. */
static nb_recipe_loc key_loc(const ctx *c, const nb_recipe *r, const char *path) {
    int i = find_key(path);
    NB_ASSERT(i >= 0);
    return c ? mark_loc(c, c->km[i], r->path) : (nb_recipe_loc){r->path, 0, 0, NULL};
}

static nb_recipe_loc rule_loc(const ctx *c, const nb_recipe *r, int list, int idx, const char *field) {
    nb_recipe_loc at = {r->path, 0, 0, NULL};
    if (!c) return at;
    int f = field ? find_rule_key(field, strlen(field)) : NB_RECIPE_N_RULE_KEYS;
    mark m = c->rm[list][idx][f];
    if (!m.line && !m.ov) m = c->rm[list][idx][NB_RECIPE_N_RULE_KEYS];
    return mark_loc(c, m, r->path);
}

static nb_status check_file(const ctx *c, const nb_recipe *r, const char *key_path, const char *file) {
    struct stat st;
    nb_recipe_loc at = key_loc(c, r, key_path);
    if (stat(file, &st) != 0)
        return nb_recipe_fail_at(&at, "%s: cannot open '%s': %s", key_path, file, strerror(errno));
    if (S_ISDIR(st.st_mode)) return nb_recipe_fail_at(&at, "%s: '%s' is a directory, expected a file", key_path, file);
    return NB_OK;
}

/* "byte" | "char" | "llama2c:PATH" (data.tokenizer); "random" | "llama2c:PATH" | "checkpoint:PATH". */
static nb_status check_source(const ctx *c, const nb_recipe *r, const char *key_path, const char *v, const char *plain1,
                              const char *plain2, const char *pre2) {
    if (!strcmp(v, plain1) || (plain2 && !strcmp(v, plain2))) return NB_OK;
    const char *file = NULL;
    if (!strncmp(v, "llama2c:", 8))
        file = v + 8;
    else if (pre2 && !strncmp(v, pre2, strlen(pre2)))
        file = v + strlen(pre2);
    nb_recipe_loc at = key_loc(c, r, key_path);
    if (!file) {
        if (plain2)
            return nb_recipe_fail_at(&at, "%s: expected %s, %s or llama2c:PATH, got '%s'", key_path, plain1, plain2, v);
        return nb_recipe_fail_at(&at, "%s: expected %s, llama2c:PATH or %sPATH, got '%s'", key_path, plain1, pre2, v);
    }
    if (!*file)
        return nb_recipe_fail_at(&at, "%s: '%s' names no file (expected %.*sPATH)", key_path, v, (int)(file - v), v);
    return check_file(c, r, key_path, file);
}

static nb_status validate_rule(const ctx *c, const nb_recipe *r, int list, int i) {
    const nb_qrule *q = list ? &r->quant.acts[i] : &r->quant.weights[i];
    const char *lp = list_path[list], *g = q->granularity, *e = q->estimator;
    int fixed_grid = !strcmp(g, "q8_0") || !strcmp(g, "q4_0") || !strcmp(g, "f16"); /* scales not learned */
    int dynamic = list && (!strcmp(g, "token") || !strcmp(g, "group") || !strcmp(g, "q8_0"));
    int symmetric = q->symmetric || q->ternary;
    nb_recipe_loc at;
    if (!q->match[0]) {
        at = rule_loc(c, r, list, i, "match");
        return nb_recipe_fail_at(&at, "%s[%d].match: empty pattern (use \"*\" for every parameter)", lp, i);
    }
    if (!strcmp(g, "group") && q->group_size != 32 && q->group_size != 64 && q->group_size != 128) {
        at = rule_loc(c, r, list, i, "group_size");
        return nb_recipe_fail_at(&at, "%s[%d].group_size: expected 32, 64 or 128 with granularity group, got %d", lp, i,
                                 q->group_size);
    }
    if (q->restrict_range && !symmetric) {
        at = rule_loc(c, r, list, i, "restrict_range");
        return nb_recipe_fail_at(&at, "%s[%d].restrict_range: only for symmetric grids (symmetric: true)", lp, i);
    }
    at = rule_loc(c, r, list, i, "estimator");
    if (!strcmp(e, "pact") && (!list || dynamic || !symmetric))
        return nb_recipe_fail_at(&at,
                                 "%s[%d].estimator: pact learns a clip for static symmetric activations "
                                 "(quant.activations with granularity: tensor, symmetric: true)",
                                 lp, i);
    if (!strcmp(e, "lsq+") && symmetric)
        return nb_recipe_fail_at(&at, "%s[%d].estimator: lsq+ learns an offset and needs symmetric: false", lp, i);
    if (fixed_grid && strcmp(e, "ste") && strcmp(e, "clipped_ste"))
        return nb_recipe_fail_at(&at, "%s[%d].estimator: granularity %s fixes its scales; use ste or clipped_ste", lp,
                                 i, g);
    if (dynamic && strcmp(e, "ste"))
        return nb_recipe_fail_at(&at, "%s[%d].estimator: dynamic activations (granularity %s) take ste", lp, i, g);
    if (r->quant.anneal_from_bits && q->bits && !q->ternary && !fixed_grid && r->quant.anneal_from_bits < q->bits) {
        at = key_loc(c, r, "quant.anneal_from_bits");
        return nb_recipe_fail_at(
            &at, "quant.anneal_from_bits: %d is below %s[%d].bits (%d); annealing goes from more bits to fewer",
            r->quant.anneal_from_bits, lp, i, q->bits);
    }
    return NB_OK;
}

/* distill.data_free: the teacher writes the training text, so data.train goes and the teacher must
   be a trained model (not the random starting point) */
static nb_status validate_datafree(const nb_recipe *r, const ctx *c) {
    const nb_recipe_distill *d = &r->distill;
    nb_recipe_loc at;
    if (!d->data_free) return NB_OK;
    if (!d->enabled) {
        at = key_loc(c, r, "distill.data_free");
        return nb_recipe_fail_at(&at, "distill.data_free: needs distill.enabled: true (the generated text is learned "
                                      "through the distillation loss)");
    }
    if (r->data.train[0]) {
        at = key_loc(c, r, "data.train");
        return nb_recipe_fail_at(&at, "data.train: not read with distill.data_free: true (the teacher writes the "
                                      "training text); remove it (data.train=) or set distill.data_free: false");
    }
    if (!d->teacher[0] && !strcmp(r->model.init, "random")) {
        at = key_loc(c, r, "distill.data_free");
        return nb_recipe_fail_at(&at, "distill.data_free: the teacher would be the randomly initialised starting model "
                                      "(model.init: random); set model.init to a trained model or distill.teacher");
    }
    if (!strcmp(r->data.tokenizer, "char") && strncmp(r->model.init, "checkpoint:", 11)) {
        at = key_loc(c, r, "data.tokenizer");
        return nb_recipe_fail_at(&at, "data.tokenizer: char builds its vocabulary from data.train, which "
                                      "distill.data_free does not read; use byte, llama2c:PATH or a checkpoint's "
                                      "tokenizer (model.init: checkpoint:PATH)");
    }
    if (d->gen_temperature == 0.0f && !strcmp(d->gen_start, "bos")) {
        at = key_loc(c, r, "distill.gen_temperature");
        return nb_recipe_fail_at(&at, "distill.gen_temperature: 0 (greedy) with distill.gen_start: bos makes every "
                                      "sequence the same; use a temperature > 0 or gen_start: random");
    }
    int len = d->gen_length ? d->gen_length : r->model.seq_len + 1;
    int n_start = 1 + !strcmp(d->gen_start, "random");
    if (d->gen_greedy_tokens > 0 && d->gen_greedy_tokens >= len - n_start) {
        at = key_loc(c, r, "distill.gen_greedy_tokens");
        return nb_recipe_fail_at(&at, "distill.gen_greedy_tokens: %d greedy tokens leave none to sample in sequences "
                                      "of %d tokens (distill.gen_length, %d start token%s)",
                                 d->gen_greedy_tokens, len, n_start, n_start > 1 ? "s" : "");
    }
    return NB_OK;
}

static nb_status validate(const nb_recipe *r, const ctx *c) {
    const nb_recipe_model *m = &r->model;
    nb_recipe_loc at;
    if (m->dim % m->n_heads) {
        at = key_loc(c, r, "model.n_heads");
        return nb_recipe_fail_at(&at, "model.n_heads: %d does not divide model.dim (%d)", m->n_heads, m->dim);
    }
    if ((m->dim / m->n_heads) % 2) {
        at = key_loc(c, r, "model.dim");
        return nb_recipe_fail_at(
            &at, "model.dim: the head dimension dim / n_heads = %d / %d = %d must be even (RoPE rotates pairs)", m->dim,
            m->n_heads, m->dim / m->n_heads);
    }
    int kv = m->n_kv_heads ? m->n_kv_heads : m->n_heads;
    if (m->n_heads % kv) {
        at = key_loc(c, r, "model.n_kv_heads");
        return nb_recipe_fail_at(&at, "model.n_kv_heads: %d does not divide model.n_heads (%d)", kv, m->n_heads);
    }
    if (r->optim.min_lr > r->optim.lr) {
        at = key_loc(c, r, "optim.min_lr");
        return nb_recipe_fail_at(&at, "optim.min_lr: %g is above optim.lr (%g)", r->optim.min_lr, r->optim.lr);
    }
    if (!r->out_dir[0]) {
        at = key_loc(c, r, "out_dir");
        return nb_recipe_fail_at(&at, "out_dir: must not be empty");
    }
    const nb_recipe_quant *qt = &r->quant;
    if (qt->lambda_end < qt->lambda_start) {
        at = key_loc(c, r, "quant.lambda_end");
        return nb_recipe_fail_at(&at, "quant.lambda_end: %d is before quant.lambda_start (%d)", qt->lambda_end,
                                 qt->lambda_start);
    }
    if (qt->anneal_from_bits && qt->anneal_end <= qt->anneal_start) {
        at = key_loc(c, r, "quant.anneal_end");
        return nb_recipe_fail_at(&at, "quant.anneal_end: %d must come after quant.anneal_start (%d) when annealing",
                                 qt->anneal_end, qt->anneal_start);
    }
    if (qt->preset[0] && qt->n_weight_rules) {
        at = key_loc(c, r, "quant.preset");
        return nb_recipe_fail_at(
            &at, "quant.preset: %s sets the weight rules itself; remove quant.weights or the preset", qt->preset);
    }
    if (qt->n_weight_rules < 0 || qt->n_weight_rules > NB_MAX_QRULES || qt->n_act_rules < 0 ||
        qt->n_act_rules > NB_MAX_QRULES)
        return nb_fail(NB_EINVAL, "%s: quant: rule counts %d/%d out of range", r->path, qt->n_weight_rules,
                       qt->n_act_rules);
    for (int list = 0; list < 2; list++)
        for (int i = 0; i < (list ? qt->n_act_rules : qt->n_weight_rules); i++) NB_TRY(validate_rule(c, r, list, i));
    if (qt->enabled && !qt->n_weight_rules && !qt->n_act_rules && !qt->preset[0]) {
        at = key_loc(c, r, "quant.enabled");
        return nb_recipe_fail_at(
            &at, "quant.enabled: true, but quant.weights, quant.activations and quant.preset are all empty "
                 "(add a rule such as quant.weights: [{match: \"*\", bits: 4}])");
    }
    NB_TRY(validate_datafree(r, c));
    /* files last: everything else is checked without touching the disk */
    if (r->data.train[0]) NB_TRY(check_file(c, r, "data.train", r->data.train));
    if (r->data.val[0]) NB_TRY(check_file(c, r, "data.val", r->data.val));
    NB_TRY(check_source(c, r, "data.tokenizer", r->data.tokenizer, "byte", "char", NULL));
    NB_TRY(check_source(c, r, "model.init", m->init, "random", NULL, "checkpoint:"));
    if (r->distill.teacher[0]) NB_TRY(check_file(c, r, "distill.teacher", r->distill.teacher));
    return NB_OK;
}

nb_status nb_recipe_validate(const nb_recipe *r) { return validate(r, NULL); }

/* ---------------------------------------------------------------------------------------------- */
/* Entry points                                                                                   */

static void ctx_init(ctx *c, nb_recipe *r, const char *file, char **ovs) {
    memset(c, 0, sizeof *c);
    c->r = r;
    c->file = file;
    c->ovs = ovs;
    c->cur_ov = -1;
}

static nb_status parse_text(const char *name, const char *text, size_t len, int n_ovs, char **ovs, nb_recipe *r) {
    NB_ASSERT(r && text && (n_ovs == 0 || ovs));
    nb_recipe_defaults(r);
    if (!name) name = "recipe";
    if (strlen(name) < sizeof r->path)
        strcpy(r->path, name);
    else
        snprintf(r->path, sizeof r->path, "...%s", name + strlen(name) - (sizeof r->path - 4));
    ctx *c = nb_malloc(sizeof *c);
    if (!c) return nb_fail(NB_ENOMEM, "%s: out of memory", r->path);
    ctx_init(c, r, r->path, ovs);
    yaml_document_t doc;
    nb_status s = load_doc(c, text, len, &doc);
    if (s) goto done;
    c->doc = &doc;
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (!root) {
        s = nb_fail(NB_EINVAL, "%s: empty recipe (expected a mapping of keys and sections such as model:, optim:)",
                    r->path);
    } else if (root->type != YAML_MAPPING_NODE) {
        nb_recipe_loc at = node_loc(c, root);
        s = nb_recipe_fail_at(&at,
                              "expected a mapping of keys and sections (model:, optim:, ...) at the top level, got %s",
                              node_kind(root));
    } else {
        s = walk_map(c, root, "");
    }
    c->doc = NULL;
    yaml_document_delete(&doc);
    for (int i = 0; i < n_ovs && s == NB_OK; i++) s = apply_override(c, i);
    c->cur_ov = -1;
    if (s == NB_OK) s = validate(r, c);
    if (s == NB_OK) {
        r->text = nb_recipe_yaml_text(r, n_ovs, ovs);
        if (!r->text) s = nb_fail(NB_ENOMEM, "%s: out of memory", r->path);
    }
done:
    nb_free(c);
    return s;
}

nb_status nb_recipe_parse(const char *name, const char *yaml, int n_overrides, char **overrides, nb_recipe *r) {
    return parse_text(name, yaml, strlen(yaml), n_overrides, overrides, r);
}

#define MAX_RECIPE_BYTES (1 << 20)

nb_status nb_recipe_load(const char *path, int n_overrides, char **overrides, nb_recipe *r) {
    nb_recipe_defaults(r);
    struct stat st;
    if (stat(path, &st) != 0) return nb_fail(NB_EINVAL, "cannot open recipe %s: %s", path, strerror(errno));
    if (S_ISDIR(st.st_mode)) return nb_fail(NB_EIO, "recipe %s is a directory, expected a YAML file", path);
    if (st.st_size > MAX_RECIPE_BYTES)
        return nb_fail(NB_EINVAL, "%s: recipe is %lld bytes, more than the %d a recipe may have", path,
                       (long long)st.st_size, MAX_RECIPE_BYTES);
    FILE *f = fopen(path, "rb");
    if (!f) return nb_fail(NB_EIO, "cannot open recipe %s: %s", path, strerror(errno));
    char *text = nb_malloc(MAX_RECIPE_BYTES + 1);
    if (!text) {
        fclose(f);
        return nb_fail(NB_ENOMEM, "%s: out of memory", path);
    }
    size_t n = fread(text, 1, MAX_RECIPE_BYTES + 1, f);
    int err = ferror(f);
    fclose(f);
    nb_status s;
    if (err)
        s = nb_fail(NB_EIO, "read %s: %s", path, strerror(errno));
    else if (n > MAX_RECIPE_BYTES)
        s = nb_fail(NB_EINVAL, "%s: recipe is more than %d bytes", path, MAX_RECIPE_BYTES);
    else if (memchr(text, 0, n))
        s = nb_fail(NB_EINVAL, "%s: not a YAML text file (contains NUL bytes)", path);
    else {
        text[n] = 0;
        s = parse_text(path, text, n, n_overrides, overrides, r);
    }
    nb_free(text);
    return s;
}

nb_status nb_recipe_set(nb_recipe *r, const char *assignment) {
    NB_ASSERT(r && assignment);
    ctx *c = nb_malloc(sizeof *c);
    if (!c) return nb_fail(NB_ENOMEM, "out of memory");
    char *ovs[1] = {(char *)assignment};
    ctx_init(c, r, r->path, ovs);
    nb_status s = apply_override(c, 0);
    nb_free(c);
    if (s) return s;
    char *text = nb_recipe_yaml_text(r, 0, NULL);
    if (!text) return nb_fail(NB_ENOMEM, "out of memory");
    nb_free(r->text);
    r->text = text;
    return NB_OK;
}

void nb_recipe_free(nb_recipe *r) {
    if (!r) return;
    nb_free(r->text);
    r->text = NULL;
}
