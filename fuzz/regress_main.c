/*
 * regress_main.c — the plain (non-libFuzzer) driver of a fuzz harness: runs
 * every file of the directories named on the command line through the
 * harness's LLVMFuzzerTestOneInput, in name order, and says how many it ran.
 *
 *   fuzz_regress_<harness> fuzz/corpus/<harness> fuzz/regress/<harness>
 *
 * ctest runs it in every normal build (Release and ASan+UBSan), so the seeds
 * and every crash input fixed since keep passing.  Names starting with '.'
 * (.gitkeep) are skipped.  Exit status: 0; 1 when a directory or file cannot
 * be read or the directories hold no input at all.  A failing input aborts
 * (the harness's vg_assert or a sanitizer) after its name was printed.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz/fuzz.h"

/* Reads path whole into a malloc'd buffer of exactly its size (so that a
 * sanitizer sees any read past the input).  Returns NULL on failure. */
static uint8_t *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 4096, n = 0;
    uint8_t *buf = malloc(cap);
    for (size_t got; buf && (got = fread(buf + n, 1, cap - n, f)) > 0;) {
        n += got;
        if (n == cap) {
            uint8_t *b = realloc(buf, cap *= 2);
            if (!b)
                free(buf);
            buf = b;
        }
    }
    int bad = ferror(f);
    fclose(f);
    if (!buf || bad) {
        free(buf);
        return NULL;
    }
    uint8_t *exact = malloc(n ? n : 1);
    if (exact)
        memcpy(exact, buf, n);
    free(buf);
    *len = n;
    return exact;
}

static int by_name(const struct dirent **a, const struct dirent **b)
{
    return strcmp((*a)->d_name, (*b)->d_name);
}

/* Runs every input of dir; returns how many, or -1 on a read failure. */
static int run_dir(const char *dir)
{
    struct dirent **names;
    int n = scandir(dir, &names, NULL, by_name), ran = 0, bad = 0;
    if (n < 0) {
        perror(dir);
        return -1;
    }
    for (int i = 0; i < n; i++) {
        char path[4096];
        size_t len = 0;
        if (names[i]->d_name[0] != '.' && !bad) {
            snprintf(path, sizeof path, "%s/%s", dir, names[i]->d_name);
            uint8_t *data = slurp(path, &len);
            if (!data) {
                perror(path);
                bad = 1;
            } else {
                fprintf(stderr, "%s (%zu bytes)\n", path, len);
                LLVMFuzzerTestOneInput(data, len);
                free(data);
                ran++;
            }
        }
        free(names[i]);
    }
    free(names);
    return bad ? -1 : ran;
}

int main(int argc, char **argv)
{
    int total = 0;
    for (int i = 1; i < argc; i++) {
        int n = run_dir(argv[i]);
        if (n < 0)
            return 1;
        total += n;
    }
    printf("%s: %d inputs passed\n", argc > 0 ? argv[0] : "fuzz_regress", total);
    return total > 0 ? 0 : 1;
}
