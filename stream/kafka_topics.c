/*
 * kafka_topics.c — the consumer's topic and partition table (see
 * kafka_topics.h).
 *
 * Two levels of arrays: the topics by id, doubled when full, and per topic
 * its partitions by partition id, grown to the highest id seen.  Ids are
 * indices, so a lookup by id is an index check; a lookup by name tries the
 * last hit before the linear search.  Nothing is ever removed before
 * vg_kafka_topics_free(): a topic that a regex stops matching keeps its id.
 */
#include "stream/kafka_topics.h"

#include <stdlib.h>
#include <string.h>

int32_t vg_kafka_topics_id(vg_kafka_topics_t *tt, const char *name, int create)
{
    if (!name)
        return -1;
    if (tt->last < tt->n && !strcmp(tt->t[tt->last].name, name))
        return tt->last;
    for (int32_t i = 0; i < tt->n; i++)
        if (!strcmp(tt->t[i].name, name))
            return tt->last = i;
    if (!create || tt->n == INT32_MAX)
        return -1;
    if (tt->n == tt->cap) {
        int32_t ncap = tt->cap ? (tt->cap > INT32_MAX / 2 ? INT32_MAX : tt->cap * 2) : 4;
        vg_ktopic_t *nt = realloc(tt->t, (size_t)ncap * sizeof *nt);
        if (!nt)
            return -1;
        tt->t = nt;
        tt->cap = ncap;
    }
    char *dup = strdup(name);
    if (!dup)
        return -1;
    tt->t[tt->n] = (vg_ktopic_t){.name = dup};
    return tt->last = tt->n++;
}

vg_kpart_t *vg_kafka_topics_part(vg_kafka_topics_t *tt, int32_t id, int32_t p, int create)
{
    if (id < 0 || id >= tt->n || p < 0)
        return NULL;
    vg_ktopic_t *t = &tt->t[id];
    if (p >= t->nparts) {
        if (!create || p == INT32_MAX)
            return NULL;
        int32_t n = p + 1;
        vg_kpart_t *np = realloc(t->parts, (size_t)n * sizeof *np);
        if (!np)
            return NULL;
        for (int32_t i = t->nparts; i < n; i++) {
            memset(&np[i], 0, sizeof np[i]);
            vg_offsets_init(&np[i].o);
            np[i].stored = np[i].lag = np[i].wm_hi = -1;
        }
        t->parts = np;
        t->nparts = n;
    }
    return &t->parts[p];
}

vg_kpart_t *vg_kafka_topics_find(vg_kafka_topics_t *tt, const char *name, int32_t p, int create)
{
    return vg_kafka_topics_part(tt, vg_kafka_topics_id(tt, name, create), p, create);
}

const char *vg_kafka_topics_name(const vg_kafka_topics_t *tt, int32_t id)
{
    return id >= 0 && id < tt->n ? tt->t[id].name : NULL;
}

void vg_kafka_topics_free(vg_kafka_topics_t *tt)
{
    for (int32_t i = 0; i < tt->n; i++) {
        for (int32_t p = 0; p < tt->t[i].nparts; p++)
            vg_offsets_free(&tt->t[i].parts[p].o);
        free(tt->t[i].parts);
        free(tt->t[i].name);
    }
    free(tt->t);
    memset(tt, 0, sizeof *tt);
}
