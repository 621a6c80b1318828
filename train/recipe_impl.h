/* recipe_impl.h: the recipe key table and its scalar parser, shared by recipe.c (YAML, overrides,
   validation), recipe_keys.c (the table, defaults, scalars) and recipe_print.c (YAML out, reference).
   For these sibling files only. */
#ifndef NB_RECIPE_IMPL_H
#define NB_RECIPE_IMPL_H

#include <limits.h>
#include <math.h>
#include <stddef.h>

#include "recipe.h"

typedef enum { NB_K_INT, NB_K_FLOAT, NB_K_BOOL, NB_K_STR, NB_K_ENUM, NB_K_U64, NB_K_RULES } nb_recipe_ktype;

enum {
    NB_K_ZERO_OK = 1,  /* int: 0 is allowed besides min..max (0 = off) */
    NB_K_OPEN_MIN = 2, /* float: min itself is excluded */
    NB_K_OPEN_MAX = 4, /* float: max itself is excluded */
};

#define NB_K_NOMAX_I ((double)INT_MAX)
#define NB_K_NOMAX_F HUGE_VAL

typedef struct nb_recipe_key {
    const char *path; /* "model.dim"; for rule keys only the field ("bits") */
    nb_recipe_ktype type;
    size_t off, size; /* field in nb_recipe (rule keys: in nb_qrule) */
    const char *def;  /* default, as YAML text */
    double min, max;  /* numbers: range (inclusive unless NB_K_OPEN_*); NB_K_NOMAX_* = unbounded */
    int flags;
    const char *values; /* enum: allowed values, '|'-separated ("" may be one of them) */
    const char *help;
    const char *def_act;    /* rule keys: default for activation rules when it differs */
    const char *values_act; /* rule keys: allowed values for activation rules when they differ */
} nb_recipe_key;

extern const nb_recipe_key nb_recipe_keys[];
extern const int nb_recipe_n_keys; /* rows of nb_recipe_keys */
#define NB_RECIPE_MAX_KEYS 128     /* bound on nb_recipe_n_keys (checked in recipe_keys.c) */
extern const nb_recipe_key nb_recipe_rule_keys[];
#define NB_RECIPE_N_RULE_KEYS 13 /* rows of nb_recipe_rule_keys (checked in recipe_keys.c) */

static const char *const list_path[2] = {"quant.weights", "quant.activations"};

static inline int *rule_count(nb_recipe *r, int list) {
    return list ? &r->quant.n_act_rules : &r->quant.n_weight_rules;
}
static inline nb_qrule *rule_array(nb_recipe *r, int list) { return list ? r->quant.acts : r->quant.weights; }
static inline const char *kdef(const nb_recipe_key *k, int act) { return act && k->def_act ? k->def_act : k->def; }
static inline const char *kvalues(const nb_recipe_key *k, int act) {
    return act && k->values_act ? k->values_act : k->values;
}

/* Where a value came from: a file position, an override, or neither (a default). */
typedef struct nb_recipe_loc {
    const char *file;
    int line, col;        /* 1-based; 0 = no position */
    const char *override; /* the "key=value" text, or NULL */
} nb_recipe_loc;

/* Records "where: message" (where = file:line:col, file, or override 'k=v') and returns NB_EINVAL. */
nb_status nb_recipe_fail_at(const nb_recipe_loc *at, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Edit distance with swaps of neighbours; 1000 for names longer than 63. */
int nb_recipe_edit_distance(const char *a, size_t na, const char *b, size_t nb);
/* Is a candidate at this distance from a name of this length worth a "did you mean"? */
int nb_recipe_close_enough(int dist, size_t len);
/* Strict decimal integer (sign, digits, no junk, no overflow). */
int nb_recipe_parse_ll(const char *s, size_t len, long long *out);
/* Plain YAML null: "", "~", "null". */
int nb_recipe_is_null(const char *s, size_t len);
/* What key k accepts, in words ("an integer in 2..8 or 0"); act: as in an activation rule. */
void nb_recipe_expect(char *buf, size_t n, const nb_recipe_key *k, int act);
/* Parses text s (quoted: it was a quoted YAML scalar) into k's field of base (an nb_recipe or an
   nb_qrule); on failure the field is unchanged and the message names `path` and `at`. */
nb_status nb_recipe_set_scalar(const nb_recipe_key *k, int act, void *base, const char *path, const char *s, size_t len,
                               int quoted, const nb_recipe_loc *at);
/* nb_recipe_to_yaml with a comment line per override (r->text after parsing). */
char *nb_recipe_yaml_text(const nb_recipe *r, int n_overrides, char **overrides);
/* A rule with the defaults of its list (act = 1: activations). */
void nb_recipe_rule_defaults(nb_qrule *q, int act);

#endif
