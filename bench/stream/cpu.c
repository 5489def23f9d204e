/* cpu.c — per-thread and per-process CPU accounting from /proc: utime +
 * stime ticks (/proc/<pid>/task/<tid>/stat), run-queue wait
 * (.../schedstat: runnable, no core free) and the machine's busy share
 * (/proc/stat), so every phase can say what each thread of vaegand,
 * redis-server, the broker and this program took, and how much of the
 * machine other processes took (the figures mean little when that is big). */
#include <dirent.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench/stream/internal.h"
#include "common/clock.h"
#include "tests/support/proc.h"

static void read_schedstat(const char *path, double *run, double *wait)
{
    FILE *f = fopen(path, "r");
    *run = *wait = NAN;
    if (!f)
        return;
    if (fscanf(f, "%lf %lf", run, wait) != 2)
        *run = *wait = NAN;
    fclose(f);
}

static void threads_read(pid_t pid, bs_threads_t *s)
{
    s->n = 0;
    char dir[64];
    snprintf(dir, sizeof dir, "/proc/%d/task", (int)pid);
    DIR *d = pid > 0 ? opendir(dir) : NULL;
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d)) && s->n < BS_MAX_THREADS) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9')
            continue;
        char path[384];
        snprintf(path, sizeof path, "%s/%.256s/stat", dir, e->d_name);
        bs_tcpu_t *t = &s->th[s->n];
        t->tid = atoi(e->d_name);
        if (vgt_proc_stat(path, t->comm, sizeof t->comm, &t->ticks) != 0)
            continue;
        snprintf(path, sizeof path, "%s/%.256s/schedstat", dir, e->d_name);
        read_schedstat(path, &t->run_ns, &t->wait_ns);
        s->n++;
    }
    closedir(d);
}

static double proc_ticks(pid_t pid)
{
    char path[64];
    unsigned long long t = 0;
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    return pid > 0 && vgt_proc_stat(path, NULL, 0, &t) == 0 ? (double)t : NAN;
}

/* ticks of pid (all threads), run-queue wait (ns) summed over its live threads */
static void proc_totals(pid_t pid, double *ticks, double *wait_ns)
{
    bs_threads_t *s = malloc(sizeof *s);
    *ticks = *wait_ns = NAN;
    if (!s)
        return;
    threads_read(pid, s);
    if (s->n) {
        *wait_ns = 0;
        for (int i = 0; i < s->n; i++)
            *wait_ns += s->th[i].wait_ns;
        *ticks = proc_ticks(pid); /* the process' own count includes threads that ended */
    }
    free(s);
}

/* busy and total ticks of the whole machine (/proc/stat) */
static void machine_ticks(double *busy, double *total)
{
    FILE *f = fopen("/proc/stat", "r");
    *busy = *total = NAN;
    if (!f)
        return;
    unsigned long long v[10] = {0};
    if (fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6],
               &v[7]) == 8) {
        double tot = 0;
        for (int i = 0; i < 8; i++)
            tot += (double)v[i];
        *total = tot;
        *busy = tot - (double)v[3] - (double)v[4];
    }
    fclose(f);
}

void bs_cpu_take(bs_cpu_t *p, const bs_pids_t *pids)
{
    p->daemon = pids->daemon;
    threads_read(p->daemon, &p->d);
    proc_totals(pids->redis, &p->redis_t, &p->redis_w);
    proc_totals(pids->broker, &p->broker_t, &p->broker_w);
    proc_totals(getpid(), &p->self_t, &p->self_w);
    machine_ticks(&p->m_busy, &p->m_total);
    p->t = vg_mono_s();
}

static int cmp_tcpu_desc(const void *a, const void *b)
{
    const bs_tcpu_t *x = a, *y = b;
    return (x->ticks < y->ticks) - (x->ticks > y->ticks);
}

/* vaegand's threads of b, with the counts of a subtracted (busiest first);
 * returns their number, *sum their ticks. */
static int thread_deltas(const bs_cpu_t *a, const bs_cpu_t *b, bs_tcpu_t *d, double *sum)
{
    int n = 0;
    *sum = 0;
    for (int i = 0; i < b->d.n; i++) {
        const bs_tcpu_t *x = &b->d.th[i], *before = NULL;
        for (int j = 0; j < a->d.n; j++)
            if (a->d.th[j].tid == x->tid)
                before = &a->d.th[j];
        d[n] = *x;
        if (before) {
            d[n].ticks -= before->ticks;
            d[n].wait_ns -= before->wait_ns;
        }
        *sum += (double)d[n].ticks;
        n++;
    }
    qsort(d, (size_t)n, sizeof *d, cmp_tcpu_desc);
    return n;
}

/* CPU use in % of one core per vaegand thread (with its run-queue wait in %
 * of the wall time: runnable, no CPU free) and per process, plus the
 * machine's busy share and what other processes took. */
void bs_cpu_print(const char *phase, const bs_cpu_t *a, const bs_cpu_t *b, double *daemon_pct)
{
    double hz = (double)sysconf(_SC_CLK_TCK), dt = b->t - a->t;
    if (dt <= 0)
        return;
    bs_tcpu_t d[BS_MAX_THREADS];
    double sum;
    int n = thread_deltas(a, b, d, &sum);
    printf("  CPU during %s (%.1f s; %% of one core, run-queue wait in parentheses):\n    vaegand %.0f%% [", phase,
           dt, 100 * sum / hz / dt);
    int shown = 0;
    for (int i = 0; i < n; i++) {
        double pc = 100 * (double)d[i].ticks / hz / dt;
        if (pc < 1 && shown >= 3)
            continue;
        printf("%s%s%s/%d %.0f%% (%.0f%%)", shown ? ", " : "", d[i].comm, d[i].tid == b->daemon ? "(loop)" : "",
               d[i].tid, pc, 100 * d[i].wait_ns * 1e-9 / dt);
        shown++;
    }
    double ours = sum + (b->redis_t - a->redis_t) + (b->broker_t - a->broker_t) + (b->self_t - a->self_t);
    double mb = b->m_busy - a->m_busy, mt = b->m_total - a->m_total;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    printf("]\n    redis-server %.0f%% (%.0f%%), mockbroker %.0f%% (%.0f%%), this program %.0f%% (%.0f%%); machine busy "
           "%.0f%% of %ld cores, other processes %.0f%% of one core\n",
           100 * (b->redis_t - a->redis_t) / hz / dt, 100 * (b->redis_w - a->redis_w) * 1e-9 / dt,
           100 * (b->broker_t - a->broker_t) / hz / dt, 100 * (b->broker_w - a->broker_w) * 1e-9 / dt,
           100 * (b->self_t - a->self_t) / hz / dt, 100 * (b->self_w - a->self_w) * 1e-9 / dt,
           mt > 0 ? 100 * mb / mt : NAN, ncpu, mt > 0 ? 100 * (mb - ours) / (mt / (double)ncpu) : NAN);
    if (daemon_pct)
        *daemon_pct = 100 * sum / hz / dt;
}

/* The first n bytes of path into buf (NUL-terminated); buf unchanged when it
 * cannot be opened. */
static void read_small(const char *path, char *buf, size_t len)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    size_t n = fread(buf, 1, len - 1, f);
    buf[n] = '\0';
    fclose(f);
}

/* For a stalled daemon: where is it stuck? */
void bs_dump_threads(pid_t pid)
{
    bs_threads_t *a = malloc(sizeof *a), *b = malloc(sizeof *b);
    if (!a || !b) {
        free(a);
        free(b);
        return;
    }
    threads_read(pid, a);
    bs_sleep_s(1.0);
    threads_read(pid, b);
    printf("   vaegand threads (state, kernel wait channel, CPU ns in the last second):\n");
    for (int i = 0; i < b->n; i++) {
        char path[96], st[1024] = "", wchan[128] = "?";
        snprintf(path, sizeof path, "/proc/%d/task/%d/stat", (int)pid, b->th[i].tid);
        read_small(path, st, sizeof st);
        char *r = strrchr(st, ')');
        char state = r && r[1] && r[2] ? r[2] : '?';
        snprintf(path, sizeof path, "/proc/%d/task/%d/wchan", (int)pid, b->th[i].tid);
        read_small(path, wchan, sizeof wchan);
        double before = NAN;
        for (int j = 0; j < a->n; j++)
            if (a->th[j].tid == b->th[i].tid)
                before = a->th[j].run_ns;
        printf("     %d %-14s %c %-28s %.0f\n", b->th[i].tid, b->th[i].comm, state, wchan, b->th[i].run_ns - before);
    }
    free(a);
    free(b);
}
