/* tokenizer.h: byte-level, character-level and llama2.c BPE tokenizers behind one handle.
   A tokenizer is stored inside checkpoints, datasets and nibble exports (an HDF5 group), so a
   model always carries the tokenizer it was trained with. */
#ifndef NB_TOKENIZER_H
#define NB_TOKENIZER_H

#include <hdf5.h>
#include <stdint.h>

#include "../core/status.h"

typedef enum nb_tok_kind {
    NB_TOK_BYTE = 0,    /* 256 byte ids + BOS 256, EOS 257 (vocab 258; BOS/EOS only when asked for) */
    NB_TOK_CHAR = 1,    /* one id per distinct UTF-8 character of a corpus, sorted by code point */
    NB_TOK_LLAMA2C = 2, /* llama2.c tokenizer.bin: pieces with merge scores, <unk>=0 BOS=1 EOS=2 */
} nb_tok_kind;

typedef struct nb_tokenizer nb_tokenizer; /* opaque */

nb_status nb_tokenizer_byte(nb_tokenizer **out);
/* Vocabulary = the distinct characters of text (UTF-8 aware). */
nb_status nb_tokenizer_char_build(const char *text, size_t len, nb_tokenizer **out);
/* llama2.c tokenizer.bin; vocab_size = number of records (0: read until end of file). Checks
   every length against the file size. */
nb_status nb_tokenizer_llama2c_load(const char *path, int vocab_size, nb_tokenizer **out);
/* The same from bytes in memory; `name` is used in error messages (fuzzing, embedded files). */
nb_status nb_tokenizer_llama2c_load_mem(const void *data, size_t size, const char *name, int vocab_size,
                                        nb_tokenizer **out);
/* "byte", "char" (needs corpus text) or "llama2c:PATH". */
nb_status nb_tokenizer_from_spec(const char *spec, const char *corpus, size_t corpus_len, nb_tokenizer **out);
void nb_tokenizer_free(nb_tokenizer *t);

nb_tok_kind nb_tokenizer_kind(const nb_tokenizer *t);
int nb_tokenizer_vocab(const nb_tokenizer *t);
int nb_tokenizer_bos(const nb_tokenizer *t); /* -1 when the tokenizer has none */
int nb_tokenizer_eos(const nb_tokenizer *t);
/* "byte", "char" or "llama2c". */
const char *nb_tokenizer_kind_name(nb_tok_kind k);
/* 1 when a and b are the same tokenizer (kind, pieces, scores, BOS/EOS). */
int nb_tokenizer_equal(const nb_tokenizer *a, const nb_tokenizer *b);

/* Encode len bytes of text; add BOS/EOS when asked (and available). *ids is nb_malloc'ed.
   llama2.c: as run.c's encode (dummy prefix space, byte fallback, merges by best score). */
nb_status nb_tokenizer_encode(const nb_tokenizer *t, const char *text, size_t len, int bos, int eos, int32_t **ids,
                              int64_t *n);
/* The bytes of token `id` as printed after token `prev` (llama2.c strips the leading space after
   BOS and turns <0xXX> into the byte). Points into the tokenizer; *len set. */
const char *nb_tokenizer_piece(const nb_tokenizer *t, int prev, int id, size_t *len);
/* Append the piece of `id` (after `prev`) to a growing NUL-terminated buffer (*buf, *len used,
   *cap allocated; nb_realloc'ed as needed). Used by generation to stream text. */
nb_status nb_tokenizer_append_piece(const nb_tokenizer *t, int prev, int id, char **buf, size_t *len, size_t *cap);
/* Decode a sequence to a NUL-terminated string (nb_malloc'ed). */
nb_status nb_tokenizer_decode(const nb_tokenizer *t, const int32_t *ids, int64_t n, char **text);
/* Raw vocabulary entry (for exports): the stored piece bytes and its merge score (0 if none). */
const char *nb_tokenizer_token(const nb_tokenizer *t, int id, size_t *len, float *score);
int nb_tokenizer_max_token_len(const nb_tokenizer *t);

/* Store into / load from an HDF5 group (created / opened by the caller). The group holds
   attributes kind ("byte"|"char"|"llama2c"), kind_id, vocab_size, bos, eos, max_token_length and
   datasets pieces (uint8, all pieces concatenated), offsets (int64, V + 1: piece i is
   pieces[offsets[i]:offsets[i+1]]) and scores (float32, V). Loading checks every offset. */
nb_status nb_tokenizer_save_h5(const nb_tokenizer *t, hid_t group);
nb_status nb_tokenizer_load_h5(hid_t group, nb_tokenizer **out);

#endif
