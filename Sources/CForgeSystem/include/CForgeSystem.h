// Linux facilities Swift cannot reach directly.
//
// Cross-process synchronisation on shared mappings: atomic loads and stores with explicit
// ordering, and futex waits and wakes on a 32-bit word (a shared futex, not a private one,
// since the waiter and the waker are different processes). Swift's Synchronization types cannot
// live at an address inside an mmap'd file; these functions can.
//
// CPU affinity of the calling thread (sched_{get,set}affinity need _GNU_SOURCE and macros).
#ifndef FORGE_CSYSTEM_H
#define FORGE_CSYSTEM_H

#include <stdint.h>

static inline uint64_t forge_load_acquire_u64(const uint64_t *address) {
    return __atomic_load_n(address, __ATOMIC_ACQUIRE);
}

static inline void forge_store_release_u64(uint64_t *address, uint64_t value) {
    __atomic_store_n(address, value, __ATOMIC_RELEASE);
}

static inline uint32_t forge_load_u32(const uint32_t *address) {
    return __atomic_load_n(address, __ATOMIC_SEQ_CST);
}

static inline void forge_store_u32(uint32_t *address, uint32_t value) {
    __atomic_store_n(address, value, __ATOMIC_SEQ_CST);
}

static inline uint32_t forge_increment_u32(uint32_t *address) {
    return __atomic_add_fetch(address, 1, __ATOMIC_SEQ_CST);
}
static inline uint32_t forge_decrement_u32(uint32_t *address) {
    return __atomic_sub_fetch(address, 1, __ATOMIC_SEQ_CST);
}

/// A full barrier between a store and a later load (the waiter/waker handshake needs it).
static inline void forge_fence(void) {
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
}

/// A hint to the core that this is a spin loop.
static inline void forge_cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
/// Writes the CPUs the calling thread may run on into `cpus` (at most `capacity`); returns
/// how many, or -1 with errno set.
int forge_allowed_cpus(int *cpus, int capacity);

/// Restricts the calling thread (and the processes and threads it creates afterwards) to
/// `cpus`; returns 0 or -1 with errno set.
int forge_pin_thread(const int *cpus, int count);

#endif
}

/// Sleeps while `*address == expected`, at most `timeout_us` microseconds. Returns 0 when woken
/// (or spuriously), or the errno: EAGAIN when the word had already changed, ETIMEDOUT, EINTR.
int forge_futex_wait(uint32_t *address, uint32_t expected, int64_t timeout_us);

/// Wakes every waiter on `address`; returns how many woke, or -1.
int forge_futex_wake(uint32_t *address);

/// Writes the CPUs the calling thread may run on into `cpus` (at most `capacity`); returns
/// how many, or -1 with errno set.
int forge_allowed_cpus(int *cpus, int capacity);

/// Restricts the calling thread (and the processes and threads it creates afterwards) to
/// `cpus`; returns 0 or -1 with errno set.
int forge_pin_thread(const int *cpus, int count);

/// Has the kernel send SIGKILL to the calling process when its parent dies (a rank whose
/// worker was killed must not train on as an orphan). Returns 0; -1 with errno set when prctl
/// fails, or with errno ESRCH when the parent is no longer `expectedParent` (it died first).
int forge_die_with_parent(int expectedParent);
/// Makes the calling process the reaper of its orphaned descendants (PR_SET_CHILD_SUBREAPER):
/// what its children leave running, even in a session of its own, becomes its child rather
/// than init's. Returns 0, or -1 with errno set.
int forge_become_subreaper(void);
/// An exit watch: an epoll set of pidfds that reports processes in the order they exited.
/// The kernel queues a pidfd's readiness the moment its process exits, in the exiting task
/// itself, so the order survives however late the watching thread gets to run. Returns the
/// watch's descriptor, or -1 with errno set.
int forge_exit_watch_create(void);
/// Adds process `pid` to `watch` under `tag` (a pidfd, never reaping it). Returns 0; -1 with
/// errno ESRCH when it is gone already, ENOSYS on kernels without pidfds (before 5.3).
int forge_exit_watch_add(int watch, int pid, uint32_t tag);
/// Blocks until at least one watched process has exited and stores the tags of up to
/// `capacity` of them in `tags`, oldest exit first; each is reported once. Returns how many,
/// or -1 with errno set.
int forge_exit_watch_next(int watch, uint32_t *tags, int capacity);

/// Whether child `pid` has ended, without reaping it (waitid with WNOWAIT, so whoever waits for
/// it later still can): 1 with `*status` (the exit status, or the signal) and `*signaled` set,
/// 0 while it runs, -1 with errno on failure.
int forge_peek_exit(int pid, int *status, int *signaled);

#endif
