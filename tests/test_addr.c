/* test_addr.c — the one host:port parser (common/addr.h): the strict form
 * used for connect addresses and metrics.listen, and the listen form that
 * also takes "every address" and port 0. */
#include <criterion/criterion.h>
#include <string.h>

#include "common/addr.h"
#include "common/errors.h"

static char host[64];
static int port;

Test(addr, strict_accepts)
{
    cr_assert_eq(vg_hostport_parse("127.0.0.1:9464", host, sizeof host, &port), 0);
    cr_assert_str_eq(host, "127.0.0.1");
    cr_assert_eq(port, 9464);
    cr_assert_eq(vg_hostport_parse("[::1]:80", host, sizeof host, &port), 0);
    cr_assert_str_eq(host, "::1");
    cr_assert_eq(port, 80);
    cr_assert_eq(vg_hostport_parse("metrics.example:65535", host, sizeof host, &port), 0);
    cr_assert_eq(port, 65535);
    cr_assert_eq(vg_hostport_parse("abcdefg:1", host, 8, &port), 0, "7 bytes + NUL fit in 8");
    cr_assert_eq(vg_hostport_parse("*:9464", host, sizeof host, &port), 0, "a host named \"*\" (the listen form reads it as every address)");
}

Test(addr, strict_refuses)
{
    const char *bad[] = {"",        "9464",      "host:",   "host:0",  ":9464",    "::1:9464",
                         "[::1]",   "[::1:9464", "[]:80",   "a b:1",   "a/b:1",    "x:65536", "x:-1",
                         "x:9x",    "x:+80",     "x: 80",   "[a]b:1",  "a]:1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *why = NULL;
        cr_assert_eq(vg_hostport_parse_why(bad[i], host, sizeof host, &port, &why), VG_EINVAL, "%s", bad[i]);
        cr_assert_not_null(why, "%s: a reason", bad[i]);
    }
    cr_assert_eq(vg_hostport_parse("abcdefgh:1", host, 8, &port), VG_EINVAL, "host does not fit");
}

Test(addr, listen_form)
{
    cr_assert_eq(vg_listen_parse(":9464", host, sizeof host, &port, NULL), 0);
    cr_assert_str_eq(host, "", "empty host = every address");
    cr_assert_eq(port, 9464);
    cr_assert_eq(vg_listen_parse("*:0", host, sizeof host, &port, NULL), 0);
    cr_assert_str_eq(host, "");
    cr_assert_eq(port, 0, "port 0 = any free port");
    cr_assert_eq(vg_listen_parse("[::1]:0", host, sizeof host, &port, NULL), 0);
    cr_assert_str_eq(host, "::1");
    const char *why = NULL;
    cr_assert_eq(vg_listen_parse("127.0.0.1:65536", host, sizeof host, &port, &why), VG_EINVAL);
    cr_assert_not_null(strstr(why, "0 to 65535"), "%s", why);
    cr_assert_eq(vg_listen_parse("[]:80", host, sizeof host, &port, NULL), VG_EINVAL);
}
