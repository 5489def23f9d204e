/* check.c — the check phase, after the latency phase: every answered
 * sample's clicked item must have left rec:<user> ("stale" otherwise,
 * counted per rate).  The subscriber is stopped first; the reads are
 * pipelined. */
#include "bench/stream/internal.h"

/* Samples [i0, i1): one ZSCORE each.  0 or -1 (Redis went away). */
static int check_chunk(bs_run_t *R, size_t i0, size_t i1)
{
    const bs_sample_t *s = R->L.s;
    for (size_t i = i0; i < i1; i++)
        redisAppendCommand(R->rc, "ZSCORE rec:u%d i%d", s[i].user, s[i].item);
    for (size_t i = i0; i < i1; i++) {
        void *vr;
        if (redisGetReply(R->rc, &vr) != REDIS_OK)
            return -1;
        redisReply *r = vr;
        if (s[i].t_recv > 0) {
            R->checked++;
            if (r && r->type != REDIS_REPLY_NIL) {
                R->stale_total++;
                for (int ri = 0; ri < R->n_done; ri++)
                    if (i >= R->ph[ri].first && i < R->ph[ri].first + R->ph[ri].sent)
                        R->ph[ri].stale++;
            }
        }
        if (r)
            freeReplyObject(r);
    }
    return 0;
}

int bs_phase_check(bs_run_t *R)
{
    bs_subscriber_stop(&R->redis, &R->sub_th, &R->sub_started);
    pthread_mutex_lock(&R->L.mu);
    size_t n = R->L.n;
    pthread_mutex_unlock(&R->L.mu);
    for (size_t i0 = 0; i0 < n; i0 += 2000)
        if (check_chunk(R, i0, i0 + 2000 < n ? i0 + 2000 : n) != 0)
            return -1;
    printf("-- check: %zu of %zu answered samples still list the clicked item in rec:<user>\n", R->stale_total,
           R->checked);
    return 0;
}
