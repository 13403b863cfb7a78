package isolate

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"

	seccomp "github.com/seccomp/libseccomp-golang"
	"golang.org/x/sys/unix"
)

// Seccomp profiles are compiled once per process with libseccomp into a
// classic BPF program; the job's child (spawn_linux.c) only hands that
// program to seccomp(SECCOMP_SET_MODE_FILTER) just before exec. Building and
// loading through libseccomp per job costs 0.75 ms, loading a precompiled
// program 0.22 ms (docs/seccomp.md has the profiles and the reasons).

// seccompPrograms builds each profile's program on first use and keeps the
// result (or the error: a build failure does not go away on retry).
var seccompPrograms = map[SeccompProfile]func() ([]unix.SockFilter, error){
	SeccompDefault: sync.OnceValues(func() ([]unix.SockFilter, error) {
		return buildSeccompProgram(SeccompDefault, unix.EPERM, false, false)
	}),
	SeccompStrict: sync.OnceValues(func() ([]unix.SockFilter, error) {
		return buildSeccompProgram(SeccompStrict, unix.EPERM, false, false)
	}),
}

// sysvGetters are the System V IPC calls that make or find an object: a
// job that calls none of them leaves its IPC namespace as it found it
// (it has no id to use any other System V call on, and every profile
// denies POSIX message queues).
var sysvGetters = []string{"shmget", "semget", "msgget"}

// seccompZygoteProgram is the default profile as the zygote loads it, with
// a listener for the init. With sysv, sysvGetters go to the init as user
// notifications, which it lets through, noting that the job touched its
// IPC namespace (corral_reset keeps an untouched one); with net, so do
// AF_INET and AF_INET6 sockets, for the network namespace. With neither
// the listener hears nothing: the zygote still spares each job a filter
// of its own.
func seccompZygoteProgram(sysv, net bool) ([]unix.SockFilter, error) {
	return zygotePrograms[zygoteKey{sysv, net}]()
}

type zygoteKey struct{ sysv, net bool }

var zygotePrograms = func() map[zygoteKey]func() ([]unix.SockFilter, error) {
	m := map[zygoteKey]func() ([]unix.SockFilter, error){}
	for _, sysv := range []bool{false, true} {
		for _, net := range []bool{false, true} {
			m[zygoteKey{sysv, net}] = sync.OnceValues(func() ([]unix.SockFilter, error) {
				return buildSeccompProgram(SeccompDefault, unix.EPERM, sysv, net)
			})
		}
	}
	return m
}()

// seccompAllowsInet reports whether profile p lets a job make some socket
// of a family other than AF_UNIX (an allowing socket rule: the default
// profile's allow AF_INET, AF_INET6 and route netlink sockets).
func seccompAllowsInet(p SeccompProfile) (bool, error) {
	rules, err := seccompRules(p, 0)
	if err != nil {
		return false, err
	}
	for _, r := range rules {
		if r.errno == 0 && slices.Contains(r.names, "socket") {
			return true, nil
		}
	}
	return false, nil
}

// inetRule reports whether r is an allowing socket rule for AF_INET or
// AF_INET6 alone (seccompSocketRules).
func inetRule(r seccompRule) bool {
	if r.errno != 0 || len(r.conds) != 1 || r.conds[0].Argument != 0 || r.conds[0].Op != seccomp.CompareEqual {
		return false
	}
	af := r.conds[0].Operand1
	return af == unix.AF_INET || af == unix.AF_INET6
}

// seccompAllowsSysV reports whether profile p lets a job make System V IPC
// objects (any of sysvGetters allowed).
func seccompAllowsSysV(p SeccompProfile) (bool, error) {
	rules, err := seccompRules(p, 0)
	if err != nil {
		return false, err
	}
	for _, r := range rules {
		if r.errno == 0 && slices.ContainsFunc(r.names, func(n string) bool { return slices.Contains(sysvGetters, n) }) {
			return true, nil
		}
	}
	return false, nil
}

// seccompProgram returns profile p's filter as sock_filter records, ready for
// a struct sock_fprog. It is compiled on the first call for each profile; the
// slice is shared by every caller and must not be modified.
func seccompProgram(p SeccompProfile) ([]unix.SockFilter, error) {
	build, ok := seccompPrograms[p]
	if !ok {
		return nil, fmt.Errorf("%w %q", ErrSeccompProfile, p)
	}
	return build()
}

// seccompRule makes the syscalls in names return errno (0: allowed) when all
// of conds hold (always, without conds). A syscall that no rule matches
// fails with the filter's default errno, EPERM.
type seccompRule struct {
	names []string
	errno unix.Errno
	conds []seccomp.ScmpCondition
}

// seccompAlwaysDenied fail with EPERM in every profile. Each gets an explicit
// rule so that it stays denied even if the default action changes; none may
// appear in an allowing rule (seccompRules checks).
var seccompAlwaysDenied = []string{
	// Debugging and reading or writing other processes.
	"ptrace", "process_vm_readv", "process_vm_writev",
	// Mounts, the new mount API and changing root.
	"mount", "umount", "umount2",
	"fsopen", "fsconfig", "fsmount", "fspick", "move_mount", "open_tree", "open_tree_attr", "mount_setattr",
	"pivot_root", "chroot",
	// Namespaces (clone's namespace flags are denied by its rule). The
	// default profile lets setns reach the kernel for four namespace
	// types, where it needs capabilities a job never has
	// (seccompSetnsTypes).
	"unshare", "setns",
	// Kernel keyrings.
	"keyctl", "add_key", "request_key",
	// Large kernel attack surfaces.
	"bpf", "perf_event_open", "io_uring_setup", "io_uring_enter", "io_uring_register", "userfaultfd",
	// The machine itself: kernels, modules, power, swap, accounting, I/O
	// ports, the kernel log and the clocks.
	"kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
	"reboot", "swapon", "swapoff", "acct", "ioperm", "iopl", "syslog",
	"settimeofday", "clock_settime", "clock_settime64", "clock_adjtime", "clock_adjtime64", "adjtimex",
	// File handles bypass path lookup (the "shocker" container escape).
	"open_by_handle_at", "name_to_handle_at",
}

// seccompDefaultAllowed are allowed without conditions in the default profile:
// what compilers (gcc, g++ with as, ld and cc1, go), interpreters (python,
// node, java), make and shells use. It follows Docker's default profile minus
// seccompAlwaysDenied, minus what needs capabilities a job never has, minus
// interfaces those programs do not use (AIO, POSIX message queues,
// fanotify, vmsplice, NUMA policy, modify_ldt, kcmp, pidfd_getfd).
var seccompDefaultAllowed = []string{
	// Files and descriptors.
	"read", "write", "readv", "writev", "pread64", "pwrite64", "preadv", "pwritev", "preadv2", "pwritev2",
	"open", "openat", "openat2", "creat", "close", "close_range", "lseek", "_llseek",
	"dup", "dup2", "dup3", "fcntl", "flock", "ioctl", "pipe", "pipe2",
	"sendfile", "splice", "tee", "copy_file_range",
	"fsync", "fdatasync", "sync", "syncfs", "sync_file_range", "fadvise64", "readahead", "fallocate",
	"truncate", "ftruncate",
	"stat", "lstat", "fstat", "newfstatat", "statx", "statfs", "fstatfs",
	"access", "faccessat", "faccessat2", "readlink", "readlinkat", "getdents", "getdents64",
	"chdir", "fchdir", "getcwd", "umask",
	"mkdir", "mkdirat", "rmdir", "mknod", "mknodat",
	"link", "linkat", "symlink", "symlinkat", "unlink", "unlinkat", "rename", "renameat", "renameat2",
	"chmod", "fchmod", "fchmodat", "fchmodat2", "chown", "fchown", "fchownat", "lchown",
	"utime", "utimes", "utimensat", "futimesat",
	"getxattr", "lgetxattr", "fgetxattr", "getxattrat", "listxattr", "llistxattr", "flistxattr", "listxattrat",
	"setxattr", "lsetxattr", "fsetxattr", "setxattrat", "removexattr", "lremovexattr", "fremovexattr", "removexattrat",
	"inotify_init", "inotify_init1", "inotify_add_watch", "inotify_rm_watch",
	"memfd_create",
	// Waiting on descriptors.
	"poll", "ppoll", "select", "pselect6",
	"epoll_create", "epoll_create1", "epoll_ctl", "epoll_wait", "epoll_pwait", "epoll_pwait2",
	"eventfd", "eventfd2", "signalfd", "signalfd4",
	"timerfd_create", "timerfd_settime", "timerfd_gettime",
	// Memory. Writable and executable at once is allowed: JITs (V8, the
	// JVM, PyPy) need it.
	"brk", "mmap", "munmap", "mprotect", "mremap", "madvise", "msync", "mincore",
	"mlock", "mlock2", "munlock", "mlockall", "munlockall",
	"pkey_alloc", "pkey_free", "pkey_mprotect", "membarrier", "mseal", "map_shadow_stack", "cachestat",
	// Processes (clone and clone3 have their own rules). execve may run
	// any program; the filter stays on it.
	"fork", "vfork", "execve", "execveat", "exit", "exit_group", "wait4", "waitid",
	"kill", "tkill", "tgkill", "pidfd_open", "pidfd_send_signal",
	"getpid", "getppid", "gettid", "getpgid", "getpgrp", "setpgid", "getsid", "setsid",
	"set_tid_address", "set_robust_list", "rseq", "arch_prctl", "prctl",
	"futex", "futex_waitv", "futex_wait", "futex_wake", "futex_requeue",
	// Signals.
	"rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "rt_sigpending", "rt_sigsuspend", "rt_sigtimedwait",
	"rt_sigqueueinfo", "rt_tgsigqueueinfo", "sigaltstack", "pause", "restart_syscall",
	// Credentials and limits: only ever lowered or kept, as the job has no
	// capabilities.
	"getuid", "geteuid", "getgid", "getegid", "getresuid", "getresgid", "getgroups",
	"setuid", "setgid", "setreuid", "setregid", "setresuid", "setresgid", "setgroups", "setfsuid", "setfsgid",
	"capget", "capset", "getrlimit", "setrlimit", "prlimit64", "getrusage", "times",
	"getpriority", "setpriority", "ioprio_get", "ioprio_set", "get_mempolicy",
	"sched_yield", "sched_getaffinity", "sched_setaffinity", "sched_getparam", "sched_setparam",
	"sched_getscheduler", "sched_setscheduler", "sched_get_priority_max", "sched_get_priority_min",
	"sched_rr_get_interval", "sched_getattr", "sched_setattr", "getcpu",
	// Further restricting oneself.
	"seccomp", "landlock_create_ruleset", "landlock_add_rule", "landlock_restrict_self",
	// Time (reading it; setting it is always denied).
	"clock_gettime", "clock_getres", "clock_nanosleep", "gettimeofday", "time", "nanosleep",
	"alarm", "getitimer", "setitimer",
	"timer_create", "timer_settime", "timer_gettime", "timer_getoverrun", "timer_delete",
	// The system.
	"uname", "sysinfo", "getrandom",
	// System V IPC, in the process's own IPC namespace.
	"shmget", "shmat", "shmdt", "shmctl", "semget", "semop", "semtimedop", "semctl",
	"msgget", "msgsnd", "msgrcv", "msgctl",
	// Sockets (socket and socketpair have their own rules).
	"bind", "connect", "listen", "accept", "accept4", "shutdown",
	"getsockname", "getpeername", "getsockopt", "setsockopt",
	"sendto", "recvfrom", "sendmsg", "recvmsg", "sendmmsg", "recvmmsg",
}

// seccompStrictAllowed are allowed without conditions in the strict profile:
// computation on descriptors the job was given, plus what a dynamically
// linked program (the loader) and a multi-threaded runtime (Go, the JVM,
// OpenMP) need to start. mmap, mprotect, open, openat and clone have
// conditional rules.
var seccompStrictAllowed = []string{
	"read", "write", "readv", "writev", "pread64", "pwrite64", "lseek", "close",
	"fstat", "newfstatat", "statx", "access", "faccessat", "faccessat2",
	"poll", "ppoll", // Rust's runtime polls fds 0-2 at start and aborts on EPERM.
	"brk", "munmap", "mremap", "madvise",
	"execve", "exit", "exit_group",
	"rt_sigreturn", "rt_sigaction", "rt_sigprocmask", "sigaltstack",
	"clock_gettime", "clock_getres", "gettimeofday", "time", "nanosleep", "clock_nanosleep",
	"futex", "getpid", "gettid", "tgkill", "sched_yield", "sched_getaffinity", "getrandom",
	"arch_prctl", "set_tid_address", "set_robust_list", "rseq", "prlimit64",
}

// seccompLateSyscalls are the numbers of syscalls younger than some
// libseccomp releases, used when the installed libseccomp does not know the
// name. Since Linux 5.1 new syscalls have one number on every architecture.
var seccompLateSyscalls = map[string]int{
	"pidfd_send_signal":       unix.SYS_PIDFD_SEND_SIGNAL,
	"io_uring_setup":          unix.SYS_IO_URING_SETUP,
	"io_uring_enter":          unix.SYS_IO_URING_ENTER,
	"io_uring_register":       unix.SYS_IO_URING_REGISTER,
	"open_tree":               unix.SYS_OPEN_TREE,
	"move_mount":              unix.SYS_MOVE_MOUNT,
	"fsopen":                  unix.SYS_FSOPEN,
	"fsconfig":                unix.SYS_FSCONFIG,
	"fsmount":                 unix.SYS_FSMOUNT,
	"fspick":                  unix.SYS_FSPICK,
	"pidfd_open":              unix.SYS_PIDFD_OPEN,
	"clone3":                  unix.SYS_CLONE3,
	"close_range":             unix.SYS_CLOSE_RANGE,
	"openat2":                 unix.SYS_OPENAT2,
	"faccessat2":              unix.SYS_FACCESSAT2,
	"epoll_pwait2":            unix.SYS_EPOLL_PWAIT2,
	"mount_setattr":           unix.SYS_MOUNT_SETATTR,
	"landlock_create_ruleset": unix.SYS_LANDLOCK_CREATE_RULESET,
	"landlock_add_rule":       unix.SYS_LANDLOCK_ADD_RULE,
	"landlock_restrict_self":  unix.SYS_LANDLOCK_RESTRICT_SELF,
	"futex_waitv":             unix.SYS_FUTEX_WAITV,
	"cachestat":               unix.SYS_CACHESTAT,
	"fchmodat2":               unix.SYS_FCHMODAT2,
	"map_shadow_stack":        unix.SYS_MAP_SHADOW_STACK,
	"futex_wake":              unix.SYS_FUTEX_WAKE,
	"futex_wait":              unix.SYS_FUTEX_WAIT,
	"futex_requeue":           unix.SYS_FUTEX_REQUEUE,
	"mseal":                   unix.SYS_MSEAL,
	"setxattrat":              unix.SYS_SETXATTRAT,
	"getxattrat":              unix.SYS_GETXATTRAT,
	"listxattrat":             unix.SYS_LISTXATTRAT,
	"removexattrat":           unix.SYS_REMOVEXATTRAT,
	"open_tree_attr":          unix.SYS_OPEN_TREE_ATTR,
}

// perLinux is personality(2)'s PER_LINUX; 0xffffffff queries.
const perLinux = 0

// seccompNamespaceFlags are clone's flags that make new namespaces.
// CLONE_NEWTIME shares its bit with the exit signal field of clone(2), where
// no valid signal sets it, so masking it costs nothing.
const seccompNamespaceFlags = unix.CLONE_NEWNS | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC | unix.CLONE_NEWUSER |
	unix.CLONE_NEWPID | unix.CLONE_NEWNET | unix.CLONE_NEWCGROUP | unix.CLONE_NEWTIME

// seccompRules returns profile p's rules for architecture arch (which only
// moves clone's flags argument).
func seccompRules(p SeccompProfile, arch seccomp.ScmpArch) ([]seccompRule, error) {
	cloneFlags := uint(0)
	if arch == seccomp.ArchS390 || arch == seccomp.ArchS390X {
		cloneFlags = 1 // s390 swaps clone's first two arguments
	}
	denied := seccompAlwaysDenied
	if p == SeccompDefault {
		// Its own rules (seccompSetnsRules), which an unconditional
		// one would override.
		denied = slices.DeleteFunc(slices.Clone(denied), func(n string) bool { return n == "setns" })
	}
	rules := []seccompRule{
		{names: denied, errno: unix.EPERM},
		// clone3 passes its flags in memory, out of the filter's reach:
		// ENOSYS makes glibc (2.34+) and others fall back to clone.
		{names: []string{"clone3"}, errno: unix.ENOSYS},
		// personality: only the query and PER_LINUX; no other execution
		// domain and no ADDR_NO_RANDOMIZE. Other values get the default
		// action: libseccomp cannot say "neither 0 nor 0xffffffff" in one
		// rule (one comparison per argument).
		{names: []string{"personality"}, conds: []seccomp.ScmpCondition{seccompArg(0, seccomp.CompareEqual, 0xffffffff)}},
		{names: []string{"personality"}, conds: []seccomp.ScmpCondition{seccompArg(0, seccomp.CompareEqual, perLinux)}},
	}
	switch p {
	case SeccompDefault:
		rules = append(rules, seccompRule{names: seccompDefaultAllowed})
		rules = append(rules, seccompSetnsRules()...)
		rules = append(rules, seccompMasked("clone", cloneFlags, seccompNamespaceFlags, 0)...)
		rules = append(rules, seccompSocketRules()...)
	case SeccompStrict:
		rules = append(rules, seccompRule{names: seccompStrictAllowed})
		// Threads only: CLONE_THREAD set (which the kernel only accepts
		// with CLONE_VM and CLONE_SIGHAND), no namespaces. No new
		// processes.
		rules = append(rules, seccompMasked("clone", cloneFlags, seccompNamespaceFlags|unix.CLONE_THREAD, unix.CLONE_THREAD)...)
		// Never writable and executable at once.
		const wx = unix.PROT_WRITE | unix.PROT_EXEC
		for _, name := range []string{"mmap", "mprotect"} {
			for _, prot := range []uint64{0, unix.PROT_WRITE, unix.PROT_EXEC} {
				rules = append(rules, seccompRule{names: []string{name},
					conds: []seccomp.ScmpCondition{seccompArg(2, seccomp.CompareMaskedEqual, wx, prot)}})
			}
			rules = append(rules, seccompRule{names: []string{name}, errno: unix.EPERM,
				conds: []seccomp.ScmpCondition{seccompArg(2, seccomp.CompareMaskedEqual, wx, wx)}})
		}
		// Read-only opens, so that the dynamic loader finds libraries:
		// no write access, no O_CREAT (which creates even with O_RDONLY),
		// no O_TRUNC.
		const writing = unix.O_ACCMODE | unix.O_CREAT | unix.O_TRUNC
		rules = append(rules, seccompMasked("openat", 2, writing, 0)...)
		rules = append(rules, seccompMasked("open", 1, writing, 0)...)
		// fcntl on the descriptor's own flags and duplicates: Go's runtime
		// checks fds 0-2 with F_GETFD before main and dies on EPERM.
		for _, cmd := range []uint64{unix.F_GETFD, unix.F_SETFD, unix.F_GETFL, unix.F_SETFL, unix.F_DUPFD, unix.F_DUPFD_CLOEXEC} {
			rules = append(rules, seccompRule{names: []string{"fcntl"},
				conds: []seccomp.ScmpCondition{seccompArg(1, seccomp.CompareEqual, cmd)}})
		}
		rules = append(rules, seccompRule{names: []string{"socket", "socketpair"}, errno: unix.EAFNOSUPPORT})
	default:
		return nil, fmt.Errorf("%w %q", ErrSeccompProfile, p)
	}
	for _, r := range rules {
		if r.errno != 0 {
			continue
		}
		for _, name := range r.names {
			if name == "setns" && len(r.conds) == 1 && slices.Contains(seccompSetnsTypes, r.conds[0].Operand1) {
				continue // seccompSetnsRules
			}
			if slices.Contains(seccompAlwaysDenied, name) {
				return nil, fmt.Errorf("isolate: seccomp profile %s allows always-denied %s", p, name)
			}
		}
	}
	return rules, nil
}

// seccompSetnsTypes are the namespace types for which the default profile
// lets setns(2) through to the kernel: the job cgroup's cgroup namespace and
// the writable layer's mount, IPC and network namespaces, which the children of the
// sandbox's zygote join under its filter (see spawn_linux.h: the filter is
// compiled once per sandbox instead of once per job). Joining any of them
// needs CAP_SYS_ADMIN (and CAP_SYS_CHROOT for a mount namespace), which a
// job never has: its bounding set is empty, no_new_privs is set and it can
// make no user namespace (clone's and unshare's namespace flags stay
// denied). So for a job, setns fails with EPERM in the kernel's capability
// check instead of in the filter.
var seccompSetnsTypes = []uint64{unix.CLONE_NEWCGROUP, unix.CLONE_NEWNS, unix.CLONE_NEWIPC, unix.CLONE_NEWNET}

// seccompSetnsRules allow setns for exactly one type of seccompSetnsTypes
// (argument 1), and deny explicitly any type (0), the other namespace
// types and two of those at once (a pidfd's form). Other values get the
// default action.
func seccompSetnsRules() []seccompRule {
	eq := func(v uint64) []seccomp.ScmpCondition {
		return []seccomp.ScmpCondition{seccompArg(1, seccomp.CompareEqual, v)}
	}
	masked := func(m uint64) []seccomp.ScmpCondition {
		return []seccomp.ScmpCondition{seccompArg(1, seccomp.CompareMaskedEqual, m, m)}
	}
	rules := []seccompRule{{names: []string{"setns"}, errno: unix.EPERM, conds: eq(0)}}
	allowed := uint64(0)
	for _, t := range seccompSetnsTypes {
		rules = append(rules, seccompRule{names: []string{"setns"}, conds: eq(t)})
		allowed |= t
	}
	for bit := uint64(1); bit <= seccompNamespaceFlags; bit <<= 1 {
		if seccompNamespaceFlags&bit != 0 && allowed&bit == 0 {
			rules = append(rules, seccompRule{names: []string{"setns"}, errno: unix.EPERM, conds: masked(bit)})
		}
	}
	for i, a := range seccompSetnsTypes {
		for _, b := range seccompSetnsTypes[i+1:] {
			rules = append(rules, seccompRule{names: []string{"setns"}, errno: unix.EPERM, conds: masked(a | b)})
		}
	}
	return rules
}

// seccompSocketFamilies are the socket families the default profile allows;
// AF_NETLINK only with protocol NETLINK_ROUTE (interface addresses, which
// getaddrinfo's AI_ADDRCONFIG reads).
var seccompSocketFamilies = []uint64{unix.AF_UNIX, unix.AF_INET, unix.AF_INET6, unix.AF_NETLINK}

// seccompSocketRules allow the families in seccompSocketFamilies and make
// every other socket fail with EAFNOSUPPORT, which programs take as "not
// available here" (libaudit, for one, then carries on without audit).
// libseccomp allows one comparison per argument in a rule and an
// unconditional rule would override the conditional ones, so the denied
// families are spelled out: each value below the largest allowed one, and
// everything above it.
func seccompSocketRules() []seccompRule {
	eq := func(arg uint, v uint64) seccomp.ScmpCondition { return seccompArg(arg, seccomp.CompareEqual, v) }
	var rules []seccompRule
	top := slices.Max(seccompSocketFamilies)
	for af := uint64(0); af <= top; af++ {
		switch {
		case af == unix.AF_NETLINK:
			rules = append(rules,
				seccompRule{names: []string{"socket"}, conds: []seccomp.ScmpCondition{eq(0, af), eq(2, unix.NETLINK_ROUTE)}},
				seccompRule{names: []string{"socket"}, errno: unix.EAFNOSUPPORT,
					conds: []seccomp.ScmpCondition{eq(0, af), seccompArg(2, seccomp.CompareNotEqual, unix.NETLINK_ROUTE)}})
		case slices.Contains(seccompSocketFamilies, af):
			rules = append(rules, seccompRule{names: []string{"socket"}, conds: []seccomp.ScmpCondition{eq(0, af)}})
		default:
			rules = append(rules, seccompRule{names: []string{"socket"}, errno: unix.EAFNOSUPPORT,
				conds: []seccomp.ScmpCondition{eq(0, af)}})
		}
	}
	rules = append(rules,
		seccompRule{names: []string{"socket"}, errno: unix.EAFNOSUPPORT,
			conds: []seccomp.ScmpCondition{seccompArg(0, seccomp.CompareGreater, top)}},
		seccompRule{names: []string{"socketpair"}, conds: []seccomp.ScmpCondition{eq(0, unix.AF_UNIX)}},
		seccompRule{names: []string{"socketpair"}, errno: unix.EAFNOSUPPORT,
			conds: []seccomp.ScmpCondition{seccompArg(0, seccomp.CompareNotEqual, unix.AF_UNIX)}},
	)
	return rules
}

// seccompMasked allows name when (argument arg & mask) == want and denies,
// with EPERM, each way of missing it: one rule per bit of mask that differs
// from want.
func seccompMasked(name string, arg uint, mask, want uint64) []seccompRule {
	rules := []seccompRule{{names: []string{name},
		conds: []seccomp.ScmpCondition{seccompArg(arg, seccomp.CompareMaskedEqual, mask, want)}}}
	for bit := uint64(1); bit != 0 && bit <= mask; bit <<= 1 {
		if mask&bit != 0 {
			rules = append(rules, seccompRule{names: []string{name}, errno: unix.EPERM,
				conds: []seccomp.ScmpCondition{seccompArg(arg, seccomp.CompareMaskedEqual, bit, bit&^want)}})
		}
	}
	return rules
}

// seccompArg is a condition on argument arg. For CompareMaskedEqual the
// values are the mask and the value; otherwise one value. Comparisons are on
// all 64 bits, so a value with stray upper bits matches no allowing rule.
func seccompArg(arg uint, op seccomp.ScmpCompareOp, values ...uint64) seccomp.ScmpCondition {
	c := seccomp.ScmpCondition{Argument: arg, Op: op, Operand1: values[0]}
	if len(values) > 1 {
		c.Operand2 = values[1]
	}
	return c
}

// seccompSyscall resolves name for the native architecture. ok is false for
// a syscall this architecture does not have (libseccomp knows it, but for
// others only); an error means the name is unknown.
func seccompSyscall(name string) (nr seccomp.ScmpSyscall, ok bool, err error) {
	nr, err = seccomp.GetSyscallFromName(name)
	if err != nil {
		if n, late := seccompLateSyscalls[name]; late {
			return seccomp.ScmpSyscall(n), true, nil
		}
		return 0, false, fmt.Errorf("isolate: seccomp: unknown syscall %q: %w", name, err)
	}
	// libseccomp gives negative pseudo numbers to syscalls that exist on
	// other architectures only.
	return nr, nr >= 0, nil
}

// buildSeccompProgram compiles profile p with libseccomp. Syscalls that no
// rule matches fail with errno def (EPERM; tests vary it to see the explicit
// rules at work). Other architectures, x32 and i386 on x86-64 included, kill
// the process. With notifySysV, sysvGetters that p allows notify the
// filter's listener instead (seccompZygoteProgram); with notifyNet, so do
// the AF_INET and AF_INET6 sockets it allows.
func buildSeccompProgram(p SeccompProfile, def unix.Errno, notifySysV, notifyNet bool) ([]unix.SockFilter, error) {
	arch, err := seccomp.GetNativeArch()
	if err != nil {
		return nil, fmt.Errorf("isolate: seccomp: native architecture: %w", err)
	}
	rules, err := seccompRules(p, arch)
	if err != nil {
		return nil, err
	}
	defAction := seccomp.ActErrno.SetReturnCode(int16(def))
	f, err := seccomp.NewFilter(defAction)
	if err != nil {
		return nil, fmt.Errorf("isolate: seccomp: new filter: %w", err)
	}
	defer f.Release()
	if err := f.SetBadArchAction(seccomp.ActKillProcess); err != nil {
		return nil, fmt.Errorf("isolate: seccomp: bad-arch action: %w", err)
	}
	// A binary search over syscall numbers rather than a linear chain
	// (libseccomp 2.5 and later; older ones keep the chain, still correct).
	_ = f.SetOptimize(2)
	for _, r := range rules {
		action := seccomp.ActAllow
		if r.errno != 0 {
			action = seccomp.ActErrno.SetReturnCode(int16(r.errno))
		}
		if action == defAction {
			// libseccomp refuses a rule that repeats the default action;
			// the default gives the same result.
			continue
		}
		for _, name := range r.names {
			nr, ok, err := seccompSyscall(name)
			if err != nil {
				return nil, err
			}
			if !ok {
				continue
			}
			action := action
			if notifySysV && action == seccomp.ActAllow && slices.Contains(sysvGetters, name) {
				action = seccomp.ActNotify
			}
			if notifyNet && name == "socket" && inetRule(r) {
				action = seccomp.ActNotify
			}
			if err := f.AddRuleConditional(nr, action, r.conds); err != nil {
				return nil, fmt.Errorf("isolate: seccomp profile %s: rule for %s: %w", p, name, err)
			}
		}
	}
	b, err := exportSeccompBPF(f)
	if err != nil {
		return nil, fmt.Errorf("isolate: seccomp profile %s: export: %w", p, err)
	}
	prog, err := parseSockFilters(b)
	if err != nil {
		return nil, fmt.Errorf("isolate: seccomp profile %s: %w", p, err)
	}
	return prog, nil
}

// exportSeccompBPF returns the filter's BPF program. ExportBPFMem needs
// libseccomp 2.6; with older ones (Debian 12 has 2.5.4) it fails with
// EOPNOTSUPP and the program goes through a memfd instead. A memfd rather
// than a pipe: libseccomp writes the whole program before we read, and a
// pipe holds only 64 KiB.
func exportSeccompBPF(f *seccomp.ScmpFilter) ([]byte, error) {
	b, err := f.ExportBPFMem()
	if err == nil || !errors.Is(err, unix.EOPNOTSUPP) {
		return b, err
	}
	fd, err := unix.MemfdCreate("corral-seccomp", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("memfd_create: %w", err)
	}
	mf := os.NewFile(uintptr(fd), "corral-seccomp")
	defer mf.Close()
	if err := f.ExportBPF(mf); err != nil {
		return nil, err
	}
	st, err := mf.Stat()
	if err != nil {
		return nil, err
	}
	b = make([]byte, st.Size())
	if _, err := mf.ReadAt(b, 0); err != nil && err != io.EOF {
		return nil, err
	}
	return b, nil
}

// sockFilterSize is the size of struct sock_filter.
const sockFilterSize = 8

// parseSockFilters decodes a BPF program as the kernel lays it out: struct
// sock_filter records {u16 code; u8 jt; u8 jf; u32 k} in native byte order.
func parseSockFilters(b []byte) ([]unix.SockFilter, error) {
	n := len(b) / sockFilterSize
	switch {
	case len(b)%sockFilterSize != 0:
		return nil, fmt.Errorf("BPF program of %d bytes is not whole instructions", len(b))
	case n == 0:
		return nil, errors.New("empty BPF program")
	case n > unix.BPF_MAXINSNS:
		return nil, fmt.Errorf("BPF program of %d instructions exceeds the kernel's %d", n, unix.BPF_MAXINSNS)
	}
	prog := make([]unix.SockFilter, n)
	for i := range prog {
		r := b[i*sockFilterSize:]
		prog[i] = unix.SockFilter{
			Code: binary.NativeEndian.Uint16(r[0:]),
			Jt:   r[2],
			Jf:   r[3],
			K:    binary.NativeEndian.Uint32(r[4:]),
		}
	}
	return prog, nil
}
