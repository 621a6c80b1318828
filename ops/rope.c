/* rope.c: rotary position embedding in llama2.c's convention (run.c), forward and backward. */
#include "ops.h"

#include <math.h>

#include "../autograd/gradcheck.h"
#include "kernels/vec.h"
#include "oputil.h"

/* Per position t and lane j of a head (H lanes), in llama2.c's float arithmetic:
     freq = 1 / powf(theta, (2i) / H) for the pair i = j / 2,  val = (pos0 + t) * freq,
     c[j] = cos(val),  s[2i] = -sin(val),  s[2i+1] = +sin(val)
   so that the kernel's y = x c + swap_pairs(x) s is
     y[2i] = x[2i] cos - x[2i+1] sin,  y[2i+1] = x[2i] sin + x[2i+1] cos.
   The inverse rotation (backward) uses -s. */
void nb_rope_tables(float *c, float *s, float *si, int64_t T, int64_t H, float theta, int64_t pos0) {
    for (int64_t t = 0; t < T; t++)
        for (int64_t j = 0; j < H; j += 2) {
            float freq = 1.0f / powf(theta, (float)j / (float)H);
            float val = (float)(pos0 + t) * freq;
            float fcr = cosf(val), fci = sinf(val);
            int64_t o = t * H + j;
            c[o] = c[o + 1] = fcr;
            s[o] = -fci;
            s[o + 1] = fci;
            if (si) si[o] = fci, si[o + 1] = -fci;
        }
}

static void rope_forward(nb_node *n) {
    const nb_tensor *x = n->in[0];
    int64_t B = x->shape[0], T = x->shape[1], NH = x->shape[2], H = x->shape[3];
    const float *X = x->data, *c = n->p[0], *s = n->p[1];
    float *Y = n->out->data;
    const nb_vec_kernels *k = nb_vec();
#pragma omp parallel for schedule(static) if (B * T * NH * H > 2 * NB_OMP_MIN)
    for (int64_t bt = 0; bt < B * T; bt++) {
        int64_t t = bt % T;
        for (int64_t h = 0; h < NH; h++) {
            int64_t o = (bt * NH + h) * H;
            k->rope(Y + o, X + o, c + t * H, s + t * H, H, 0);
        }
    }
}

/* a rotation is orthogonal: dx += R^T dy, the rotation by -angle */
static void rope_backward(nb_node *n) {
    nb_tensor *x = n->in[0];
    int64_t B = x->shape[0], T = x->shape[1], NH = x->shape[2], H = x->shape[3];
    const float *dY = n->out->grad, *c = n->p[0], *si = n->p[2];
    float *dX = x->grad;
    const nb_vec_kernels *k = nb_vec();
#pragma omp parallel for schedule(static) if (B * T * NH * H > 2 * NB_OMP_MIN)
    for (int64_t bt = 0; bt < B * T; bt++) {
        int64_t t = bt % T;
        for (int64_t h = 0; h < NH; h++) {
            int64_t o = (bt * NH + h) * H;
            k->rope(dX + o, dY + o, c + t * H, si + t * H, H, 1);
        }
    }
}

const nb_op nb_op_rope = {"rope", rope_forward, rope_backward};

nb_tensor *nb_rope(nb_tape *t, nb_tensor *x, float theta, int64_t pos0) {
    if (bad_f32(t, "rope", "x", x, 0)) return NULL;
    char b[64];
    if (x->ndim != 4 || x->shape[3] % 2)
        return nb_tape_fail(t, NB_ESHAPE, "rope: x %s must be (B, T, n_heads, H) with H even", SHAPE(x, b));
    if (!(theta > 0.0f) || !isfinite(theta) || pos0 < 0)
        return nb_tape_fail(t, NB_EINVAL, "rope: theta must be > 0 and pos0 >= 0, got theta %g pos0 %lld", (double)theta,
                            (long long)pos0);
    int64_t T = x->shape[1], H = x->shape[3];
    /* the tables (3 T H transcendentals) of an earlier rope on this tape with the same T, H, theta
       and pos0 (q and k of every layer): they live in the arena for the whole step */
    float *c = NULL;
    for (int i = t->n_nodes - 1; i >= 0 && !c; i--) {
        const nb_node *o = t->nodes[i];
        if (o->op == &nb_op_rope && o->in[0]->shape[1] == T && o->in[0]->shape[3] == H && o->f[0] == theta &&
            o->i[0] == pos0)
            c = o->p[0];
    }
    int fresh = !c;
    if (fresh) c = nb_tape_alloc(t, (size_t)(3 * T * H) * sizeof(float));
    nb_tensor *y = nb_tape_tensor(t, 4, x->shape);
    nb_node *n = nb_tape_push(t, &nb_op_rope, y, x, NULL, NULL);
    if (!n || !c) return NULL;
    n->p[0] = c;
    n->p[1] = c + T * H;
    n->p[2] = c + 2 * T * H;
    n->f[0] = theta;
    n->i[0] = pos0;
    if (fresh) nb_rope_tables(n->p[0], n->p[1], n->p[2], T, H, theta, pos0);
    rope_forward(n);
    return y;
}

/* ---- gradient-check cases ---- */
static nb_tensor *c_rope(nb_tape *t, nb_tensor **in) { return nb_rope(t, in[0], 10000.0f, 0); }
static nb_tensor *c_rope_pos(nb_tape *t, nb_tensor **in) { return nb_rope(t, in[0], 10000.0f, 5); }

const nb_opcase nb_opcases_rope[] = {
    {.name = "rope", .n_in = 1, .ndim = {4}, .shape = {{2, 3, 2, 4}}, .apply = c_rope},
    {.name = "rope_t1", .n_in = 1, .ndim = {4}, .shape = {{1, 1, 3, 6}}, .apply = c_rope},
    {.name = "rope_pos0_h34", .n_in = 1, .ndim = {4}, .shape = {{2, 4, 1, 34}}, .apply = c_rope_pos},
    {0},
};
