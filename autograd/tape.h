/* tape.h: the autograd tape. Ops compute their forward at once and push a node; nb_backward walks
   the nodes in reverse and each node's backward accumulates (+=) into its inputs' gradients. */
#ifndef NB_TAPE_H
#define NB_TAPE_H

#include "../core/arena.h"
#include "../core/rng.h"
#include "../core/tensor.h"

#define NB_NODE_MAX_IN 4

typedef struct nb_node nb_node;
typedef struct nb_tape nb_tape;

/* One op = forward + backward (+ a name for messages). Defined next to each other in ops/. */
typedef struct nb_op {
    const char *name;
    void (*forward)(nb_node *n);  /* reads n->in, writes n->out (and n->saved) */
    void (*backward)(nb_node *n); /* reads n->out->grad, accumulates into n->in[i]->grad */
} nb_op;

struct nb_node {
    const nb_op *op;
    nb_tape *tape;
    nb_tensor *out;
    nb_tensor *in[NB_NODE_MAX_IN];
    int n_in;
    float f[6];   /* scalar parameters (eps, scale, ...) */
    int64_t i[6]; /* integer parameters (flags, sizes) */
    void *p[4];   /* op-owned pointers (saved buffers from the arena, configs) */
};

struct nb_tape {
    nb_arena *arena;   /* activations, nodes and saved buffers (step lifetime) */
    nb_node **nodes;   /* recorded nodes, in execution order (heap array, kept across resets) */
    int n_nodes, cap;
    int recording;     /* 0 = no-grad (evaluation): nodes are not kept */
    int training;      /* dropout active */
    nb_rng rng;        /* dropout and other random ops draw here */
    nb_status status;  /* sticky: first failure of any op */
    char msg[512];
    /* Optional profiler: called with each node as it is pushed (before its forward runs) and
       before its backward runs (backward = 1). NULL (the default) costs one branch per node. */
    void (*trace)(void *ctx, const nb_node *n, int backward);
    void *trace_ctx;
};

void nb_tape_init(nb_tape *t, nb_arena *arena);
void nb_tape_free(nb_tape *t);
/* Drops the nodes and the sticky status; does not reset the arena (the caller owns it). */
void nb_tape_reset(nb_tape *t);
/* Sets recording, returns the previous value (no-grad scope: old = nb_tape_grad(t, 0); ...). */
int nb_tape_grad(nb_tape *t, int on);

/* For ops: a node for this call (from the arena). The node is recorded when the tape records
   and any input requires grad; out->requires_grad is set accordingly. Returns NULL after a
   failure (sticky status) or when out of memory. */
nb_node *nb_tape_push(nb_tape *t, const nb_op *op, nb_tensor *out, nb_tensor *a, nb_tensor *b, nb_tensor *c);
/* Record a failure in the sticky status (first one wins) and return NULL. */
void *nb_tape_fail(nb_tape *t, nb_status code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* NB_OK or the first failure; also copies its message into nb_errmsg(). */
nb_status nb_tape_status(nb_tape *t);
/* Did an earlier op fail, or is any of these inputs NULL? Ops start with this. */
int nb_tape_bad(nb_tape *t, const nb_tensor *a, const nb_tensor *b, const nb_tensor *c);

/* New f32 output tensor on the tape's arena (NULL + sticky failure when out of memory). */
nb_tensor *nb_tape_tensor(nb_tape *t, int ndim, const int64_t *shape);
/* Scratch memory for saved buffers. */
void *nb_tape_alloc(nb_tape *t, size_t bytes);

/* The gradient buffer of x, allocated zeroed from the tape's arena on first use. */
float *nb_grad(nb_tape *t, nb_tensor *x);

/* Backward from a scalar loss: sets d(loss) = 1 (or `seed` when given, same shape as loss) and
   runs every recorded node in reverse. Returns the sticky status. */
nb_status nb_backward(nb_tape *t, nb_tensor *loss, const float *seed);

#endif
