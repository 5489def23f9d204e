/*
 * config_secrets.h — the configuration's secrets (daemon/config_secrets.c),
 * for daemon/config.c and nobody else: reading the file a *_file key names
 * (redis.password_file, kafka.sasl_password_file) and telling which
 * librdkafka properties hold a secret.
 *
 * A secret file's name is resolved like systemd's credentials: a relative
 * name is looked up in $CREDENTIALS_DIRECTORY (set for the service by
 * LoadCredential=), an absolute one is read as is.  So with DynamicUser=yes
 * the configuration file holds no secret at all.
 */
#ifndef VG_DAEMON_CONFIG_SECRETS_H
#define VG_DAEMON_CONFIG_SECRETS_H

#include <stddef.h>

/* The longest secret file accepted, in bytes (trailing newline included). */
#define VG_CFG_SECRET_MAX 65536

/* Reads the secret file `name`.  Returns 0 with *out the file's content
 * less one trailing newline ("\n"), NUL-terminated, malloc'ed and the
 * caller's.  Otherwise VG_ECONFIG (VG_ENOMEM) with *out NULL and `why` a
 * reason that names the path, never the content:
 *   "cannot read /run/credentials/vaegand.service/redis: No such file or directory"
 *   "/etc/vaegand/redis.pw is empty"
 *   "\"redis\" is a relative name, looked up in $CREDENTIALS_DIRECTORY ..., which is not set: ..."
 * A file that is not a regular file, holds a NUL byte or is longer than
 * VG_CFG_SECRET_MAX bytes is refused too.  Never blocks (O_NONBLOCK). */
int vg_cfg_secret_read_(const char *name, char **out, char *why, size_t whylen);

/* 1 when the librdkafka property `name` holds a secret: its name contains
 * "password", "secret" or ".pem" (sasl.password, ssl.key.password,
 * sasl.oauthbearer.client.secret, ssl.key.pem, ...).  The dump masks them;
 * --check-config warns when one is written in the file. */
int vg_cfg_secret_name_(const char *name);

#endif
