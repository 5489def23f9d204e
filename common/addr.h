/*
 * addr.h — the one "host:port" parser of vaegan (configuration, the metrics
 * endpoint, tests and benchmarks).
 *
 * Accepted: "host:port" and "[IPv6]:port".  The host is 1..hostlen-1 bytes
 * with no space, control byte, '/' or bracket; a bare IPv6 address (a ':' in
 * the host) needs brackets.  The port is decimal, 1..65535.
 *
 * A listen address (vg_listen_parse) may also name every address — an empty
 * host (":9464") or "*" ("*:9464"), giving host "" — and port 0 (any free
 * port, read back after bind).
 */
#ifndef VG_ADDR_H
#define VG_ADDR_H

#include <stddef.h>

/* Splits s into host (NUL-terminated) and *port.  Returns 0, or VG_EINVAL
 * with *why (may be NULL) pointing at a static reason; host and *port are
 * then unspecified. */
int vg_hostport_parse(const char *s, char *host, size_t hostlen, int *port);
int vg_hostport_parse_why(const char *s, char *host, size_t hostlen, int *port, const char **why);
int vg_listen_parse(const char *s, char *host, size_t hostlen, int *port, const char **why);

#endif
