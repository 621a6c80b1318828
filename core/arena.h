/* arena.h: bump allocator for step-lifetime memory (activations, tape nodes, saved buffers). */
#ifndef NB_ARENA_H
#define NB_ARENA_H

#include "status.h"

/* Memory comes from a list of chunks; nb_arena_reset() frees everything at once and, when the
   previous step needed more than one chunk, replaces them by one chunk large enough for all,
   so from the second step on a training step makes no heap allocation. */
typedef struct nb_arena_chunk nb_arena_chunk;
typedef struct nb_arena {
    nb_arena_chunk *head; /* current chunk (list of earlier ones behind it) */
    size_t used;          /* bytes handed out since the last reset */
    size_t peak;          /* largest `used` seen */
    size_t chunk_size;    /* size of the next chunk to allocate */
    size_t limit;         /* refuse to grow past this many bytes (0 = NB_MAX_ALLOC) */
    int n_chunks;
    long n_mallocs;       /* heap allocations made by this arena (tests check it stops growing) */
} nb_arena;

void nb_arena_init(nb_arena *a, size_t first_chunk_bytes);
/* 64-byte aligned, uninitialised. Returns NULL (and sets nb_errmsg) when memory is refused. */
void *nb_arena_alloc(nb_arena *a, size_t bytes);
void *nb_arena_calloc(nb_arena *a, size_t bytes);
void nb_arena_reset(nb_arena *a);
void nb_arena_free(nb_arena *a);

#endif
