/* report.c — what the run prints besides the phases' own lines: the
 * machine at the start, and after a complete run the summary table and the
 * last line of stdout, one JSON object with every figure (null for a figure
 * that could not be measured). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench/stream/internal.h"

/* The "model name" of /proc/cpuinfo into cpu (unchanged when absent). */
static void read_cpu_model(char *cpu, size_t len)
{
    FILE *ci = fopen("/proc/cpuinfo", "r");
    if (!ci)
        return;
    char line[512];
    while (fgets(line, sizeof line, ci))
        if (strncmp(line, "model name", 10) == 0) {
            char *v = strchr(line, ':');
            if (v) {
                v += 1 + (v[1] == ' ');
                v[strcspn(v, "\n")] = '\0';
                snprintf(cpu, len, "%s", v);
            }
            break;
        }
    fclose(ci);
}

void bs_machine_read(bs_machine_t *m)
{
    snprintf(m->cpu, sizeof m->cpu, "unknown");
    read_cpu_model(m->cpu, sizeof m->cpu);
    time_t tnow = time(NULL);
    struct tm tm;
    gmtime_r(&tnow, &tm);
    strftime(m->date, sizeof m->date, "%Y-%m-%dT%H:%M:%SZ", &tm);
    m->ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    m->load = NAN;
    FILE *la = fopen("/proc/loadavg", "r");
    if (la) {
        if (fscanf(la, "%lf", &m->load) != 1)
            m->load = NAN;
        fclose(la);
    }
    m->coretype = getenv("OPENBLAS_CORETYPE");
}

void bs_report_header(const bs_run_t *R)
{
    const bs_machine_t *m = &R->mach;
    printf("== vaegan-bench-stream: %ld events (vaegan-gen, %d users x %d items), %d partitions, %s\n",
           R->o.n_events, BS_GEN_USERS, BS_GEN_ITEMS, R->o.partitions, m->date);
    printf("   machine: %ld CPUs, %s, load average %.2f at start, OPENBLAS_CORETYPE %s\n", m->ncpu, m->cpu, m->load,
           m->coretype ? m->coretype : "unset (vaegand picks)");
    printf("   daemon: %s\n", R->o.vaegand);
}

const char *bs_ms(char *buf, size_t len, double s)
{
    if (isnan(s))
        snprintf(buf, len, "-");
    else if (isinf(s))
        snprintf(buf, len, "missing");
    else
        snprintf(buf, len, "%.1f", 1e3 * s);
    return buf;
}

static void jnum(FILE *f, const char *key, double v, int comma)
{
    if (isfinite(v))
        fprintf(f, "\"%s\":%.6g%s", key, v, comma ? "," : "");
    else
        fprintf(f, "\"%s\":null%s", key, comma ? "," : "");
}

static void print_table(const bs_run_t *R)
{
    char b[4][32];
    printf("\n== summary (%s, %ld CPUs, %s)\n", R->mach.cpu, R->mach.ncpu, R->mach.date);
    printf("   ingest: %.0f events/s from the broker to Redis histories (aim >= 100000), %.0f lists/s meanwhile\n",
           R->ingest_rate, R->ingest_lists);
    printf("   | rate/s | sent | p50 ms | p90 ms | p99 ms | max ms | missing | unattributed | stale |\n");
    for (int i = 0; i < R->n_done; i++) {
        const bs_rate_t *P = &R->ph[i];
        printf("   | %d | %zu | %s | %s | %s | %s | %zu | %llu | %zu |\n", P->rate, P->sent, bs_ms(b[0], 32, P->p50),
               bs_ms(b[1], 32, P->p90), bs_ms(b[2], 32, P->p99), bs_ms(b[3], 32, P->max), P->missing,
               (unsigned long long)P->unattributed, P->stale);
    }
    if (R->stalled)
        printf("   !! vaegand got stuck (no list written for %.0f s with samples waiting): see the thread dump above\n",
               BS_STALL_S);
    printf("   (aim: p99 <= 50 ms at 1000 events/s; \"missing\" = no list within the drain time, counted as "
           "+inf)\n");
}

static void json_rate(const bs_rate_t *P, int first)
{
    double span = P->t_last_send - P->t_first_send;
    printf("%s{\"rate\":%d,\"seconds\":%g,\"sent\":%zu,", first ? "" : ",", P->rate, P->seconds, P->sent);
    jnum(stdout, "achieved_rate", span > 0 ? (double)(P->sent - 1) / span : NAN, 1);
    printf("\"skipped\":%ld,\"answered\":%zu,\"missing\":%zu,\"unattributed\":%llu,\"stale\":%zu,", P->skipped,
           P->answered, P->missing, (unsigned long long)P->unattributed, P->stale);
    jnum(stdout, "p50_ms", 1e3 * P->p50, 1);
    jnum(stdout, "p90_ms", 1e3 * P->p90, 1);
    jnum(stdout, "p99_ms", 1e3 * P->p99, 1);
    jnum(stdout, "max_ms", 1e3 * P->max, 1);
    jnum(stdout, "mean_answered_ms", 1e3 * P->mean_answered, 1);
    jnum(stdout, "daemon_p50_le_ms", 1e3 * P->d_p50, 1);
    jnum(stdout, "daemon_p99_le_ms", 1e3 * P->d_p99, 1);
    jnum(stdout, "daemon_mean_ms", 1e3 * P->d_mean, 1);
    jnum(stdout, "lists_per_s", P->lists_per_s, 1);
    jnum(stdout, "background_lists", P->bg_lists, 1);
    jnum(stdout, "training_steps", P->steps, 1);
    jnum(stdout, "scorer_users_per_s", P->scorer_users_per_s, 1);
    jnum(stdout, "scorer_busy_users_per_s", P->scorer_busy_users_per_s, 1);
    jnum(stdout, "kernel_gflops", P->kernel_gflops, 1);
    jnum(stdout, "redis_us_per_list", P->redis_us_per_list, 1);
    printf("\"kernel\":\"%s\",", P->kernel);
    printf("\"stalled\":%d,", P->stalled);
    jnum(stdout, "daemon_cpu_pct", P->cpu_daemon, 0);
    printf("}");
}

static void json_line(const bs_run_t *R)
{
    const bs_machine_t *m = &R->mach;
    printf("{\"bench\":\"stream\",\"date\":\"%s\",\"nproc\":%ld,\"cpu\":\"%s\",", m->date, m->ncpu, m->cpu);
    printf("\"openblas_coretype_env\":%s%s%s,", m->coretype ? "\"" : "", m->coretype ? m->coretype : "null",
           m->coretype ? "\"" : "");
    printf("\"vaegand\":\"%s\",\"train_steps_per_round\":%d,\"set\":[", R->o.vaegand, R->o.train_steps);
    for (int i = 0; i < R->o.n_set; i++)
        printf("%s\"%s\"", i ? "," : "", R->o.set[i]); /* the parser refused quotes and backslashes */
    printf("],");
    printf("\"events\":%ld,\"partitions\":%d,\"users\":%d,\"items\":%d,", R->o.n_events, R->o.partitions,
           BS_GEN_USERS, BS_GEN_ITEMS);
    jnum(stdout, "produce_s", R->backlog.seconds, 1);
    jnum(stdout, "lz4_mib_per_partition", R->backlog.tx_bytes / 1048576.0 / R->o.partitions, 1);
    jnum(stdout, "group_join_s", R->join_s, 1);
    jnum(stdout, "ingest_events_per_s", R->ingest_rate, 1);
    jnum(stdout, "ingest_peak_events_per_s", R->ingest_peak, 1);
    jnum(stdout, "ingest_s", R->ingest_span, 1);
    jnum(stdout, "ingest_lists_per_s", R->ingest_lists, 1);
    jnum(stdout, "ingest_daemon_cpu_pct", R->ingest_cpu, 1);
    jnum(stdout, "catchup_s", R->catchup_s, 1);
    jnum(stdout, "idle_steps_per_s", R->idle_steps_per_s, 1);
    printf("\"latency\":[");
    for (int i = 0; i < R->n_done; i++)
        json_rate(&R->ph[i], i == 0);
    printf("],\"stale\":%zu,\"checked\":%zu,\"stalled\":%d,\"vaegand_exit\":%d}\n", R->stale_total, R->checked,
           R->stalled, R->exit_code);
}

void bs_report_summary(const bs_run_t *R)
{
    print_table(R);
    json_line(R);
}
