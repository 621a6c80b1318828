/* tape.c: recording and the reverse walk. */
#include "tape.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void nb_tape_init(nb_tape *t, nb_arena *arena) {
    memset(t, 0, sizeof *t);
    t->arena = arena;
    t->recording = 1;
    t->rng = nb_rng_make(0, 7);
}

void nb_tape_free(nb_tape *t) {
    nb_free(t->nodes);
    t->nodes = NULL;
    t->n_nodes = t->cap = 0;
}

void nb_tape_reset(nb_tape *t) {
    t->n_nodes = 0;
    t->status = NB_OK;
    t->msg[0] = 0;
}

int nb_tape_grad(nb_tape *t, int on) {
    int old = t->recording;
    t->recording = on;
    return old;
}

void *nb_tape_fail(nb_tape *t, nb_status code, const char *fmt, ...) {
    if (t->status == NB_OK) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(t->msg, sizeof t->msg, fmt, ap);
        va_end(ap);
        t->status = code;
    }
    return NULL;
}

nb_status nb_tape_status(nb_tape *t) {
    if (t->status != NB_OK) nb_fail(t->status, "%s", t->msg);
    return t->status;
}

int nb_tape_bad(nb_tape *t, const nb_tensor *a, const nb_tensor *b, const nb_tensor *c) {
    (void)b;
    (void)c;
    if (t->status != NB_OK) return 1;
    if (!a) {
        nb_tape_fail(t, NB_EINVAL, "op input is NULL");
        return 1;
    }
    return 0;
}

nb_tensor *nb_tape_tensor(nb_tape *t, int ndim, const int64_t *shape) {
    nb_tensor *x = nb_tensor_new(t->arena, NB_F32, ndim, shape);
    if (!x) nb_tape_fail(t, NB_ENOMEM, "%s", nb_errmsg());
    return x;
}

void *nb_tape_alloc(nb_tape *t, size_t bytes) {
    void *p = nb_arena_alloc(t->arena, bytes);
    if (!p) nb_tape_fail(t, NB_ENOMEM, "%s", nb_errmsg());
    return p;
}

nb_node *nb_tape_push(nb_tape *t, const nb_op *op, nb_tensor *out, nb_tensor *a, nb_tensor *b, nb_tensor *c) {
    if (t->status != NB_OK || !out) return NULL;
    nb_node *n = nb_tape_alloc(t, sizeof *n);
    if (!n) return NULL;
    memset(n, 0, sizeof *n);
    n->op = op;
    n->tape = t;
    n->out = out;
    nb_tensor *ins[3] = {a, b, c};
    int need = 0;
    for (int k = 0; k < 3; k++) {
        if (!ins[k]) continue;
        n->in[n->n_in++] = ins[k];
        need |= ins[k]->requires_grad;
    }
    out->requires_grad = t->recording && need;
    if (t->trace) t->trace(t->trace_ctx, n, 0);
    if (out->requires_grad) {
        if (t->n_nodes == t->cap) {
            int cap = t->cap ? t->cap * 2 : 256;
            nb_node **nn = nb_realloc(t->nodes, (size_t)cap * sizeof *nn);
            if (!nn) return nb_tape_fail(t, NB_ENOMEM, "tape: cannot grow to %d nodes", cap);
            t->nodes = nn;
            t->cap = cap;
        }
        t->nodes[t->n_nodes++] = n;
    }
    return n;
}

float *nb_grad(nb_tape *t, nb_tensor *x) {
    if (!x->grad) {
        NB_ASSERT(x->dtype == NB_F32);
        x->grad = nb_arena_calloc(t->arena, (size_t)nb_numel(x) * sizeof(float));
        if (!x->grad) nb_tape_fail(t, NB_ENOMEM, "%s", nb_errmsg());
    }
    return x->grad;
}

nb_status nb_backward(nb_tape *t, nb_tensor *loss, const float *seed) {
    if (t->status != NB_OK) return nb_tape_status(t);
    if (!loss) return nb_fail(NB_EINVAL, "backward: loss is NULL");
    if (!loss->requires_grad) return nb_fail(NB_EINVAL, "backward: loss does not depend on any parameter");
    float *g = nb_grad(t, loss);
    if (!g) return nb_tape_status(t);
    int64_t n = nb_numel(loss);
    for (int64_t i = 0; i < n; i++) g[i] += seed ? seed[i] : 1.0f;
    for (int k = t->n_nodes - 1; k >= 0 && t->status == NB_OK; k--) {
        nb_node *node = t->nodes[k];
        if (!node->out->grad) continue; /* nothing flowed back into this node */
        for (int j = 0; j < node->n_in; j++)
            if (node->in[j]->requires_grad && !nb_grad(t, node->in[j])) return nb_tape_status(t);
        if (t->trace) t->trace(t->trace_ctx, node, 1);
        node->op->backward(node);
    }
    return nb_tape_status(t);
}
