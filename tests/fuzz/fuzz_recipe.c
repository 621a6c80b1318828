/* fuzz_recipe.c: libFuzzer target for YAML recipes and key=value overrides.
   Input: YAML text, then up to 3 overrides, each after a NUL byte ("yaml\0model.dim=64\0quant.enabled=1").
   Properties: no crash, no leak, a message on every failure; whatever parses prints YAML that parses
   back to the same values; nb_recipe_set never breaks a recipe it leaves valid. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../train/recipe.h"

static int same_values(const nb_recipe *a, const nb_recipe *b) {
    static nb_recipe x, y;
    x = *a, y = *b;
    memset(x.path, 0, sizeof x.path), memset(y.path, 0, sizeof y.path);
    x.text = y.text = NULL;
    return memcmp(&x, &y, sizeof x) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static nb_recipe r, back;
    char *buf = malloc(size + 1);
    if (!buf) return 0;
    memcpy(buf, data, size);
    buf[size] = 0;
    /* split at NULs: yaml, then overrides */
    char *ovs[3];
    int n = 0;
    size_t yaml_len = strlen(buf);
    for (size_t i = yaml_len; i < size && n < 3; i++)
        if (buf[i] == 0 && i + 1 <= size) ovs[n++] = buf + i + 1;
    nb_status s = nb_recipe_parse("fuzz.yaml", buf, n, ovs, &r);
    if (s == NB_OK) {
        if (!r.text) abort();
        if (nb_recipe_parse("again.yaml", r.text, 0, NULL, &back) != NB_OK) abort();
        if (!same_values(&r, &back)) abort();
        nb_recipe_free(&back);
        /* a few fixed overrides on top */
        static char *extra[] = {"quant.enabled=false", "quant.weights.0.bits=4", "model.dim=64", "quant.activations=[]",
                                "optim.lr=1e-3"};
        for (int i = 0; i < 5; i++)
            if (nb_recipe_set(&r, extra[i]) == NB_OK && !r.text) abort();
        (void)nb_recipe_validate(&r);
        char *y = nb_recipe_to_yaml(&r);
        if (!y || (nb_recipe_parse("set.yaml", y, 0, NULL, &back) != NB_OK && nb_recipe_validate(&r) == NB_OK)) abort();
        nb_recipe_free(&back);
        nb_free(y);
    } else if (!nb_errmsg()[0]) {
        abort();
    }
    nb_recipe_free(&r);
    free(buf);
    return 0;
}
