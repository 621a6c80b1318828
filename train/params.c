/* params.c: flat parameter blocks. */
#include "params.h"

#include <stdio.h>
#include <string.h>

nb_status nb_paramset_build(nb_paramset *s, int n, const nb_param_spec *specs) {
    memset(s, 0, sizeof *s);
    if (n < 0) return nb_fail(NB_EINVAL, "paramset: %d parameters", n);
    s->p = nb_calloc((size_t)(n ? n : 1), sizeof *s->p);
    if (!s->p) return nb_fail(NB_ENOMEM, "paramset: table of %d", n);
    int64_t total = 0;
    for (int i = 0; i < n; i++) {
        nb_param *p = &s->p[i];
        NB_TRY(nb_tensor_setup(&p->t, NB_F32, specs[i].ndim, specs[i].shape));
        snprintf(p->name, sizeof p->name, "%s", specs[i].name);
        p->kind = specs[i].kind;
        p->lr_mult = 1.0f;
        p->wd_mult = (p->kind == NB_PARAM_LINEAR || p->kind == NB_PARAM_CLASSIFIER) ? 1.0f : 0.0f;
        p->offset = total;
        total += (nb_numel(&p->t) + 15) & ~(int64_t)15; /* 64-byte aligned starts */
    }
    s->n = n;
    s->numel = total;
    s->data = nb_calloc((size_t)(total ? total : 1), sizeof(float));
    s->grad = nb_calloc((size_t)(total ? total : 1), sizeof(float));
    if (!s->data || !s->grad) {
        nb_paramset_free(s);
        return nb_fail(NB_ENOMEM, "paramset: %lld floats", (long long)total);
    }
    for (int i = 0; i < n; i++) {
        nb_param *p = &s->p[i];
        p->t.data = s->data + p->offset;
        p->t.grad = s->grad + p->offset;
        p->t.requires_grad = 1;
        p->t.name = p->name;
    }
    return NB_OK;
}

void nb_paramset_free(nb_paramset *s) {
    nb_free(s->p);
    nb_free(s->data);
    nb_free(s->grad);
    memset(s, 0, sizeof *s);
}

int nb_paramset_find(const nb_paramset *s, const char *name) {
    for (int i = 0; i < s->n; i++)
        if (!strcmp(s->p[i].name, name)) return i;
    return -1;
}

void nb_paramset_zero_grad(nb_paramset *s) { memset(s->grad, 0, (size_t)s->numel * sizeof(float)); }
