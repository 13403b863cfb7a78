// The job's child, between clone and exec. See spawn_linux.c.
#ifndef CORRAL_SPAWN_H
#define CORRAL_SPAWN_H

#include <stdint.h>

#define CORRAL_MAX_PROCS_FDS 8
#define CORRAL_NRLIMITS 8

// Steps of the child's setup, reported back when one fails.
enum corral_step {
	CORRAL_STEP_NONE = 0,
	CORRAL_STEP_SETSID,
	CORRAL_STEP_CGROUP,
	CORRAL_STEP_CGROUPNS,
	CORRAL_STEP_NAMESPACES,
	CORRAL_STEP_CWD,
	CORRAL_STEP_STDIO,
	CORRAL_STEP_RLIMIT,
	CORRAL_STEP_CAPS,
	CORRAL_STEP_SECUREBITS,
	CORRAL_STEP_CREDS,
	CORRAL_STEP_NO_NEW_PRIVS,
	CORRAL_STEP_LANDLOCK,
	CORRAL_STEP_FDS,
	CORRAL_STEP_SECCOMP,
	CORRAL_STEP_EXEC,
	CORRAL_STEP_CLONE,
};

struct corral_rlimit {
	int resource;
	uint64_t cur, max;
};

struct corral_spawn {
	// In: what to run.
	const char *path;        // argv[0] as given; searched in search_path when it has no '/'
	char *const *argv;
	char *const *envp;
	const char *search_path; // PATH of the job's environment
	const char *root;        // the job root as the init sees it ("/root")
	int mnt_fd, ipc_fd;      // the writable layer's mount and IPC namespaces
	const char *cwd;         // working directory inside the new root
	int stdio[3];            // fds that become 0, 1, 2
	int procs_fds[CORRAL_MAX_PROCS_FDS]; // cgroup.procs files of the job cgroup
	int nprocs_fds;
	struct corral_rlimit rlimits[CORRAL_NRLIMITS];
	int nrlimits;
	uint32_t uid, gid;       // credentials inside the user namespace
	int landlock_fd;         // -1: none
	unsigned int landlock_flags;
	const void *seccomp_filter; // struct sock_fprog*, NULL: none
	unsigned int seccomp_flags;
	// Out: where the setup failed (step 0: it did not).
	int err_step;
	int err_no;
	// Set by corral_spawn_run for the child: the kernel already reset
	// the signal handlers (clone3 CLONE_CLEAR_SIGHAND), the caller's
	// bounding set is already empty.
	int sighand_cleared;
	int bset_empty;
};

// corral_layer_ns makes the mount and IPC namespaces of a new writable
// layer: a short-lived child pivots into root in new namespaces and opens
// them; their fds land in the caller's table. Returns 0 or -errno.
int corral_layer_ns(const char *root, int *mnt_fd, int *ipc_fd);

// corral_spawn_run clones the child with CLONE_VM|CLONE_VFORK (the caller is
// suspended until the child execs or exits) into a new mount and IPC
// namespace. It returns the child's pid, or -errno when clone fails. When the
// child fails before exec, it exits 127 and err_step/err_no say why.
int corral_spawn_run(struct corral_spawn *s);

#endif
