/* fuzz_util.h: shared by the file-loader fuzz targets. The loaders under test take a path (HDF5
   needs a file), so each input is written to one temp file per process and the real loader is
   called on it. HDF5's own error printing is silenced once. */
#ifndef NB_FUZZ_UTIL_H
#define NB_FUZZ_UTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* Path of a temp file holding exactly data[0..size). Aborts if it cannot be written (not a
   finding: the machine is broken). */
static const char *fuzz_file(const uint8_t *data, size_t size, const char *ext) {
    static char path[256];
    if (!path[0]) {
        const char *dir = getenv("TMPDIR");
        snprintf(path, sizeof path, "%s/nb-fuzz-%d%s", dir && *dir ? dir : "/tmp", (int)getpid(), ext);
    }
    FILE *f = fopen(path, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0) abort();
    return path;
}

/* 1 when the message is non-empty (every failure must say something). */
static int fuzz_has_msg(const char *m) { return m && m[0]; }

/* HDF5 targets: libhdf5 itself allocates buffers sized by (corrupted) on-disk headers before it
   reads and rejects them (e.g. 4 GB in H5C_protect while opening the file); these are virtual,
   never touched, and not nibble's. libFuzzer's default malloc limit (= rss limit, 2 GB) would report
   them as crashes, so these targets raise it to 1 TB and rely on -rss_limit_mb for real use.
   nibble's own allocations are bounded by the checks that tests/test_regress.c covers. */
#define FUZZ_HDF5_TARGET                                                                       \
    int LLVMFuzzerInitialize(int *argc, char ***argv) {                                        \
        static char *args[64];                                                                 \
        int n = *argc < 62 ? *argc : 62;                                                       \
        for (int i = 0; i < n; i++) args[i] = (*argv)[i];                                      \
        args[n++] = "-malloc_limit_mb=1048576";                                                \
        args[n] = NULL;                                                                        \
        *argc = n;                                                                             \
        *argv = args;                                                                          \
        return 0;                                                                              \
    }

#define FUZZ_CHECK(c)            \
    do {                         \
        if (!(c)) abort();       \
    } while (0)

#endif
