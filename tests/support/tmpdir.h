/*
 * tmpdir.h — a private temporary directory per test, for Criterion's
 * .init/.fini: `Test(x, y, .init = vg_tmpdir_make, .fini = vg_tmpdir_remove)`;
 * the test writes below `vg_tmpdir`.  Header-only (Criterion asserts, one
 * copy of the state per test file), unlike the rest of tests/support/.
 */
#ifndef VG_TESTS_SUPPORT_TMPDIR_H
#define VG_TESTS_SUPPORT_TMPDIR_H

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char vg_tmpdir[64];

static void vg_tmpdir_make(void)
{
    strcpy(vg_tmpdir, "/tmp/vg-test-XXXXXX");
    cr_assert_not_null(mkdtemp(vg_tmpdir));
}

static void vg_tmpdir_remove(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", vg_tmpdir);
    cr_assert_eq(system(cmd), 0);
}

#endif
