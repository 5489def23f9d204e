/* log.c — see log.h. */
#include "common/log.h"

#include <stdio.h>

void vg_logv(vg_log_fn fn, void *ud, int level, const char *fmt, va_list ap)
{
    if (!fn)
        return;
    char msg[1024];
    vsnprintf(msg, sizeof msg, fmt, ap);
    fn(ud, level, msg);
}
