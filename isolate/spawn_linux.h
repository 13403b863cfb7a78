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
	int mnt_fd, ipc_fd;      // the writable layer's mount and IPC namespaces
	int net_fd;              // its network namespace, -1: the init's
	const char *cwd;         // working directory inside the new root
	int stdio[3];            // fds that become 0, 1, 2
	int procs_fds[CORRAL_MAX_PROCS_FDS]; // cgroup.procs files of the job cgroup
	int nprocs_fds;
	int cgroup_fd;  // the job cgroup's v2 directory for CLONE_INTO_CGROUP, -1: none (v1)
	int cgns_fd;    // a cgroup namespace rooted at the job cgroup to join, -1: unshare one
	int in_cgroup;  // set for the child: clone3 made it in the job cgroup
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

// What every reset of the writable layer builds (see corral_reset); set
// once from the init's config.
struct corral_etc_file {
	const char *name;
	const void *data;
	size_t len;
};
struct corral_layer {
	const char *rw;       // the writable layer's tmpfs mount point ("/rw")
	const char *upper;    // its overlay upper and work directories
	const char *work;
	const char *root;     // the overlay's mount point, the job root until it moves onto /
	const char *proc;     // the stage's /proc and /dev trees
	const char *dev;
	const char *ovl_opts; // the overlay's mount options
	uint32_t uid, gid;    // the owner of /work
	const struct corral_etc_file *etc; // written into /etc of every layer
	int netc;
	// Landlock (abi 0: none): the ruleset's handled rights and scopes,
	// and the rights of the read-only rule (the root) and of the
	// read-write ones (/tmp, /work, /dev).
	int ll_abi;
	uint64_t ll_handled_fs, ll_scoped, ll_ro, ll_rw;
	int64_t disk; // the size of a layer made without a reset packet (Config.DiskBytes)
	int keep;     // a layer its job left as built may serve the next (Config.FreshLayers unset)
};

// A writable inode of a layer as statx shows it: what a job could see of
// it. Two equal stamps, change times included, mean the inode is as it
// was (see corral_reset).
struct corral_stamp {
	uint64_t ino, size;
	uint32_t mode, uid, gid, nlink;
	int64_t atime, mtime, ctime;
	uint32_t atime_ns, mtime_ns, ctime_ns, pad;
};
#define CORRAL_MAX_STAMPS 40

// The current layer, as corral_reset needs it to tell whether its job
// left it as built.
struct corral_kept {
	// ok: -1 not yet known (the first layer's child probes the kernel),
	// 0 never kept (Config.FreshLayers, or the kernel cannot tell), 1
	// kept when unchanged.
	int ok;
	int64_t disk; // the size of the layer's tmpfs
	// O_PATH fds of the overlay's upper and work directories and of
	// /dev/shm's root, and their inodes' stamps when the layer was built
	// (nstamps 0: not to be kept).
	int upper_fd, work_fd, shm_fd;
	int nstamps;
	struct corral_stamp stamps[CORRAL_MAX_STAMPS];
	// The inode numbers of the last unnamed files the init made in the
	// layer's tmpfs and in /dev/shm (see probe_ino in reset_linux.c).
	uint64_t probe[2];
};

// corral_reset replaces the writable layer (reset_linux.c): it drops the
// old layer's namespaces, then a short-lived child in new mount and IPC
// namespaces mounts a fresh tmpfs of disk bytes with the upper directories
// and the /etc files, the overlay over the image and the job root's /proc,
// /dev and /dev/shm, all in its namespace only, and makes the layer's
// Landlock ruleset. The new namespaces and ruleset replace the old ones in
// L->tmpl, the job root's fd L->root_fd. A layer that its job left exactly
// as it was built (same size, every writable inode's stamp unchanged) is
// kept, and so is an IPC namespace that no job process touched
// (ipc_touched); after a job that made an AF_INET or AF_INET6 socket
// (net_touched) the child also makes a network namespace, when own_net.
// Returns 0 for a new layer, 1 for a kept one, or -errno and the failed
// step's name.
struct corral_loop;
int corral_reset(struct corral_loop *L, int64_t disk, const char **step);

// corral_clone_into_cgroup_probe clones a child as a job process is cloned,
// with cgroup_fd as its cgroup v2 directory; the child reads
// /proc/self/cgroup into out. Returns the bytes read or -errno; in_cgroup
// says whether clone3 placed the child with CLONE_INTO_CGROUP.
int corral_clone_into_cgroup_probe(int cgroup_fd, char *out, int cap, int *in_cgroup);

// corral_spawn_run clones the child with CLONE_VM|CLONE_VFORK (the caller is
// suspended until the child execs or exits) into a new mount and IPC
// namespace. It returns the child's pid, or -errno when clone fails. When the
// child fails before exec, it exits 127 and err_step/err_no say why.
int corral_spawn_run(struct corral_spawn *s);

// A job process prepared ahead of its request: cloned with CLONE_VM and
// CLONE_FILES, it runs the setup that does not depend on the request
// (session, cgroup, namespaces, credentials, capabilities, no_new_privs,
// Landlock, the seccomp filter unless late_seccomp) and waits for a byte on
// the wake pipe with go set. corral_park_go then gives it the request in s
// (cwd, stdio, rlimits, argv, envp): it takes a private fd table and execs.
// So the costly setup is off the job's path.
#define CORRAL_PARK_WAIT 0
#define CORRAL_PARK_GO 1
#define CORRAL_PARK_EXIT 2
struct corral_park {
	struct corral_spawn s;
	int32_t tid; // the child's pid, cleared by the kernel when it execs or exits
	uint32_t go; // CORRAL_PARK_*
	int pid;     // 0: none
	int profile; // the index of its seccomp program in the loop's profiles
	int late_seccomp; // load the filter after the request's part, not before the wait
	int inherited;    // made by the zygote: its filter is the zygote's, not loaded
	int wake[2]; // a pipe: go is announced by a byte on it
};

// corral_park_start clones a parked child for P->s (filled from the
// layer's template and a profile). Returns 0 or -errno.
int corral_park_start(struct corral_park *P);
// corral_park_alive: the parked child has neither exited nor failed.
int corral_park_alive(struct corral_park *P);
// corral_park_go releases the parked child with the request in P->s and
// waits until it execs or exits (err_step then says why). Returns its pid.
int corral_park_go(struct corral_park *P);
// corral_park_drop kills and reaps the parked child, if any.
void corral_park_drop(struct corral_park *P);

// The zygote: a thread of the init (a raw clone, unknown to the Go
// runtime; every signal blocked) that loads one profile's seccomp filter
// once and clones that profile's parked children, which inherit the
// filter instead of loading their own. Each load compiles the program
// (the JIT, whose image goes in and out of executable memory through
// text_poke) and each exit frees it: 0.2-0.3 ms per job on a VM. The
// zygote stays in the init's namespaces and cgroup: its children join the
// job cgroup (its cgroup.procs files), the job's cgroup namespace
// (cgns_fd) and the layer's mount, IPC and network namespaces with setns,
// which the profile allows for those four namespace types only (and which
// needs CAP_SYS_ADMIN, gone before exec). kill(-1) spares it: it is in the
// init's thread group.
#define CORRAL_ZY_IDLE 0
#define CORRAL_ZY_PARK 1
struct corral_zygote {
	uint32_t req;   // futex word: CORRAL_ZY_*, set by the init
	uint32_t done;  // futex word: 1 once a request is served
	struct corral_park *P;
	long result;    // the parked child's pid, or -errno
	int32_t tid;    // the zygote thread; the kernel clears it when it ends
	int err;        // why its setup failed (it then ends)
	const void *filter; // struct sock_fprog*
	int listen;         // load the filter with a listener (SECCOMP_FILTER_FLAG_NEW_LISTENER)
	int listener;       // the filter's listener (-1: none), in the init's fd table
	char *stack;        // the zygote's own stack
	char *child_stack;  // its children's (one at a time)
	// What its children join the job cgroup with: the cgroup.procs files
	// and a cgroup namespace rooted there.
	int procs_fds[CORRAL_MAX_PROCS_FDS];
	int nprocs_fds;
	int cgns_fd;
};

// corral_zygote_start starts the zygote for filter, with Z's cgroup
// fields set. Returns 0 or -errno (no zygote then: parked children load
// their own filter).
int corral_zygote_start(struct corral_zygote *Z, const void *filter);
// corral_zpark_start has the zygote clone a parked child for P->s (the
// job cgroup fields come from Z). Returns 0 or -errno.
int corral_zpark_start(struct corral_zygote *Z, struct corral_park *P);
// corral_cgroup_ns makes a cgroup namespace rooted at the job cgroup: a
// short-lived child joins the cgroup through the n cgroup.procs files in
// procs_fds, as the zygote's children will, unshares one and opens it.
// Returns its fd or -errno.
int corral_cgroup_ns(const int *procs_fds, int n);

// --- The init's job path in C (loop_linux.c) ---

#define CORRAL_MAX_PROFILES 4
#define CORRAL_MAX_PKT_FDS 8
// While a job runs, orphans are reaped every CORRAL_REAP_MS, backing off
// to CORRAL_REAP_MAX_MS while none exits; the main process's exit wakes
// the loop at once.
#define CORRAL_REAP_MS 10
#define CORRAL_REAP_MAX_MS 160

// Binary packets from the parent; JSON messages start with '{'.
#define CORRAL_PKT_SPAWN 1
#define CORRAL_PKT_KILL 2
// A park packet: the tag, then the seccomp profile's NUL-terminated name.
// It asks for a prepared process (corral_park) for the next request; the
// parent sends it once it has read the cgroup counters the next process
// counts from, so the prepared process's setup is that process's.
#define CORRAL_PKT_PARK 3
// A reset packet (struct corral_reset_pkt, then the NUL-terminated name of
// the seccomp profile to prepare the next process for): a fresh writable
// layer of disk_bytes (corral_reset), answered by a ready reply or an
// error.
#define CORRAL_PKT_RESET 4
// Binary replies to the parent (errors stay JSON). A spawn is answered
// by an error, or by the exit of its process.
#define CORRAL_REPLY_EXITED 0x82
#define CORRAL_REPLY_READY 0x83

struct corral_reset_pkt {
	uint8_t tag, pad[7];
	int64_t disk_bytes;
};

// A ready reply. With CORRAL_READY_PARKED in flags the init has prepared
// the next process (corral_park), after reading the job cgroup's memory
// usage, memory_usage: the usage that process counts from.
#define CORRAL_READY_PARKED 1
#define CORRAL_READY_KEPT 2 // the reset kept the layer (corral_reset)
struct corral_ready_reply {
	uint8_t tag, flags, pad[6];
	int64_t memory_usage;
};

// An exited reply. With CORRAL_EXITED_COUNTERS in flags it carries the job
// cgroup's counters, read by the init once everything of the process was
// reaped (struct corral_counter), in the order of Go's cgroupCounters.
#define CORRAL_EXITED_COUNTERS 1
#define CORRAL_NCOUNTERS 7
struct corral_exited_reply {
	uint8_t tag, flags, pad[2];
	uint32_t wait_status;
	int64_t wall_ns;
	int64_t counters[CORRAL_NCOUNTERS];
};

// A counter the init reads for the exited reply: field (an index into
// counters) is the number in the file fd, or the value of its line "key N"
// (key non-empty), times scale. Several may share a file.
#define CORRAL_MAX_COUNTERS 12
struct corral_counter {
	int field, fd;
	char key[24];
	int64_t scale;
};

// corral_read_counters reads the n counters into out (zeroed first; a key
// that is missing reads as 0, a file holding "max" as INT64_MAX). Returns
// 0, or -1 when a file cannot be read or parsed.
int corral_read_counters(const struct corral_counter *c, int n, int64_t *out);

// A spawn packet: this header, then NUL-terminated strings: the seccomp
// profile's name, the working directory, argc arguments, envc environment
// entries. It carries the stdin, stdout and stderr fds.
#define CORRAL_SPAWN_RESET_AFTER 1 // in flags: reset once the process is done
struct corral_spawn_pkt {
	uint8_t tag, flags, pad[2];
	uint32_t nrlimits, argc, envc;
	struct {
		int32_t resource;
		uint32_t pad;
		uint64_t cur, max;
	} rlimits[CORRAL_NRLIMITS];
};

// How many empty IPC namespaces of old layers a sandbox's init holds
// before it closes them together: the kernel frees namespaces closed
// together after one RCU grace period.
#define CORRAL_IPC_BATCH 8

struct corral_loop {
	int sock; // the control socket
	// What every job process of the current writable layer gets (the
	// per-spawn fields are filled from each packet).
	struct corral_spawn tmpl;
	const char *profile_names[CORRAL_MAX_PROFILES];
	const void *profiles[CORRAL_MAX_PROFILES]; // struct sock_fprog*
	int nprofiles;
	// Packets land in buf; one returned for Go leaves its fds here.
	char *buf;
	size_t cap;
	int fds[CORRAL_MAX_PKT_FDS];
	int nfds;
	// The running job's main process (pid 0: none).
	int pid, pidfd, reap_ms;
	// Its stdout and stderr, closed just before its reply (-1: none).
	int out_fds[2];
	int64_t start_ns;
	char **vec; // argv and envp pointers
	size_t veccap;
	// The parked child, made on a park packet when no job runs.
	// late_seccomp[i]: profile i forbids what a parked child does once its
	// filter is on (strict has no chdir, dup3 or close_range), so its
	// filter is loaded after the request's part, on the job's path.
	struct corral_park park;
	unsigned char late_seccomp[CORRAL_MAX_PROFILES];
	// The zygote of profile zy_profile (-1: none), which clones that
	// profile's parked children.
	struct corral_zygote zy;
	int zy_profile;
	// How a reset builds the next writable layer, and the current one's
	// job root (O_PATH; the init's own mount namespace does not hold it),
	// through which the init writes and collects the job's files.
	struct corral_layer layer;
	int root_fd;
	// Set by a spawn packet with CORRAL_SPAWN_RESET_AFTER: reset once its
	// process is done, to layer.disk.
	int reset_after;
	// The seccomp profile of the last spawn (its index; -1: none yet): a
	// reset after a Last process prepares the next process for it.
	int last_profile;
	// The job cgroup's memory usage file (v1 memory.usage_in_bytes, v2
	// memory.current; -1: none). After a reset the init reads it and then
	// prepares the next process itself, so the parent need not ask.
	int usage_fd;
	// The job cgroup's counters, read for each exited reply (nctr 0:
	// the parent reads them).
	struct corral_counter ctr[CORRAL_MAX_COUNTERS];
	int nctr;
	// Old layers' IPC namespaces that a reset found empty, closed
	// together once CORRAL_IPC_BATCH wait (see corral_reset).
	int ipc_spent[CORRAL_IPC_BATCH];
	int nipc_spent;
	struct corral_kept kept;
	// unix_base: the AF_UNIX sockets of the sandbox's network namespace
	// when its first layer was built (-1: not yet). A reset finds more
	// only when a job's sockets outlived it (see corral_reset).
	int unix_base;
	int unix_fd; // /proc/self/net/unix, kept open (-1: not yet)
	// pid_base: the sandbox's pid namespace's last pid when its first
	// layer was built; each reset puts it back (see corral_reset).
	long pid_base;
	int pid_fd; // the pid namespace's ns_last_pid, open for writing (-1: none)
	// sysv[i]: profile i lets a job make System V IPC objects.
	unsigned char sysv[CORRAL_MAX_PROFILES];
	// ipc_touched: since the IPC namespace was made, a job process may
	// have made or looked up a System V object: the zygote's listener
	// heard of a call, or a process of a profile in sysv ran outside the
	// zygote. corral_reset makes a new IPC namespace only then.
	int ipc_touched;
	// The same for the network namespace: inet[i], profile i lets a job
	// make AF_INET or AF_INET6 sockets; net_touched, a job process may
	// have made one since the namespace was made. own_net: the layers may
	// have network namespaces of their own (not when the parent wired the
	// init's for egress); corral_reset then makes a new one for the next
	// job after a job that touched it, so that no counter, socket or
	// port of one job's traffic is there for the next.
	unsigned char inet[CORRAL_MAX_PROFILES];
	int net_touched;
	int own_net;
};


// corral_loop_run serves spawn, kill, park and reset packets and reaps the running job,
// reporting exits and errors itself. It returns the length of a
// packet it leaves to the caller (in buf, fds in fds), 0 when the parent
// hung up, or -errno.
long corral_loop_run(struct corral_loop *L);

// corral_quiet_sigchld makes SIGCHLD's action the default (ignore without
// reaping): no handler runs when a job process exits.
void corral_quiet_sigchld(void);

#endif
