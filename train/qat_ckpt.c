/* qat_ckpt.c: the quantization policy stored in a checkpoint (recipe text + quantizer sets). */
#include "qat_ckpt.h"

#include <stdio.h>
#include <string.h>

nb_status nb_qat_ckpt_add(nb_qat *q, nb_ckpt_contents *c) {
    if (!q) return NB_OK;
    nb_paramset *sets[2] = {nb_qat_params(q), nb_qat_state(q)};
    const char *names[2] = {NB_QAT_SET_PARAMS, NB_QAT_SET_STATE};
    for (int i = 0; i < 2; i++) {
        if (!sets[i]) continue;
        if (c->n_sets >= NB_CKPT_MAX_SETS)
            return nb_fail(NB_EINVAL, "checkpoint: no room for the quantizer set %s (%d sets already)", names[i],
                           c->n_sets);
        c->sets[c->n_sets++] = (nb_ckpt_set){names[i], sets[i]};
    }
    return NB_OK;
}

nb_status nb_qat_ckpt_restore(nb_qat *q, nb_ckpt *c) {
    if (!q) return NB_OK;
    nb_paramset *p = nb_qat_params(q), *s = nb_qat_state(q);
    if (p && nb_ckpt_has_set(c, NB_QAT_SET_PARAMS)) NB_TRY(nb_ckpt_read_set(c, NB_QAT_SET_PARAMS, p));
    if (s && nb_ckpt_has_set(c, NB_QAT_SET_STATE)) NB_TRY(nb_ckpt_read_set(c, NB_QAT_SET_STATE, s));
    nb_qat_invalidate(q);
    return NB_OK;
}

nb_status nb_qat_ckpt_recipe(nb_ckpt *c, nb_recipe *r, int *has) {
    *has = 0;
    nb_recipe_defaults(r);
    char *text = NULL;
    NB_TRY(nb_ckpt_read_attr(c, "recipe", &text));
    if (!text) return NB_OK;
    /* the policy is all we want: the files a training run read may be gone or elsewhere */
    char *ovs[] = {"data.train=", "data.val=", "data.tokenizer=byte", "data.cache_dir=", "model.init=random",
                   "distill.teacher=", "distill.enabled=false", "distill.data_free=false"};
    char name[1100];
    snprintf(name, sizeof name, "%s (stored recipe)", nb_ckpt_path(c));
    nb_status s = nb_recipe_parse(name, text, (int)(sizeof ovs / sizeof ovs[0]), ovs, r);
    nb_free(text);
    if (s) return nb_fail_prefix(NB_EFORMAT, "%s", nb_ckpt_path(c));
    *has = 1;
    return NB_OK;
}

nb_status nb_qat_ckpt_load(nb_ckpt *c, nb_model *m, nb_qat **out) {
    *out = NULL;
    nb_recipe r;
    int has = 0;
    NB_TRY(nb_qat_ckpt_recipe(c, &r, &has));
    nb_qat *q = NULL;
    nb_status s = has ? nb_qat_build(&r.quant, &m->params, r.optim.weight_decay, &q) : NB_OK;
    if (s) s = nb_fail_prefix(NB_EFORMAT, "%s: the stored quant: policy", nb_ckpt_path(c));
    nb_recipe_free(&r);
    if (s || !q) return s;
    if ((s = nb_qat_ckpt_restore(q, c))) {
        nb_fail_prefix(s, "%s", nb_ckpt_path(c));
        nb_qat_free(q);
        return s;
    }
    nb_qat_begin_step(q, NB_QAT_STEP_FINAL, NULL);
    m->qat = q;
    *out = q;
    return NB_OK;
}

nb_status nb_qat_load_file(const char *path, nb_model *m, nb_qat **out) {
    *out = NULL;
    if (!nb_file_is_hdf5(path)) return NB_OK;
    nb_ckpt *c = NULL;
    NB_TRY(nb_ckpt_open(path, &c));
    nb_status s = nb_qat_ckpt_load(c, m, out);
    nb_ckpt_close(c);
    return s;
}
