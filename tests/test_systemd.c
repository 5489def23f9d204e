/*
 * test_systemd.c — lints systemd/vaegand.service with `systemd-analyze
 * verify`.  The verifier exits 0 even on warnings (systemd 252), so any output
 * on stderr fails the test; it also wants the ExecStart binary to exist, so
 * it checks the build's copy of the unit, whose ExecStart is the built
 * vaegand.  The installed copy must be the same unit but for ExecStart.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/support/tmpdir.h"

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "cannot open %s", path);
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    size_t r;
    while ((r = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += r;
        if (n + 1 >= cap)
            buf = realloc(buf, cap *= 2);
    }
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static int find_analyze(char *out, size_t len)
{
    const char *path = getenv("PATH");
    char dirs[4096];
    snprintf(dirs, sizeof dirs, "%s:/usr/bin:/bin:/usr/sbin:/sbin", path ? path : "");
    for (char *save = NULL, *d = strtok_r(dirs, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
        snprintf(out, len, "%s/systemd-analyze", d);
        if (access(out, X_OK) == 0)
            return 1;
    }
    return 0;
}

/* Runs systemd-analyze verify on unit; returns its exit status, *err its stderr. */
static int verify(const char *analyze, const char *unit, char **err)
{
    char cmd[2048], errpath[256];
    snprintf(errpath, sizeof errpath, "%s/verify.err", vg_tmpdir);
    snprintf(cmd, sizeof cmd, "'%s' verify '%s' >'%s/verify.out' 2>'%s'", analyze, unit, vg_tmpdir,
             errpath);
    int st = system(cmd);
    cr_assert(st != -1 && WIFEXITED(st), "could not run: %s", cmd);
    *err = slurp(errpath);
    return WEXITSTATUS(st);
}

static void require_analyze(char *analyze, size_t len)
{
    if (!find_analyze(analyze, len))
        cr_assert_fail("systemd-analyze not found in PATH: install the Debian package 'systemd' "
                 "(scripts/deps.sh) to lint systemd/vaegand.service");
}

Test(systemd, unit_verifies_cleanly, .init = vg_tmpdir_make, .fini = vg_tmpdir_remove, .timeout = 100)
{
    char analyze[512];
    require_analyze(analyze, sizeof analyze);
    cr_assert_eq(access(VG_VAEGAND_BIN, X_OK), 0, "the built daemon %s must exist", VG_VAEGAND_BIN);

    char *unit = slurp(VG_UNIT_FILE);
    char want[1024];
    snprintf(want, sizeof want, "\nExecStart=%s -c /etc/vaegand/vaegand.conf\n", VG_VAEGAND_BIN);
    cr_assert_not_null(strstr(unit, want), "the test copy runs the built vaegand:\n%s", unit);
    free(unit);

    char *err = NULL;
    int rc = verify(analyze, VG_UNIT_FILE, &err);
    cr_assert_eq(rc, 0, "systemd-analyze verify %s exited %d:\n%s", VG_UNIT_FILE, rc, err);
    cr_assert_str_eq(err, "", "systemd-analyze verify %s warned:\n%s", VG_UNIT_FILE, err);
    free(err);
}

/* The check would catch a warning: a copy with an unknown key must produce stderr. */
Test(systemd, verify_reports_warnings, .init = vg_tmpdir_make, .fini = vg_tmpdir_remove, .timeout = 100)
{
    char analyze[512];
    require_analyze(analyze, sizeof analyze);
    char *unit = slurp(VG_UNIT_FILE);
    char *svc = strstr(unit, "[Service]\n");
    cr_assert_not_null(svc);
    char path[256];
    snprintf(path, sizeof path, "%s/vaegand.service", vg_tmpdir);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    size_t head = (size_t)(svc - unit) + strlen("[Service]\n");
    fwrite(unit, 1, head, f);
    fputs("NoSuchSetting=yes\n", f);
    fputs(unit + head, f);
    fclose(f);
    free(unit);
    char *err = NULL;
    verify(analyze, path, &err);
    cr_assert_not_null(strstr(err, "NoSuchSetting"), "expected a warning, got:\n%s", err);
    free(err);
}

/* The installed unit: the same text but for ExecStart, with the settings the
 * daemon relies on. */
Test(systemd, installed_unit)
{
    char *inst = slurp(VG_UNIT_INSTALL_FILE), *test = slurp(VG_UNIT_FILE);
    static const char *const need[] = {
        "\nType=notify\n",      "\nNotifyAccess=main\n",       "\nWatchdogSec=30\n",
        "\nTimeoutStopSec=60\n", "\nExecReload=/bin/kill -HUP $MAINPID\n",
        "\nRestart=on-failure\n", "\nStateDirectory=vaegand\n", "\nDynamicUser=yes\n",
        "\nWantedBy=multi-user.target\n",
    };
    for (size_t i = 0; i < sizeof need / sizeof need[0]; i++)
        cr_assert_not_null(strstr(inst, need[i]), "missing %s", need[i] + 1);
    const char *e = strstr(inst, "\nExecStart=/");
    cr_assert_not_null(e, "ExecStart is an absolute path");
    cr_assert_not_null(strstr(e, "/vaegand -c /etc/vaegand/vaegand.conf\n"));
    /* identical outside the ExecStart line */
    const char *ti = strstr(test, "\nExecStart=");
    cr_assert_not_null(ti);
    cr_assert_eq(memcmp(inst, test, (size_t)(e - inst)), 0);
    cr_assert_str_eq(strchr(e + 1, '\n'), strchr(ti + 1, '\n'));
    free(inst);
    free(test);
}
