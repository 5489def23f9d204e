/*
 * fuzz_file.c — the scratch file of the fuzz harnesses (fuzz.h): one memfd
 * per process, rewritten for every input, handed to loaders that want a
 * path as "/proc/self/fd/N".
 *
 * Invariant: after vg_fuzz_file() returns, the file holds exactly the input
 * (truncated first, then written whole), so a loader opening the path reads
 * the input from its first byte whatever the previous input was.
 */
#define _GNU_SOURCE /* memfd_create */
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz/fuzz.h"

static int scratch_fd = -1;
static char scratch_path[64];

static void die(const char *what)
{
    perror(what);
    abort();
}

const char *vg_fuzz_file(const void *data, size_t size)
{
    if (scratch_fd < 0) {
        scratch_fd = memfd_create("vg-fuzz-input", MFD_CLOEXEC);
        if (scratch_fd < 0)
            die("fuzz: memfd_create");
        snprintf(scratch_path, sizeof scratch_path, "/proc/self/fd/%d", scratch_fd);
    }
    if (ftruncate(scratch_fd, 0) != 0)
        die("fuzz: ftruncate");
    const char *p = data;
    size_t done = 0;
    while (done < size) {
        ssize_t n = pwrite(scratch_fd, p + done, size - done, (off_t)done);
        if (n <= 0)
            die("fuzz: pwrite");
        done += (size_t)n;
    }
    return scratch_path;
}
