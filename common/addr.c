/* addr.c — see addr.h.  One parser; the listen form relaxes two rules. */
#include "common/addr.h"

#include <string.h>

#include "common/errors.h"

static int parse(const char *s, int listen, char *host, size_t hostlen, int *port, const char **why)
{
    const char *dummy;
    if (!why)
        why = &dummy;
    const char *colon = strrchr(s, ':');
    if (!colon) {
        *why = "expected host:port";
        return VG_EINVAL;
    }
    const char *h = s;
    size_t hl = (size_t)(colon - s);
    if (hl > 0 && s[0] == '[') { /* [v6]:port */
        if (hl < 3 || s[hl - 1] != ']') {
            *why = hl == 2 && s[1] == ']' ? "empty address between the brackets" : "expected [IPv6 address]:port";
            return VG_EINVAL;
        }
        h = s + 1;
        hl -= 2;
    } else if (memchr(s, ':', hl)) {
        *why = "an IPv6 address needs brackets, e.g. [::1]:9464";
        return VG_EINVAL;
    } else if (memchr(s, '[', hl) || memchr(s, ']', hl)) {
        *why = "expected [IPv6 address]:port";
        return VG_EINVAL;
    } else if (listen && hl == 1 && s[0] == '*') {
        hl = 0; /* every address */
    }
    if ((hl == 0 && !listen) || hl >= hostlen) {
        *why = hl == 0 ? "the host is empty" : "the host is too long";
        return VG_EINVAL;
    }
    for (size_t i = 0; i < hl; i++)
        if ((unsigned char)h[i] <= ' ' || h[i] == '/') {
            *why = "the host has a space, a control character or a '/'";
            return VG_EINVAL;
        }
    long p = 0;
    const char *d = colon + 1;
    for (; *d; d++) {
        if (*d < '0' || *d > '9' || p > 65535)
            break;
        p = p * 10 + (*d - '0');
    }
    if (*d || d == colon + 1 || p > 65535 || (p < 1 && !listen)) {
        *why = listen ? "the port must be a number from 0 to 65535" : "the port must be a number from 1 to 65535";
        return VG_EINVAL;
    }
    memcpy(host, h, hl);
    host[hl] = '\0';
    *port = (int)p;
    return 0;
}

int vg_hostport_parse_why(const char *s, char *host, size_t hostlen, int *port, const char **why)
{
    return parse(s, 0, host, hostlen, port, why);
}

int vg_hostport_parse(const char *s, char *host, size_t hostlen, int *port)
{
    return parse(s, 0, host, hostlen, port, NULL);
}

int vg_listen_parse(const char *s, char *host, size_t hostlen, int *port, const char **why)
{
    return parse(s, 1, host, hostlen, port, why);
}
