/* proc.c — see proc.h.  fork + execv; the child's output goes to a log file
 * so a failing test can show it.  The CPU ticks of a /proc stat file, for
 * the benchmarks. */
#include "tests/support/proc.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

pid_t vgt_spawn(const char *const *argv, const char *log)
{
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (log) {
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, STDOUT_FILENO);
            dup2(fd, STDERR_FILENO);
            if (fd > STDERR_FILENO)
                close(fd);
        }
    }
    execv(argv[0], (char *const *)argv);
    _exit(127);
}

int vgt_wait_exit(pid_t pid, double timeout_s)
{
    double end = vg_mono_s() + timeout_s;
    for (;;) {
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid)
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        if (vg_mono_s() >= end)
            return -1;
        vgt_sleep_ms(20);
    }
}

int vgt_proc_stat(const char *path, char *comm, size_t commlen, unsigned long long *ticks)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    char buf[1024];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *l = strchr(buf, '('), *r = strrchr(buf, ')');
    if (!l || !r || r < l)
        return -1;
    if (comm) {
        size_t cl = (size_t)(r - l - 1) < commlen - 1 ? (size_t)(r - l - 1) : commlen - 1;
        memcpy(comm, l + 1, cl);
        comm[cl] = '\0';
    }
    /* after ") ": state(3) ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime(14) stime(15) */
    char *p = r + 2;
    unsigned long long ut = 0, st = 0;
    for (int field = 3; field <= 15 && *p; field++) {
        if (field == 14)
            ut = strtoull(p, NULL, 10);
        if (field == 15)
            st = strtoull(p, NULL, 10);
        p = strchr(p, ' ');
        if (!p)
            break;
        p++;
    }
    *ticks = ut + st;
    return 0;
}
