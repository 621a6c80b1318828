/* arena.c: chunked bump allocator that coalesces on reset. */
#include "arena.h"

#include <string.h>

struct nb_arena_chunk {
    nb_arena_chunk *prev;
    size_t size, off;
    unsigned char *mem;
};

void nb_arena_init(nb_arena *a, size_t first) {
    memset(a, 0, sizeof *a);
    a->chunk_size = first ? first : (1 << 20);
}

static nb_arena_chunk *new_chunk(nb_arena *a, size_t size) {
    nb_arena_chunk *c = nb_malloc(sizeof *c);
    if (!c) return NULL;
    c->mem = nb_malloc_huge(size); /* a step streams hundreds of MB through it: huge pages when big */
    if (!c->mem) {
        nb_free(c);
        return NULL;
    }
    c->size = size;
    c->off = 0;
    c->prev = a->head;
    a->head = c;
    a->n_chunks++;
    a->n_mallocs++;
    return c;
}

void *nb_arena_alloc(nb_arena *a, size_t bytes) {
    size_t need = (bytes + 63) & ~(size_t)63;
    if (need == 0) need = 64;
    size_t limit = a->limit ? a->limit : NB_MAX_ALLOC;
    if (need > limit || a->used + need > limit) {
        nb_fail(NB_ENOMEM, "arena: request of %zu bytes exceeds the limit of %zu bytes", bytes, limit);
        return NULL;
    }
    nb_arena_chunk *c = a->head;
    if (!c || c->off + need > c->size) {
        size_t size = a->chunk_size;
        while (size < need) size *= 2;
        c = new_chunk(a, size);
        if (!c) {
            nb_fail(NB_ENOMEM, "arena: cannot allocate a chunk of %zu bytes", size);
            return NULL;
        }
        a->chunk_size = size * 2;
    }
    void *p = c->mem + c->off;
    c->off += need;
    a->used += need;
    if (a->used > a->peak) a->peak = a->used;
    return p;
}

void *nb_arena_calloc(nb_arena *a, size_t bytes) {
    void *p = nb_arena_alloc(a, bytes);
    if (p) memset(p, 0, bytes);
    return p;
}

static void free_chunks(nb_arena *a) {
    while (a->head) {
        nb_arena_chunk *p = a->head->prev;
        nb_free(a->head->mem);
        nb_free(a->head);
        a->head = p;
    }
    a->n_chunks = 0;
}

void nb_arena_reset(nb_arena *a) {
    if (a->n_chunks > 1) {
        /* coalesce: one chunk that holds the whole peak, so the next step does not grow */
        size_t total = 0;
        for (nb_arena_chunk *c = a->head; c; c = c->prev) total += c->size;
        free_chunks(a);
        if (!new_chunk(a, total)) a->chunk_size = total; /* retry lazily on next alloc */
    }
    if (a->head) a->head->off = 0;
    a->used = 0;
}

void nb_arena_free(nb_arena *a) {
    free_chunks(a);
    a->used = 0;
}
