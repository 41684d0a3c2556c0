// The system calls behind CForgeSystem.h: futexes and pidfds (syscall(2) is variadic, out of
// Swift's reach), CPU affinity (its cpu_set_t macros are too), and process exits.
#define _GNU_SOURCE
#include "CForgeSystem.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <sched.h>
#include <sys/epoll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int forge_futex_wait(uint32_t *address, uint32_t expected, int64_t timeout_us) {
    struct timespec timeout = {
        .tv_sec = (time_t)(timeout_us / 1000000),
        .tv_nsec = (long)(timeout_us % 1000000) * 1000,
    };
    if (syscall(SYS_futex, address, FUTEX_WAIT, expected, &timeout, NULL, 0) == 0) return 0;
    return errno;
}

int forge_futex_wake(uint32_t *address) {
    return (int)syscall(SYS_futex, address, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

int forge_allowed_cpus(int *cpus, int capacity) {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) != 0) return -1;
    int count = 0;
    for (int cpu = 0; cpu < CPU_SETSIZE && count < capacity; cpu++) {
        if (CPU_ISSET(cpu, &set)) cpus[count++] = cpu;
    }
    return count;
}

int forge_pin_thread(const int *cpus, int count) {
    cpu_set_t set;
    CPU_ZERO(&set);
    for (int i = 0; i < count; i++) {
        if (cpus[i] >= 0 && cpus[i] < CPU_SETSIZE) CPU_SET(cpus[i], &set);
    }
    return sched_setaffinity(0, sizeof set, &set);
}

int forge_die_with_parent(int expectedParent) {
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) return -1;
    if (getppid() != expectedParent) {
        errno = ESRCH;
        return -1;
    }
    return 0;
}

int forge_become_subreaper(void) {
    return prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
}

int forge_exit_watch_create(void) {
    return epoll_create1(EPOLL_CLOEXEC);
}

int forge_exit_watch_add(int watch, int pid, uint32_t tag) {
#ifdef SYS_pidfd_open
    int descriptor = (int)syscall(SYS_pidfd_open, pid, 0);
    if (descriptor < 0) return -1;
    // One shot: a pidfd stays readable once its process has exited. The descriptor stays
    // open (it is small) so the pid cannot be reused under the watch.
    struct epoll_event event = {.events = EPOLLIN | EPOLLONESHOT, .data.u32 = tag};
    if (epoll_ctl(watch, EPOLL_CTL_ADD, descriptor, &event) != 0) {
        int saved = errno;
        close(descriptor);
        errno = saved;
        return -1;
    }
    return 0;
#else
    (void)watch;
    (void)pid;
    (void)tag;
    errno = ENOSYS;
    return -1;
#endif
}

int forge_exit_watch_next(int watch, uint32_t *tags, int capacity) {
    struct epoll_event events[64];
    if (capacity > 64) capacity = 64;
    int ready;
    do {
        ready = epoll_wait(watch, events, capacity, -1);
    } while (ready < 0 && errno == EINTR);
    // epoll hands back ready entries in the order they became ready.
    for (int i = 0; i < ready; i++) tags[i] = events[i].data.u32;
    return ready;
}

int forge_peek_exit(int pid, int *status, int *signaled) {
    siginfo_t info = {0};
    int result;
    do {
        result = waitid(P_PID, (id_t)pid, &info, WEXITED | WNOHANG | WNOWAIT);
    } while (result < 0 && errno == EINTR);
    if (result < 0) return -1;
    if (info.si_pid == 0) return 0;
    *signaled = info.si_code == CLD_KILLED || info.si_code == CLD_DUMPED;
    *status = info.si_status;
    return 1;
}
