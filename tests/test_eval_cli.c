/*
 * test_eval_cli.c — vaegan-eval refuses bad input files and options with a
 * message naming the file, the line and the reason, and exits non-zero.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/support/tmpdir.h"

static const char *write_file(const char *name, const char *text)
{
    static char path[128];
    snprintf(path, sizeof path, "%s/%s", vg_tmpdir, name);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

/* Runs vaegan-eval with args; returns its exit status, output in out. */
static int run(const char *args, char *out, size_t outlen)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "'%s' %s 2>&1", VG_EVAL_BIN, args);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    size_t n = fread(out, 1, outlen - 1, p);
    out[n] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void expect_refused(const char *path, const char *format, const char *needle)
{
    char args[512], out[8192];
    snprintf(args, sizeof args, "--data '%s' --format %s --protocol weak --variant avb --epochs 1", path, format);
    int rc = run(args, out, sizeof out);
    cr_assert_neq(rc, 0, "accepted %s as %s:\n%s", path, format, out);
    cr_assert(strstr(out, needle), "message lacks \"%s\":\n%s", needle, out);
}

TestSuite(eval_cli, .init = vg_tmpdir_make, .fini = vg_tmpdir_remove);

Test(eval_cli, missing_file)
{
    char path[128];
    snprintf(path, sizeof path, "%s/none.data", vg_tmpdir);
    expect_refused(path, "ml100k", "cannot open");
    expect_refused(path, "ml100k", "none.data");
}

Test(eval_cli, empty_file) { expect_refused(write_file("empty.data", ""), "ml100k", "no events"); }

Test(eval_cli, wrong_format_names_line_1)
{
    const char *p = write_file("events.json", "{\"user\":\"u1\",\"item\":\"i1\",\"ts\":1}\n");
    expect_refused(p, "ml100k", "events.json:1:");
}

Test(eval_cli, non_numeric_field_names_line_and_field)
{
    const char *p = write_file("u.data", "1\t2\t5\t881250949\n1\t3\tfive\t881250950\n");
    expect_refused(p, "ml100k", "u.data:2:");
    expect_refused(p, "ml100k", "rating");
}

Test(eval_cli, bad_options)
{
    char out[8192];
    cr_assert_neq(run("--data x --format ml100k --protocol weak --variant vae", out, sizeof out), 0);
    cr_assert(strstr(out, "unknown variant \"vae\""), "%s", out);
    cr_assert_neq(run("--data x --format ml100k --protocol weak --variant avb --epochs many", out, sizeof out), 0);
    cr_assert(strstr(out, "--epochs: not a number"), "%s", out);
    cr_assert_neq(run("--data x --format ml100k --protocol weak --variant avb --lr-decay 0", out, sizeof out), 0);
    cr_assert(strstr(out, "--lr-decay: must be in (0, 1]"), "%s", out);
    cr_assert_neq(run("--format ml100k", out, sizeof out), 0);
    cr_assert(strstr(out, "required"), "%s", out);
}

Test(eval_cli, tiny_file_runs_and_prints_json)
{
    /* 12 users x 6 items each, enough for the weak split */
    char text[4096] = "";
    for (int u = 1; u <= 12; u++)
        for (int k = 0; k < 6; k++) {
            char line[64];
            snprintf(line, sizeof line, "%d\t%d\t%d\t%d\n", u, (u * 7 + k * 3) % 20 + 1, 1 + (u + k) % 5, 880000000 + k);
            strcat(text, line);
        }
    const char *p = write_file("tiny.data", text);
    char args[512], out[16384];
    snprintf(args, sizeof args,
             "--data '%s' --format ml100k --protocol weak --variant avb+d+c --epochs 2 --hidden 16 --latent 4 --threads 1 "
             "--lr-decay 0.5 --input-norm 1",
             p);
    cr_assert_eq(run(args, out, sizeof out), 0, "%s", out);
    char *last = strstr(out, "{\"variant\"");
    cr_assert_not_null(last);
    cr_assert(strstr(last, "\"variant\":\"avb+d+c\"") && strstr(last, "\"G@20\"") && strstr(last, "\"best_epoch\"") &&
                  strstr(last, "\"lr_decay\":0.5") && strstr(last, "\"input_norm\":1.0"),
              "%s", last);
}
