/* proc.c — see proc.h.  fork + execv; the child's output goes to a log file
 * so a failing test can show it. */
#include "tests/support/proc.h"

#include <fcntl.h>
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
