/* linear_exact.c: evaluation linears through the integer runtime's matmul (see linear_exact.h). */
#include "linear_exact.h"

#include <string.h>

#include "export.h"
#include "model.h"
#include "runtime_io.h"

struct nb_exact {
    nb_qmodel *qm;        /* the runtime model of the current weights (nb_export_build) */
    nb_qtensor **by_param;/* (params.n) runtime tensor of each linear parameter, NULL for others */
    int n;
    nb_qstate st;         /* only its activation scratch is used */
};

typedef struct map_ctx {
    nb_model *m;
    nb_exact *e;
} map_ctx;

static nb_status map_one(void *ctx, const char *name, nb_qtensor *t, int layer) {
    (void)layer;
    map_ctx *c = ctx;
    int idx = nb_paramset_find(&c->m->params, name);
    if (idx < 0) return nb_fail(NB_EINVAL, "exact linear: the model has no parameter %s", name);
    c->e->by_param[idx] = t;
    return NB_OK;
}

nb_status nb_exact_new(nb_model *m, nb_qat *q, nb_exact **out) {
    *out = NULL;
    nb_exact *e = nb_calloc(1, sizeof *e);
    if (!e) return nb_fail(NB_ENOMEM, "exact linear: out of memory");
    e->n = m->params.n;
    e->by_param = nb_calloc((size_t)e->n, sizeof *e->by_param);
    nb_status st = e->by_param ? nb_export_build(m, q, NULL, &e->qm) : nb_fail(NB_ENOMEM, "exact linear: out of memory");
    if (!st) {
        map_ctx c = {m, e};
        st = nb_rt_visit(e->qm, map_one, &c);
    }
    if (st) {
        nb_exact_free(e);
        return st;
    }
    *out = e;
    return NB_OK;
}

void nb_exact_free(nb_exact *e) {
    if (!e) return;
    nb_qmodel_free(e->qm);
    nb_qstate_free(&e->st);
    nb_free(e->by_param);
    nb_free(e);
}

static void exact_forward(nb_node *n) {
    nb_exact *e = n->p[0];
    const nb_qtensor *w = n->p[1];
    const nb_tensor *x = n->in[0];
    nb_status st = nb_qmatmul(w, x->data, nb_rows(x), n->out->data, &e->st);
    if (st) nb_tape_fail(n->tape, st, "exact linear: %s", nb_errmsg());
}

static void exact_backward(nb_node *n) {
    nb_tape_fail(n->tape, NB_EINVAL, "exact linear: no gradient (evaluation only)");
}

const nb_op nb_op_linear_exact = {"linear_exact", exact_forward, exact_backward};

nb_tensor *nb_exact_linear(nb_tape *t, nb_exact *e, int param, nb_tensor *x) {
    if (nb_tape_bad(t, x, NULL, NULL)) return NULL;
    char sh[64];
    if (t->recording && x->requires_grad)
        return nb_tape_fail(t, NB_EINVAL, "exact linear: evaluation only (the tape is recording gradients)");
    if (param < 0 || param >= e->n || !e->by_param[param])
        return nb_tape_fail(t, NB_EINVAL, "exact linear: parameter %d is not a linear weight of the model", param);
    const nb_qtensor *w = e->by_param[param];
    if (x->dtype != NB_F32 || !nb_is_contiguous(x) || nb_cols(x) != w->cols)
        return nb_tape_fail(t, NB_ESHAPE, "exact linear: input %s must be contiguous f32 with %lld columns",
                            nb_shape_str(x, sh, sizeof sh), (long long)w->cols);
    int64_t shape[NB_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    shape[x->ndim - 1] = w->rows;
    nb_tensor *y = nb_tape_tensor(t, x->ndim, shape);
    nb_node *n = nb_tape_push(t, &nb_op_linear_exact, y, x, NULL, NULL);
    if (!n) return NULL;
    n->p[0] = e;
    n->p[1] = (void *)w;
    exact_forward(n);
    return t->status == NB_OK ? y : NULL;
}
