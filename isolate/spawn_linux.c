// The job's child between clone and exec: raw system calls only.
//
// The child shares the init's memory (CLONE_VM, like posix_spawn), so it
// must not allocate, take locks or touch Go state: it only issues system
// calls through syscall(2) and writes its failure into the caller's struct.
// Privileges are dropped in a fixed order:
//
//   priv_setup: signals to default, own session, job cgroup, cgroup
//   namespace, the writable layer's mount, IPC and network namespaces (setns),
//   bounding set and securebits, uid/gid (drops the effective and permitted
//   sets), clear inheritable and ambient, no_new_privs, Landlock;
//   job_setup: cwd, stdio, close every other fd, rlimits, unblock signals;
//   then seccomp and exec.
//
// A child made on request (corral_spawn_run, CLONE_VFORK) runs them in that
// order. A parked child (corral_park_start) runs priv_setup ahead of the
// request and, for the default profile, loads its seccomp filter too; it
// waits, and runs job_setup when the request comes (then the filter, for a
// profile like strict that forbids what job_setup does).
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/capability.h>
#include <linux/securebits.h>
#include <linux/futex.h>
#include <linux/seccomp.h>

#include "spawn_linux.h"

#ifndef SYS_close_range
#define SYS_close_range 436
#endif
#ifndef SYS_landlock_restrict_self
#define SYS_landlock_restrict_self 446
#endif

#define CORRAL_CLOSE_RANGE_UNSHARE (1U << 1)

#define STACK_SIZE (64 * 1024)
#define PATHBUF 4096

static char *child_stack;
static char pathbuf[PATHBUF];
static __thread int bset_dropped;

#if defined(__x86_64__)
#define CORRAL_HAVE_CLONE3 1
#ifndef SYS_clone3
#define SYS_clone3 435
#endif
#define CORRAL_CLONE_CLEAR_SIGHAND 0x100000000ULL

// struct clone_args as of Linux 5.5 (CLONE_ARGS_SIZE_VER0).
#define CORRAL_CLONE_INTO_CGROUP 0x200000000ULL

// struct clone_args as of Linux 5.7 (CLONE_ARGS_SIZE_VER2); the first 64
// bytes are 5.5's (VER0), enough without CLONE_INTO_CGROUP.
struct corral_clone_args {
	uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls;
	uint64_t set_tid, set_tid_size, cgroup;
};
#define CORRAL_CLONE_ARGS_VER0 64

static int into_cgroup_unavailable;

static int clone3_unavailable;

// clone_call makes system call nr, clone or clone3, with arguments a1-a5:
// the child starts on its new stack right after the syscall instruction,
// so the call of fn(arg) and the exit are in the same assembly. Returns
// the pid or -errno, and touches no errno.
static long clone_call(long nr, long a1, long a2, long a3, long a4, long a5, int (*fn)(void *), void *arg) {
	long ret;
	register long r10 __asm__("r10") = a4;
	register long r8 __asm__("r8") = a5;
	register long r9 __asm__("r9") = (long)fn;
	register long r12 __asm__("r12") = (long)arg;
	__asm__ volatile(
	    "syscall\n\t"
	    "test %%rax, %%rax\n\t"
	    "jnz 1f\n\t"
	    // The child: a fresh frame on its own stack, fn(arg), exit.
	    "xor %%ebp, %%ebp\n\t"
	    "mov %%r12, %%rdi\n\t"
	    "call *%%r9\n\t"
	    "mov %%eax, %%edi\n\t"
	    "mov %[exit], %%eax\n\t"
	    "syscall\n\t"
	    "hlt\n\t"
	    "1:\n\t"
	    : "=a"(ret)
	    : "a"(nr), "D"(a1), "S"(a2), "d"(a3), "r"(r10), "r"(r8), "r"(r9), "r"(r12), [exit] "i"(SYS_exit)
	    : "rcx", "r11", "memory");
	return ret;
}

// clone3_run is clone(2) for clone3, which glibc does not wrap.
static long clone3_run(struct corral_clone_args *args, size_t size, int (*fn)(void *), void *arg) {
	return clone_call(SYS_clone3, (long)args, (long)size, 0, 0, 0, fn, arg);
}
#endif

static int fail(struct corral_spawn *s, int step, int err) {
	s->err_step = step;
	s->err_no = err;
	syscall(SYS_exit_group, 127);
	return 127;
}

static size_t slen(const char *p) {
	size_t n = 0;
	while (p[n]) n++;
	return n;
}

#define MAX_SH_ARGV 4096
static char *sh_argv[MAX_SH_ARGV];

// try_exec runs execve and returns its errno. A file the kernel cannot
// execute (a script without #!) runs under /bin/sh, as execvp does.
static int try_exec(const char *file, char *const *argv, char *const *envp) {
	syscall(SYS_execve, file, argv, envp);
	int err = errno;
	if (err != ENOEXEC) return err;
	int n = 0;
	while (argv[n]) n++;
	if (n + 2 > MAX_SH_ARGV) return err;
	sh_argv[0] = "sh";
	sh_argv[1] = (char *)file;
	for (int i = 1; i <= n; i++) sh_argv[i + 1] = argv[i];
	syscall(SYS_execve, "/bin/sh", sh_argv, envp);
	return err;
}

// exec_search is execvpe without allocation: the job's own PATH, resolved
// inside the sandbox.
static int exec_search(struct corral_spawn *s) {
	const char *file = s->path;
	size_t flen = slen(file);
	if (flen == 0) return ENOENT;
	for (size_t i = 0; i < flen; i++)
		if (file[i] == '/') return try_exec(file, s->argv, s->envp);
	const char *p = s->search_path;
	if (!p || !*p) p = "/usr/local/bin:/usr/bin:/bin";
	int seen_eacces = 0, last = ENOENT;
	while (1) {
		const char *end = p;
		while (*end && *end != ':') end++;
		size_t dlen = end - p;
		if (dlen == 0) { p = "."; dlen = 1; }
		if (dlen + 1 + flen + 1 <= PATHBUF) {
			memcpy(pathbuf, p, dlen);
			pathbuf[dlen] = '/';
			memcpy(pathbuf + dlen + 1, file, flen + 1);
			int e = try_exec(pathbuf, s->argv, s->envp);
			if (e == EACCES) seen_eacces = 1;
			else if (e != ENOENT && e != ENOTDIR) last = e;
		}
		if (!*end) break;
		p = end + 1;
	}
	return seen_eacces ? EACCES : last;
}

// drop_bounding_set empties the calling thread's capability bounding set.
// Returns 0 or an errno.
static int drop_bounding_set(void) {
	for (int cap = 0; cap <= 63; cap++) {
		if (syscall(SYS_prctl, PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL)
			return errno;
	}
	return 0;
}

// priv_setup is the part of the child's setup that is the same for every
// process of a writable layer: signals, session, cgroup, namespaces,
// capabilities, credentials, no_new_privs and Landlock. Returns 0, or
// exits through fail.
static int priv_setup(struct corral_spawn *s) {
	// The init's handlers (the Go runtime's) must not run here: every
	// signal goes back to its default action (done by the kernel when
	// clone3 took CLONE_CLEAR_SIGHAND). Signals stay blocked until just
	// before exec.
	if (!s->sighand_cleared) {
		struct sigaction sa;
		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = SIG_DFL;
		for (int sig = 1; sig < 65; sig++) {
			if (sig == SIGKILL || sig == SIGSTOP) continue;
			syscall(SYS_rt_sigaction, sig, &sa, NULL, 8);
		}
	}

	if (syscall(SYS_setsid) < 0) return fail(s, CORRAL_STEP_SETSID, errno);

	// Enter the job cgroup, unless clone3 made the child there: the files
	// were opened by host root, whose credentials the kernel checks, so
	// the write works from in here.
	for (int i = 0; !s->in_cgroup && i < s->nprocs_fds; i++)
		if (syscall(SYS_write, s->procs_fds[i], "0", 1) < 0)
			return fail(s, CORRAL_STEP_CGROUP, errno);
	// A cgroup namespace rooted at the job cgroup: the one made for the
	// zygote's children (their filter allows setns, not unshare), else a
	// new one.
	if (s->cgns_fd >= 0) {
		if (syscall(SYS_setns, s->cgns_fd, CLONE_NEWCGROUP) < 0) return fail(s, CORRAL_STEP_CGROUPNS, errno);
	} else if ((s->in_cgroup || s->nprocs_fds > 0) && syscall(SYS_unshare, CLONE_NEWCGROUP) < 0)
		return fail(s, CORRAL_STEP_CGROUPNS, errno);

	// Join the writable layer's mount namespace, whose root is the job
	// root (setns resets root and cwd to it: the init's view is gone), its
	// IPC namespace and, when it has one, its network namespace.
	if (syscall(SYS_setns, s->mnt_fd, CLONE_NEWNS) < 0) return fail(s, CORRAL_STEP_NAMESPACES, errno);
	if (syscall(SYS_setns, s->ipc_fd, CLONE_NEWIPC) < 0) return fail(s, CORRAL_STEP_NAMESPACES, errno);
	if (s->net_fd >= 0 && syscall(SYS_setns, s->net_fd, CLONE_NEWNET) < 0) return fail(s, CORRAL_STEP_NAMESPACES, errno);

	// Capabilities: empty the bounding set (inherited empty from the
	// calling thread, see corral_spawn_run) and lock the securebits while
	// we still hold CAP_SETPCAP, then become the job's uid, which clears
	// the effective, permitted and ambient sets.
	if (!s->bset_empty) {
		int err = drop_bounding_set();
		if (err) return fail(s, CORRAL_STEP_CAPS, err);
	}
	if (syscall(SYS_prctl, PR_SET_SECUREBITS,
	            SECBIT_KEEP_CAPS_LOCKED | SECBIT_NO_SETUID_FIXUP | SECBIT_NO_SETUID_FIXUP_LOCKED |
	                SECBIT_NOROOT | SECBIT_NOROOT_LOCKED | SECBIT_NO_CAP_AMBIENT_RAISE |
	                SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED,
	            0, 0, 0) < 0)
		return fail(s, CORRAL_STEP_SECUREBITS, errno);
	// With SECBIT_NO_SETUID_FIXUP set, setresuid would keep the sets, so
	// clear them explicitly after the uid change.
	if (syscall(SYS_setgroups, 0, NULL) < 0) return fail(s, CORRAL_STEP_CREDS, errno);
	if (syscall(SYS_setresgid, s->gid, s->gid, s->gid) < 0) return fail(s, CORRAL_STEP_CREDS, errno);
	if (syscall(SYS_setresuid, s->uid, s->uid, s->uid) < 0) return fail(s, CORRAL_STEP_CREDS, errno);
	struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
	struct __user_cap_data_struct data[2];
	memset(data, 0, sizeof(data));
	if (syscall(SYS_capset, &hdr, data) < 0) return fail(s, CORRAL_STEP_CAPS, errno);
	if (syscall(SYS_prctl, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
		return fail(s, CORRAL_STEP_CAPS, errno);

	if (syscall(SYS_prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		return fail(s, CORRAL_STEP_NO_NEW_PRIVS, errno);

	if (s->landlock_fd >= 0 && syscall(SYS_landlock_restrict_self, s->landlock_fd, s->landlock_flags) < 0)
		return fail(s, CORRAL_STEP_LANDLOCK, errno);
	return 0;
}

// job_setup is the part that depends on the request: cwd, stdio, every
// other fd closed, rlimits, signals unblocked. It needs no privilege (the
// cwd is entered as the job's uid, under Landlock).
static int job_setup(struct corral_spawn *s) {
	if (syscall(SYS_chdir, s->cwd) < 0) return fail(s, CORRAL_STEP_CWD, errno);
	for (int i = 0; i < 3; i++) {
		if (syscall(SYS_dup3, s->stdio[i], i, 0) < 0 && !(s->stdio[i] == i))
			return fail(s, CORRAL_STEP_STDIO, errno);
	}
	// Every fd above stderr goes: cgroup files, the Landlock ruleset, the
	// init's socket and anything else the init holds.
	if (syscall(SYS_close_range, 3, ~0U, 0) < 0) return fail(s, CORRAL_STEP_FDS, errno);
	// Lowering a hard limit needs no capability; the job's limits are at
	// most the init's (raising one would need CAP_SYS_RESOURCE on the
	// host, which the init never has).
	for (int i = 0; i < s->nrlimits; i++) {
		struct rlimit64 { uint64_t cur, max; } rl = {s->rlimits[i].cur, s->rlimits[i].max};
		if (syscall(SYS_prlimit64, 0, s->rlimits[i].resource, &rl, NULL) < 0)
			return fail(s, CORRAL_STEP_RLIMIT, errno);
	}
	sigset_t none;
	sigemptyset(&none);
	syscall(SYS_rt_sigprocmask, SIG_SETMASK, &none, NULL, 8);
	return 0;
}

static int load_seccomp(struct corral_spawn *s) {
	if (s->seccomp_filter &&
	    syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, s->seccomp_flags, s->seccomp_filter) < 0)
		return fail(s, CORRAL_STEP_SECCOMP, errno);
	return 0;
}

// child is a process spawned on request: the filter goes on last, so that
// the setup may use what the profile forbids (strict has no chdir or dup3).
static int child(void *arg) {
	struct corral_spawn *s = arg;
	priv_setup(s);
	job_setup(s);
	load_seccomp(s);
	return fail(s, CORRAL_STEP_EXEC, exec_search(s));
}

// park_child is a process prepared ahead of its request (corral_park_start):
// everything but the request's own part is done, seccomp filter included
// (unless late_seccomp: for profiles that forbid the request's part), then
// it waits for go. It shares the init's fd table until then, so the
// request's stdio fds are there; its first act after go is to take a
// private copy of the table.
static int park_child(void *arg) {
	struct corral_park *P = arg;
	struct corral_spawn *s = &P->s;
	priv_setup(s);
	// A child of the zygote runs under the zygote's filter already.
	if (!P->late_seccomp && !P->inherited) load_seccomp(s);
	for (;;) {
		uint32_t g = __atomic_load_n(&P->go, __ATOMIC_ACQUIRE);
		if (g == CORRAL_PARK_GO) break;
		if (g != CORRAL_PARK_WAIT) syscall(SYS_exit_group, 0);
		char c;
		syscall(SYS_read, P->wake[0], &c, 1);
	}
	// close_range(~0U, ~0U, CLOSE_RANGE_UNSHARE) unshares and closes
	// nothing: from here on dup3 and close_range touch only our own table.
	if (syscall(SYS_close_range, ~0U, ~0U, CORRAL_CLOSE_RANGE_UNSHARE) < 0)
		return fail(s, CORRAL_STEP_FDS, errno);
	job_setup(s);
	// A profile that forbids what job_setup does gets its filter here, as
	// a child made on request does.
	if (P->late_seccomp) load_seccomp(s);
	return fail(s, CORRAL_STEP_EXEC, exec_search(s));
}

static int map_stack(char **stack) {
	if (*stack) return 0;
	void *p = mmap(NULL, STACK_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
	if (p == MAP_FAILED) return -errno;
	*stack = p;
	return 0;
}

// clone_child clones fn(arg) on stack with flags and no exit signal (the
// init learns of the exit from a pidfd and reaps with __WALL: no SIGCHLD
// wakes a thread of the Go runtime for its handler), through
// clone3 with CLONE_CLEAR_SIGHAND where it can. tid, when set, is the
// parent and child tid word (CLONE_PARENT_SETTID|CLONE_CHILD_CLEARTID).
// Returns the pid or -errno.
// clone_raw clones fn(arg) on stack with flags and no exit signal (the
// init learns of the exit from a pidfd and reaps with __WALL: no SIGCHLD
// wakes a thread of the Go runtime for its handler), through clone3 with
// CLONE_CLEAR_SIGHAND where it can, and with CLONE_INTO_CGROUP when
// s->cgroup_fd is a cgroup v2 directory (s->in_cgroup tells the child
// whether it was born there). tid, when set, is the parent and child tid
// word (CLONE_PARENT_SETTID|CLONE_CHILD_CLEARTID). Returns the pid or
// -errno.
static long clone_raw(unsigned long flags, char *stack, int (*fn)(void *), void *arg, int32_t *tid,
                      struct corral_spawn *s) {
	if (tid) flags |= CLONE_PARENT_SETTID | CLONE_CHILD_CLEARTID;
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	long pid = -1;
	int err = 0;
	s->in_cgroup = 0;
#ifdef CORRAL_HAVE_CLONE3
	if (!clone3_unavailable) {
		struct corral_clone_args a;
		memset(&a, 0, sizeof(a));
		a.flags = flags | CORRAL_CLONE_CLEAR_SIGHAND;
		a.exit_signal = 0;
		a.stack = (uint64_t)(uintptr_t)stack;
		a.stack_size = STACK_SIZE;
		a.parent_tid = a.child_tid = (uint64_t)(uintptr_t)tid;
		s->sighand_cleared = 1;
		if (s->cgroup_fd >= 0 && !into_cgroup_unavailable) {
			// Born in the job cgroup: no cgroup.procs write, no
			// migration.
			a.flags |= CORRAL_CLONE_INTO_CGROUP;
			a.cgroup = (uint64_t)s->cgroup_fd;
			s->in_cgroup = 1;
			pid = clone3_run(&a, sizeof(a), fn, arg);
			if (pid < 0) {
				err = (int)-pid;
				// Kernels before 5.7 (E2BIG for the larger struct),
				// and a caller the kernel will never let clone there:
				// the init is root only in its user namespace, so the
				// cgroup's files (host root's) refuse it (EACCES,
				// EPERM), and a namespace-delegating hierarchy hides
				// the target (ENOENT). From now on the child writes
				// itself in. Other errors only this once.
				if (err == E2BIG || err == ENOSYS || err == EACCES || err == EPERM || err == ENOENT)
					into_cgroup_unavailable = 1;
				s->in_cgroup = 0;
				a.flags &= ~CORRAL_CLONE_INTO_CGROUP;
				a.cgroup = 0;
			}
		}
		if (pid < 0) pid = clone3_run(&a, CORRAL_CLONE_ARGS_VER0, fn, arg);
		if (pid < 0) {
			err = (int)-pid;
			// Kernels before 5.5, and seccomp profiles that hide clone3
			// (ENOSYS, EPERM): the classic clone from now on.
			if (err == ENOSYS || err == EINVAL || err == EPERM) clone3_unavailable = 1;
			else {
				pthread_sigmask(SIG_SETMASK, &old, NULL);
				return -err;
			}
		}
	}
#endif
	if (pid < 0) {
		s->sighand_cleared = 0;
		pid = clone(fn, stack + STACK_SIZE, (int)flags, arg, tid, NULL, tid);
		err = errno;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (pid < 0) return -err;
	return pid;
}

// clone_child is clone_raw for a job process, from the init's thread.
static long clone_child(unsigned long flags, char *stack, int (*fn)(void *), void *arg, int32_t *tid,
                        struct corral_spawn *s) {
	s->err_step = 0;
	s->err_no = 0;
	// The bounding set only limits what an exec can grant, and the init
	// never execs again: emptying it once in the calling thread (caps are
	// per thread) spares every child 64 prctl calls. The init keeps its
	// effective capabilities.
	if (!bset_dropped && drop_bounding_set() == 0) bset_dropped = 1;
	s->bset_empty = bset_dropped;
	return clone_raw(flags, stack, fn, arg, tid, s);
}

struct cgroup_probe {
	char *out;
	int cap, len, err;
};

static int cgroup_probe_child(void *arg) {
	struct cgroup_probe *p = arg;
	int fd = (int)syscall(SYS_openat, AT_FDCWD, "/proc/self/cgroup", O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		p->err = errno;
		syscall(SYS_exit, 0);
	}
	long n = syscall(SYS_read, fd, p->out, (size_t)p->cap);
	if (n < 0) p->err = errno;
	else p->len = (int)n;
	syscall(SYS_exit, 0);
	return 0;
}

int corral_clone_into_cgroup_probe(int cgroup_fd, char *out, int cap, int *in_cgroup) {
	static char *probe_stack;
	int rc = map_stack(&probe_stack);
	if (rc < 0) return rc;
	struct cgroup_probe p = {out, cap, 0, 0};
	struct corral_spawn s;
	memset(&s, 0, sizeof(s));
	s.cgroup_fd = cgroup_fd;
	long pid = clone_raw(CLONE_VM | CLONE_VFORK, probe_stack, cgroup_probe_child, &p, NULL, &s);
	if (pid < 0) return (int)pid;
	int status;
	while (waitpid((pid_t)pid, &status, __WALL) < 0 && errno == EINTR) {}
	*in_cgroup = s.in_cgroup;
	if (p.err) return -p.err;
	return p.len;
}

int corral_spawn_run(struct corral_spawn *s) {
	int rc = map_stack(&child_stack);
	if (rc < 0) return rc;
	return (int)clone_child(CLONE_VM | CLONE_VFORK, child_stack, child, s, NULL, s);
}

static char *park_stack;

int corral_park_start(struct corral_park *P) {
	int rc = map_stack(&park_stack);
	if (rc < 0) return rc;
	if (P->wake[0] <= 0 && syscall(SYS_pipe2, P->wake, O_CLOEXEC) < 0) return -errno;
	P->go = CORRAL_PARK_WAIT;
	P->tid = 0;
	P->inherited = 0;
	long pid = clone_child(CLONE_VM | CLONE_FILES, park_stack, park_child, P, &P->tid, &P->s);
	if (pid < 0) return (int)pid;
	P->pid = (int)pid;
	return 0;
}

// wait_tid_word waits until the kernel clears a tid word
// (CLONE_CHILD_CLEARTID): its task execed or exited.
static void wait_tid_word(int32_t *tid) {
	for (;;) {
		int32_t t = __atomic_load_n(tid, __ATOMIC_ACQUIRE);
		if (t == 0) return;
		syscall(SYS_futex, tid, FUTEX_WAIT, t, NULL, NULL, 0);
	}
}

int corral_park_alive(struct corral_park *P) {
	return P->pid > 0 && __atomic_load_n(&P->tid, __ATOMIC_ACQUIRE) != 0;
}

int corral_park_go(struct corral_park *P) {
	__atomic_store_n(&P->go, CORRAL_PARK_GO, __ATOMIC_RELEASE);
	// A pipe, not a futex: its wake-up is synchronous (the waker is about
	// to sleep), so the scheduler runs the child on this CPU rather than
	// waking an idle one.
	syscall(SYS_write, P->wake[1], "g", 1);
	wait_tid_word(&P->tid);
	int pid = P->pid;
	P->pid = 0;
	return pid;
}

void corral_park_drop(struct corral_park *P) {
	if (P->pid <= 0) return;
	__atomic_store_n(&P->go, CORRAL_PARK_EXIT, __ATOMIC_RELEASE);
	kill(P->pid, SIGKILL);
	int status;
	while (waitpid(P->pid, &status, __WALL) < 0 && errno == EINTR) {}
	P->pid = 0;
}


// --- The zygote (see spawn_linux.h) ---

static void futex_wait_u32(uint32_t *w, uint32_t v) {
	syscall(SYS_futex, w, FUTEX_WAIT, v, NULL, NULL, 0);
}

static void futex_wake_u32(uint32_t *w) {
	syscall(SYS_futex, w, FUTEX_WAKE, 1, NULL, NULL, 0);
}

struct cgns_args {
	const int *fds;
	int n, fd, err;
};

static int cgns_child(void *arg) {
	struct cgns_args *a = arg;
	for (int i = 0; i < a->n; i++) {
		if (syscall(SYS_write, a->fds[i], "0", 1) < 0) {
			a->err = errno;
			syscall(SYS_exit, 0);
		}
	}
	if (syscall(SYS_unshare, CLONE_NEWCGROUP) < 0) {
		a->err = errno;
		syscall(SYS_exit, 0);
	}
	a->fd = (int)syscall(SYS_openat, AT_FDCWD, "/proc/self/ns/cgroup", O_RDONLY | O_CLOEXEC);
	if (a->fd < 0) a->err = errno;
	syscall(SYS_exit, 0);
	return 0;
}

int corral_cgroup_ns(const int *procs_fds, int n) {
	if (n <= 0) return -EINVAL;
	int rc = map_stack(&child_stack);
	if (rc < 0) return rc;
	struct cgns_args a = {procs_fds, n, -1, 0};
	struct corral_spawn s;
	memset(&s, 0, sizeof(s));
	s.cgroup_fd = -1;
	long pid = clone_raw(CLONE_VM | CLONE_VFORK | CLONE_FILES, child_stack, cgns_child, &a, NULL, &s);
	if (pid < 0) return (int)pid;
	int status;
	while (waitpid((pid_t)pid, &status, __WALL) < 0 && errno == EINTR) {}
	if (a.err) {
		if (a.fd >= 0) close(a.fd);
		return -a.err;
	}
	return a.fd;
}

#if defined(__x86_64__)
// The zygote thread shares the thread pointer (and so errno) of the
// init's thread that made it: it uses raw system calls, which report
// -errno and touch no memory of their own.
static inline long zsys(long n, long a, long b, long c, long d, long e) {
	long ret;
	register long r10 __asm__("r10") = d;
	register long r8 __asm__("r8") = e;
	__asm__ volatile("syscall"
	                 : "=a"(ret)
	                 : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8)
	                 : "rcx", "r11", "memory");
	return ret;
}

// zclone is clone(2) with flags, a new stack and the tid words, running
// fn(arg) in the child.
static long zclone(unsigned long flags, char *stack_top, int32_t *tid, int (*fn)(void *), void *arg) {
	return clone_call(SYS_clone, (long)flags, (long)stack_top, (long)tid, (long)tid, 0, fn, arg);
}

static void zdone(struct corral_zygote *Z) {
	__atomic_store_n(&Z->done, 1, __ATOMIC_RELEASE);
	zsys(SYS_futex, (long)&Z->done, FUTEX_WAKE, 1, 0, 0);
}

// zygote_main is the zygote thread: every signal blocked (inherited from
// corral_zygote_start), an empty bounding set and no_new_privs for its
// children, its filter, then requests until the init ends.
static int zygote_main(void *arg) {
	struct corral_zygote *Z = arg;
	for (int cap = 0; cap <= 63; cap++) zsys(SYS_prctl, PR_CAPBSET_DROP, cap, 0, 0, 0);
	zsys(SYS_prctl, PR_SET_NAME, (long)"corral-zygote", 0, 0, 0);
	long rc = zsys(SYS_prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
	if (rc >= 0)
		rc = zsys(SYS_seccomp, SECCOMP_SET_MODE_FILTER, Z->listen ? SECCOMP_FILTER_FLAG_NEW_LISTENER : 0,
		          (long)Z->filter, 0, 0);
	if (rc < 0) {
		Z->err = (int)-rc;
		zdone(Z);
		return 0;
	}
	Z->listener = Z->listen ? (int)rc : -1; // close-on-exec
	zdone(Z);
	for (;;) {
		uint32_t r = __atomic_load_n(&Z->req, __ATOMIC_ACQUIRE);
		if (r == CORRAL_ZY_IDLE) {
			zsys(SYS_futex, (long)&Z->req, FUTEX_WAIT, CORRAL_ZY_IDLE, 0, 0);
			continue;
		}
		if (r != CORRAL_ZY_PARK) return 0;
		struct corral_park *P = Z->P;
		// Like corral_park_start's child: the init's memory and fd
		// table, no exit signal, the tid word for its exec.
		Z->result = zclone(CLONE_VM | CLONE_FILES | CLONE_PARENT_SETTID | CLONE_CHILD_CLEARTID,
		                   Z->child_stack + STACK_SIZE, &P->tid, park_child, P);
		__atomic_store_n(&Z->req, CORRAL_ZY_IDLE, __ATOMIC_RELAXED);
		zdone(Z);
	}
}

int corral_zygote_start(struct corral_zygote *Z, const void *filter) {
	int rc = map_stack(&Z->stack);
	if (rc == 0) rc = map_stack(&Z->child_stack);
	if (rc < 0) return rc;
	Z->filter = filter;
	Z->listener = -1;
	Z->req = CORRAL_ZY_IDLE;
	Z->done = 0;
	Z->err = 0;
	Z->tid = 0;
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	long tid = zclone(CLONE_VM | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM | CLONE_PARENT_SETTID |
	                      CLONE_CHILD_CLEARTID,
	                  Z->stack + STACK_SIZE, &Z->tid, zygote_main, Z);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (tid < 0) return (int)tid;
	while (!__atomic_load_n(&Z->done, __ATOMIC_ACQUIRE)) futex_wait_u32(&Z->done, 0);
	if (Z->err) {
		// It ended: wait for the kernel to clear its tid.
		wait_tid_word(&Z->tid);
		return -Z->err;
	}
	return 0;
}

int corral_zpark_start(struct corral_zygote *Z, struct corral_park *P) {
	if (__atomic_load_n(&Z->tid, __ATOMIC_ACQUIRE) == 0) return -ESRCH;
	if (P->wake[0] <= 0 && syscall(SYS_pipe2, P->wake, O_CLOEXEC) < 0) return -errno;
	struct corral_spawn *s = &P->s;
	// The zygote's children: no CLONE_INTO_CGROUP (the filter hides
	// clone3), the job cgroup through its cgroup.procs files and
	// namespace; its bounding set is empty; the Go handlers it shares
	// with the init go back to default in the child.
	memcpy(s->procs_fds, Z->procs_fds, sizeof(s->procs_fds));
	s->nprocs_fds = Z->nprocs_fds;
	s->cgroup_fd = -1;
	s->in_cgroup = 0;
	s->cgns_fd = Z->cgns_fd;
	s->sighand_cleared = 0;
	s->bset_empty = 1;
	s->err_step = 0;
	s->err_no = 0;
	P->go = CORRAL_PARK_WAIT;
	P->tid = 0;
	P->inherited = 1;
	Z->P = P;
	Z->done = 0;
	__atomic_store_n(&Z->req, CORRAL_ZY_PARK, __ATOMIC_RELEASE);
	futex_wake_u32(&Z->req);
	while (!__atomic_load_n(&Z->done, __ATOMIC_ACQUIRE)) futex_wait_u32(&Z->done, 0);
	if (Z->result < 0) return (int)Z->result;
	P->pid = (int)Z->result;
	return 0;
}
#else
int corral_zygote_start(struct corral_zygote *Z, const void *filter) {
	(void)Z;
	(void)filter;
	return -ENOSYS;
}

int corral_zpark_start(struct corral_zygote *Z, struct corral_park *P) {
	(void)Z;
	(void)P;
	return -ENOSYS;
}
#endif
