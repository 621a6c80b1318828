/* checkpoint_seal.c: the seal in front of a checkpoint (512-byte HDF5 user block: magic, size, hash). */
#include "checkpoint_impl.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- the seal: a 512-byte HDF5 user block in front of the file ----
   HDF5 ignores a user block (h5py opens the file as usual) and finds its superblock at offset 512.
   nibble puts a header there: magic, file size and a hash of every byte after the block. The
   loader checks it before HDF5 parses anything, so a truncated or corrupted checkpoint is refused
   with a clear message instead of reaching libhdf5's parsers, which crash or hang on some
   corrupted inputs (found by fuzz_ckpt). Layout (little-endian):
     0   8  magic "NBCKPT\x01\n"
     8   8  u64 total file size in bytes
     16  8  u64 hash of bytes [512, size) (seal_update/seal_final below)
     24  8  u64 seal version (1)
     32  .. a human-readable line, then zeros up to 512 */
const char nb_ckpt_seal_magic[8] = {'N', 'B', 'C', 'K', 'P', 'T', 1, '\n'};

/* 64-bit hash, xxh64-style rounds over little-endian 8-byte words (the tail zero-padded), then
   the length and an avalanche. Detects corruption; not cryptographic. */
typedef struct seal_hasher {
    uint64_t h;
    uint64_t len;
} seal_hasher;

#define P1 0x9E3779B185EBCA87ULL
#define P2 0xC2B2AE3D27D4EB4FULL
static inline uint64_t rotl64(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

static void seal_update(seal_hasher *s, const unsigned char *p, size_t n) {
    NB_ASSERT(s->len % 8 == 0); /* callers feed multiples of 8 except at the very end */
    uint64_t h = s->h;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        h = rotl64(h ^ (w * P2), 31) * P1;
    }
    if (i < n) {
        uint64_t w = 0;
        memcpy(&w, p + i, n - i);
        h = rotl64(h ^ (w * P2), 31) * P1;
    }
    s->h = h;
    s->len += n;
}

static uint64_t seal_final(const seal_hasher *s) {
    uint64_t h = s->h ^ (s->len * P1);
    h ^= h >> 33;
    h *= P2;
    h ^= h >> 29;
    h *= P1;
    return h ^ (h >> 32);
}

static void put_u64(unsigned char *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get_u64(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}

void nb_ckpt_seal_write(unsigned char *img, size_t n) {
    seal_hasher hs = {0x6e6962626c65ULL, 0};
    seal_update(&hs, img + NB_CKPT_SEAL_BYTES, n - NB_CKPT_SEAL_BYTES);
    memset(img, 0, NB_CKPT_SEAL_BYTES);
    memcpy(img, nb_ckpt_seal_magic, 8);
    put_u64(img + 8, (uint64_t)n);
    put_u64(img + 16, seal_final(&hs));
    put_u64(img + 24, 1);
    snprintf((char *)img + 32, NB_CKPT_SEAL_BYTES - 32,
             "nibble checkpoint: HDF5 file with a 512-byte user block (this seal); open it with h5py as usual.\n");
}


nb_status nb_ckpt_seal_check(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return nb_fail(NB_EIO, "open %s: %s", path, strerror(errno));
    struct stat sb;
    unsigned char hdr[NB_CKPT_SEAL_BYTES];
    nb_status st = NB_OK;
    if (fstat(fileno(f), &sb) != 0) st = nb_fail(NB_EIO, "%s: stat: %s", path, strerror(errno));
    else if (sb.st_size < 8 || fread(hdr, 1, 8, f) != 8 || memcmp(hdr, nb_ckpt_seal_magic, 8)) {
        static const unsigned char sig[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
        st = nb_fail(NB_EFORMAT, "%s: not a nibble checkpoint (%s)", path,
                     sb.st_size >= 8 && !memcmp(hdr, sig, 8) ? "an HDF5 file without nibble's checkpoint header"
                                                             : "not an HDF5 file");
    } else if (sb.st_size < NB_CKPT_SEAL_BYTES || fread(hdr + 8, 1, NB_CKPT_SEAL_BYTES - 8, f) != NB_CKPT_SEAL_BYTES - 8)
        st = nb_fail(NB_EFORMAT, "%s: truncated checkpoint (%lld bytes)", path, (long long)sb.st_size);
    else if (get_u64(hdr + 24) != 1)
        st = nb_fail(NB_EFORMAT, "%s: checkpoint header version %llu, this build reads 1", path,
                     (unsigned long long)get_u64(hdr + 24));
    else if (get_u64(hdr + 8) != (uint64_t)sb.st_size)
        st = nb_fail(NB_EFORMAT, "%s: truncated or extended checkpoint: %lld bytes, its header says %llu", path,
                     (long long)sb.st_size, (unsigned long long)get_u64(hdr + 8));
    if (st == NB_OK) {
        seal_hasher hs = {0x6e6962626c65ULL, 0};
        size_t cap = (size_t)1 << 20;
        unsigned char *buf = nb_malloc(cap);
        if (!buf) st = nb_fail(NB_ENOMEM, "%s: checksum buffer", path);
        size_t k;
        while (st == NB_OK && (k = fread(buf, 1, cap, f)) > 0) seal_update(&hs, buf, k);
        if (st == NB_OK && ferror(f)) st = nb_fail(NB_EIO, "%s: read: %s", path, strerror(errno));
        if (st == NB_OK && (hs.len != (uint64_t)sb.st_size - NB_CKPT_SEAL_BYTES || seal_final(&hs) != get_u64(hdr + 16)))
            st = nb_fail(NB_EFORMAT, "%s: checksum mismatch: the checkpoint is corrupted (or was modified after "
                         "nibble wrote it)", path);
        nb_free(buf);
    }
    fclose(f);
    return st;
}

nb_status nb_ckpt_seal_file(const char *path) {
    FILE *f = fopen(path, "r+b");
    if (!f) return nb_fail(NB_EIO, "open %s: %s", path, strerror(errno));
    struct stat sb;
    unsigned char *img = NULL;
    nb_status st = NB_OK;
    unsigned char magic[8];
    if (fstat(fileno(f), &sb) != 0) st = nb_fail(NB_EIO, "%s: stat: %s", path, strerror(errno));
    else if (sb.st_size <= NB_CKPT_SEAL_BYTES || fread(magic, 1, 8, f) != 8 || memcmp(magic, nb_ckpt_seal_magic, 8))
        st = nb_fail(NB_EFORMAT, "%s: no nibble checkpoint header to update (only files written by nibble have one)", path);
    else if (!(img = nb_malloc((size_t)sb.st_size)))
        st = nb_fail(NB_ENOMEM, "%s: %lld bytes", path, (long long)sb.st_size);
    else if (fseek(f, 0, SEEK_SET) != 0 || fread(img, 1, (size_t)sb.st_size, f) != (size_t)sb.st_size)
        st = nb_fail(NB_EIO, "%s: read: %s", path, strerror(errno));
    if (st == NB_OK) {
        nb_ckpt_seal_write(img, (size_t)sb.st_size);
        if (fseek(f, 0, SEEK_SET) != 0 || fwrite(img, 1, NB_CKPT_SEAL_BYTES, f) != NB_CKPT_SEAL_BYTES || fflush(f) != 0 ||
            fsync(fileno(f)) != 0)
            st = nb_fail(NB_EIO, "%s: write: %s", path, strerror(errno));
    }
    nb_free(img);
    if (fclose(f) != 0 && st == NB_OK) st = nb_fail(NB_EIO, "%s: close: %s", path, strerror(errno));
    return st;
}

