/* embed.c: embedding lookup, forward (row gather) and backward (row scatter-add). */
#include "ops.h"

#include <string.h>

#include "../autograd/gradcheck.h"
#include "oputil.h"

/* y[r] = table[ids[r]] */
static void embed_forward(nb_node *n) {
    const nb_tensor *tab = n->in[0], *ids = n->in[1];
    int64_t C = tab->shape[1], N = nb_numel(ids);
    const float *T = tab->data;
    const int32_t *id = ids->data;
    float *Y = n->out->data;
#pragma omp parallel for schedule(static) if (N * C > 4 * NB_OMP_MIN)
    for (int64_t r = 0; r < N; r++) memcpy(Y + r * C, T + (int64_t)id[r] * C, (size_t)C * sizeof(float));
}

/* dtable[ids[r]] += dy[r]. Rows that share an id add into the same table row, so threads split
   the columns, not the rows: each column's additions happen in row order whatever the thread
   count, so the result is bitwise deterministic and free of races. */
static void embed_backward(nb_node *n) {
    nb_tensor *tab = n->in[0];
    const nb_tensor *ids = n->in[1];
    int64_t C = tab->shape[1], N = nb_numel(ids);
    const int32_t *id = ids->data;
    const float *dY = n->out->grad;
    float *dT = tab->grad;
#pragma omp parallel if (N * C > 4 * NB_OMP_MIN)
    {
        int nt = omp_threads_in_region(), me = omp_tid();
        int64_t per = (C + nt - 1) / nt, c0 = me * per, c1 = c0 + per < C ? c0 + per : C;
        for (int64_t r = 0; r < N && c0 < c1; r++) {
            float *d = dT + (int64_t)id[r] * C;
            const float *g = dY + r * C;
            for (int64_t c = c0; c < c1; c++) d[c] += g[c];
        }
    }
}

const nb_op nb_op_embedding = {"embedding", embed_forward, embed_backward};

nb_tensor *nb_embedding(nb_tape *t, nb_tensor *table, nb_tensor *ids) {
    if (bad_f32(t, "embedding", "table", table, 0) || bad_i32(t, "embedding", "ids", ids)) return NULL;
    char b1[64], b2[64];
    if (table->ndim != 2) return nb_tape_fail(t, NB_ESHAPE, "embedding: table %s must be (V, C)", SHAPE(table, b1));
    if (ids->ndim > NB_MAX_DIMS - 1)
        return nb_tape_fail(t, NB_ESHAPE, "embedding: ids %s has more than %d dims", SHAPE(ids, b2), NB_MAX_DIMS - 1);
    int64_t V = table->shape[0], N = nb_numel(ids);
    const int32_t *id = ids->data;
    for (int64_t r = 0; r < N; r++)
        if (id[r] < 0 || id[r] >= V)
            return nb_tape_fail(t, NB_ERANGE, "embedding: id %d at position %lld is outside [0, %lld) (table %s%s%s)",
                                id[r], (long long)r, (long long)V, table->name ? table->name : "", table->name ? " " : "",
                                SHAPE(table, b1));
    int64_t shape[NB_MAX_DIMS];
    for (int k = 0; k < ids->ndim; k++) shape[k] = ids->shape[k];
    shape[ids->ndim] = table->shape[1];
    nb_tensor *y = nb_tape_tensor(t, ids->ndim + 1, shape);
    nb_node *n = nb_tape_push(t, &nb_op_embedding, y, table, ids, NULL);
    if (!n) return NULL;
    embed_forward(n);
    return y;
}

/* ---- gradient-check cases ---- */
static nb_tensor *c_embed(nb_tape *t, nb_tensor **in) { return nb_embedding(t, in[0], in[1]); }

/* ids in [0, V) with a repeated id, so the scatter-add of shared rows is checked */
static void init_ids(nb_tensor **in, nb_rng *r) {
    int64_t V = in[0]->shape[0], N = nb_numel(in[1]);
    int32_t *id = in[1]->data;
    for (int64_t k = 0; k < N; k++) id[k] = (int32_t)nb_rng_below(r, (uint64_t)V);
    if (N > 2) id[N - 1] = id[0];
    if (N > 3) id[1] = (int32_t)(V - 1);
}

const nb_opcase nb_opcases_embed[] = {
    {.name = "embedding", .n_in = 2, .ndim = {2, 2}, .shape = {{11, 6}, {2, 5}}, .dtype = {NB_F32, NB_I32},
     .apply = c_embed, .init = init_ids},
    {.name = "embedding_1d_odd", .n_in = 2, .ndim = {2, 1}, .shape = {{3, 7}, {9}}, .dtype = {NB_F32, NB_I32},
     .apply = c_embed, .init = init_ids},
    {.name = "embedding_single", .n_in = 2, .ndim = {2, 1}, .shape = {{5, 1}, {1}}, .dtype = {NB_F32, NB_I32},
     .apply = c_embed, .init = init_ids},
    {0},
};
