// The reset of the writable layer, in C: the init serves reset packets in
// its loop (loop_linux.c) without entering Go, so a job's turnaround wakes
// none of the init's Go runtime threads.
//
// The layer is built by a short-lived child (CLONE_VM|CLONE_VFORK, sharing
// the init's memory and fd table) in new mount and IPC namespaces: every
// mount of the layer lives in that namespace only. The init's own mount
// table never changes after setup, and the old layer goes in one piece
// with its namespace, in the one RCU grace period of that teardown (a
// detach in the init's namespace would cost another). Like the job's
// child in spawn_linux.c, the layer child only issues system calls and
// writes into the caller's memory.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "spawn_linux.h"

#ifndef SYS_landlock_create_ruleset
#define SYS_landlock_create_ruleset 444
#endif
#ifndef SYS_landlock_add_rule
#define SYS_landlock_add_rule 445
#endif
#define CORRAL_LANDLOCK_RULE_PATH_BENEATH 1

// struct landlock_ruleset_attr as of ABI 6; older kernels take a prefix.
struct ll_ruleset_attr {
	uint64_t handled_access_fs, handled_access_net, scoped;
};

struct ll_path_beneath_attr {
	uint64_t allowed_access;
	int32_t parent_fd;
} __attribute__((packed));

// The layer child's stack: its path buffers live there.
#define LAYER_STACK_SIZE (128 * 1024)
static char *layer_stack;

struct layer_args {
	const struct corral_layer *Y;
	int64_t disk;
	int old_ipc_fd; // the last layer's IPC namespace (-1: none)
	int keep;       // the layer stays
	int new_ipc;    // make a new IPC namespace
	int new_net;    // make a new network namespace
	int probe;      // find out whether the kernel lets corral_reset keep layers
	int stamp;      // the new layer is to be stamped
	// Out.
	int mnt_fd, ipc_fd, root_fd, landlock_fd;
	int net_fd, unix_fd; // the new network namespace, its /proc/net/unix
	int upper_fd, work_fd, shm_fd;
	int old_ipc_empty; // old_ipc_fd's namespace holds no System V object
	int fine_ctime, xino; // the probe's findings
	int err;
	const char *step;
};

static int layer_fail(struct layer_args *a, const char *step) {
	a->err = errno;
	a->step = step;
	syscall(SYS_exit, 0);
	return 0;
}

// sysvipc_empty reports whether the caller's IPC namespace holds no System
// V object: the counts SHM_INFO, SEM_INFO and MSG_INFO give are those of
// the caller's namespace (three system calls; reading /proc/sysvipc cost
// five times as much). A failure counts as not empty.
static int sysvipc_empty(void) {
	struct shm_info shm;
	struct seminfo sem;
	struct msginfo msg;
	memset(&shm, 0, sizeof(shm));
	memset(&sem, 0, sizeof(sem));
	memset(&msg, 0, sizeof(msg));
	if (syscall(SYS_shmctl, 0, SHM_INFO, &shm) < 0 || shm.used_ids != 0) return 0;
	if (syscall(SYS_semctl, 0, 0, SEM_INFO, &sem) < 0 || sem.semusz != 0) return 0;
	if (syscall(SYS_msgctl, 0, MSG_INFO, &msg) < 0 || msg.msgpool != 0) return 0;
	return 1;
}

// mkdir_as makes path with mode exactly (the umask aside) and owner.
static int mkdir_as(const char *path, mode_t mode, uint32_t uid, uint32_t gid) {
	if (mkdir(path, mode) < 0) return -1;
	// The init's umask is 022 and it creates as 0:0: only what neither
	// gives needs another call.
	if ((mode & (S_ISVTX | 022)) && chmod(path, mode) < 0) return -1;
	if ((uid || gid) && lchown(path, uid, gid) < 0) return -1;
	return 0;
}

static int join(char *buf, size_t cap, const char *a, const char *b) {
	int n = snprintf(buf, cap, "%s%s", a, b);
	if (n < 0 || (size_t)n >= cap) {
		errno = ENAMETOOLONG;
		return -1;
	}
	return 0;
}

static int write_all(int fd, const char *p, size_t n) {
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR) continue;
		if (w < 0) return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static int same_ctime(const struct statx *a, const struct statx *b) {
	return a->stx_ctime.tv_sec == b->stx_ctime.tv_sec && a->stx_ctime.tv_nsec == b->stx_ctime.tv_nsec;
}

// fine_ctime makes and removes a subdirectory of dir, rounds times, each
// right after a statx of dir, and reports whether each change moved dir's
// change time. That is the kernel's multigrain timestamps (tmpfs since
// Linux 6.13): a change to an inode whose times were read since its last
// change takes a fine-grained time, later than every time handed out
// before. Without them a change within the same clock tick as the last
// one leaves the time as it was, and with coarse times alone a change
// lands in the same tick almost every time.
//
// A round also hands out a fine-grained time, which the kernel keeps as a
// floor for every time it hands out after: once a round is done, every
// change anywhere takes a later time than any inode of the layer had
// (corral_reset).
static int fine_ctime(const char *dir, int rounds) {
	char path[4096];
	struct statx before, after;
	if (join(path, sizeof(path), dir, "/.ctime-probe") < 0) return 0;
	for (int i = 0; i < rounds; i++) {
		if (statx(AT_FDCWD, dir, AT_SYMLINK_NOFOLLOW, STATX_CTIME | STATX_MTIME, &before) < 0) return 0;
		if (mkdir(path, 0700) < 0) return 0;
		int moved = statx(AT_FDCWD, dir, AT_SYMLINK_NOFOLLOW, STATX_CTIME | STATX_MTIME, &after) == 0 &&
		            !same_ctime(&before, &after);
		if (rmdir(path) < 0 || !moved) return 0;
	}
	return 1;
}

// has_option reports whether the comma-separated list opts holds opt.
static int has_option(const char *opts, const char *opt) {
	size_t n = strlen(opt);
	for (const char *p = opts; p && *p; p = strchr(p, ',') ? strchr(p, ',') + 1 : NULL)
		if (strncmp(p, opt, n) == 0 && (p[n] == ',' || p[n] == 0)) return 1;
	return 0;
}

// xino_on reports whether the topmost mount on mnt, as the mountinfo under
// proc lists it, has the overlay option xino=on. Without xino an overlay
// numbers its directories in the order they are first looked up, which a
// kept layer would pass on from one job to the next. The kernel may turn
// the asked-for option off (on 32-bit machines, say) without failing the
// mount, so this reads what it did.
static int xino_on(const char *proc, const char *mnt) {
	static char buf[1 << 16];
	char path[4096];
	if (join(path, sizeof(path), proc, "/self/mountinfo") < 0) return 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) return 0;
	size_t n = 0;
	ssize_t r = 0;
	while (n < sizeof(buf) - 1 && (r = read(fd, buf + n, sizeof(buf) - 1 - n)) != 0) {
		if (r < 0 && errno == EINTR) continue;
		if (r < 0) break;
		n += (size_t)r;
	}
	close(fd);
	if (r != 0) return 0; // a read error, or more than the buffer holds
	buf[n] = 0;
	size_t mlen = strlen(mnt);
	int on = 0;
	for (char *line = buf; line && *line;) {
		char *end = strchr(line, '\n');
		if (end) *end = 0;
		// Field 5 is the mount point; the super options follow " - ",
		// the file system type and the source.
		char *f = line;
		for (int i = 0; i < 4 && f; i++)
			if ((f = strchr(f, ' '))) f++;
		char *sep = f ? strstr(f, " - ") : NULL;
		if (sep && strncmp(f, mnt, mlen) == 0 && f[mlen] == ' ') {
			char *o = strchr(sep + 3, ' ');
			if (o) o = strchr(o + 1, ' ');
			on = o && has_option(o + 1, "xino=on");
		}
		line = end ? end + 1 : NULL;
	}
	return on;
}

// etc_files writes the layer's /etc files into the upper directory.
static int etc_files(const struct corral_layer *Y) {
	char path[4096];
	if (join(path, sizeof(path), Y->upper, "/etc") < 0 || mkdir(path, 0755) < 0) return -1;
	size_t n = strlen(path);
	for (int i = 0; i < Y->netc; i++) {
		int k = snprintf(path + n, sizeof(path) - n, "/%s", Y->etc[i].name);
		if (k < 0 || (size_t)k >= sizeof(path) - n) {
			errno = ENAMETOOLONG;
			return -1;
		}
		int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
		if (fd < 0) return -1;
		int rc = write_all(fd, Y->etc[i].data, Y->etc[i].len);
		int err = errno;
		close(fd);
		if (rc < 0) {
			errno = err;
			return -1;
		}
	}
	return 0;
}

static int add_rule(int ruleset, int dir, const char *name, uint64_t access) {
	int fd = openat(dir, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) return -1;
	struct ll_path_beneath_attr a = {access, fd};
	long rc = syscall(SYS_landlock_add_rule, ruleset, CORRAL_LANDLOCK_RULE_PATH_BENEATH, &a, 0);
	int err = errno;
	close(fd);
	errno = err;
	return rc < 0 ? -1 : 0;
}

// landlock_ruleset makes the ruleset of the layer whose job root is root:
// read and execute in the whole job root, write in its /tmp and /work and
// in /dev (a read-only mount of harmless device files, and /dev/shm).
// Rules hold inodes, so each layer needs its own. Returns its fd, -1
// without Landlock; -1 with errno set on failure.
static int landlock_ruleset(const struct corral_layer *Y, int root) {
	if (Y->ll_abi <= 0) {
		errno = 0;
		return -1;
	}
	struct ll_ruleset_attr attr = {Y->ll_handled_fs, 0, Y->ll_scoped};
	size_t size = Y->ll_abi >= 6 ? sizeof(attr) : Y->ll_abi >= 4 ? 16 : 8;
	int fd = (int)syscall(SYS_landlock_create_ruleset, &attr, size, 0);
	if (fd < 0) return -1;
	if (add_rule(fd, root, ".", Y->ll_ro) < 0 || add_rule(fd, root, "tmp", Y->ll_rw) < 0 ||
	    add_rule(fd, root, "work", Y->ll_rw) < 0 || add_rule(fd, root, "dev", Y->ll_rw) < 0) {
		int err = errno;
		close(fd);
		errno = err;
		return -1;
	}
	return fd;
}

// layer_child builds the layer in its new namespaces: the tmpfs and its
// directories, the overlay, then it moves its copies of the stage's /proc
// and /dev trees into the job root (MS_MOVE: no new mounts), mounts
// /dev/shm, and moves the job root onto the stage's root, which it covers.
//
// Moving the root (as switch_root does) rather than pivot_root and a
// detach of the old root spares the reset another RCU grace period: the
// stage's copies go with the namespace. A process that joins the
// namespace gets the topmost mount of its root, the job root (setns
// follows the mounts down). The stage's copies under it hold nothing of
// the host (the stage is all that is left of the host's tree in the init's
// namespace), are not reachable by any path from the job root and do not
// show in its /proc/self/mountinfo, which lists only what lies under the
// reader's root.
static int layer_child(void *arg) {
	struct layer_args *a = arg;
	const struct corral_layer *Y = a->Y;
	char path[4096], opts[64];
	// Look into the last layer's IPC namespace before making this
	// layer's: corral_reset keeps an empty one a while, to close it with
	// others.
	if (a->new_ipc) {
		if (a->old_ipc_fd >= 0 && syscall(SYS_setns, a->old_ipc_fd, CLONE_NEWIPC) == 0)
			a->old_ipc_empty = sysvipc_empty();
		if (syscall(SYS_unshare, CLONE_NEWIPC) < 0) return layer_fail(a, "layer-namespaces");
		a->ipc_fd = (int)syscall(SYS_openat, AT_FDCWD, "/proc/self/ns/ipc", O_RDONLY | O_CLOEXEC);
		if (a->ipc_fd < 0) return layer_fail(a, "layer-namespaces");
	}
	// A network namespace of the layer's own, with its loopback up: the
	// job processes join it (corral_spawn), the init stays in its own.
	if (a->new_net) {
		if (syscall(SYS_unshare, CLONE_NEWNET) < 0) return layer_fail(a, "layer-network");
		a->net_fd = (int)syscall(SYS_openat, AT_FDCWD, "/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
		if (a->net_fd < 0) return layer_fail(a, "layer-network");
		// Opened from inside, the file lists the new namespace's
		// sockets for as long as it is open (unix_sockets).
		if (join(path, sizeof(path), Y->proc, "/self/net/unix") < 0) return layer_fail(a, "layer-network");
		a->unix_fd = (int)syscall(SYS_openat, AT_FDCWD, path, O_RDONLY | O_CLOEXEC);
		if (a->unix_fd < 0) return layer_fail(a, "layer-network");
		int sk = (int)syscall(SYS_socket, AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
		if (sk < 0) return layer_fail(a, "layer-network");
		struct ifreq ifr;
		memset(&ifr, 0, sizeof(ifr));
		strcpy(ifr.ifr_name, "lo");
		int rc = (int)syscall(SYS_ioctl, sk, SIOCGIFFLAGS, &ifr);
		if (rc == 0) {
			ifr.ifr_flags |= IFF_UP;
			rc = (int)syscall(SYS_ioctl, sk, SIOCSIFFLAGS, &ifr);
		}
		int err = errno;
		syscall(SYS_close, sk);
		errno = err;
		if (rc < 0) return layer_fail(a, "layer-network");
	}
	if (a->keep) {
		syscall(SYS_exit, 0);
		return 0;
	}
	a->mnt_fd = (int)syscall(SYS_openat, AT_FDCWD, "/proc/self/ns/mnt", O_RDONLY | O_CLOEXEC);
	if (a->mnt_fd < 0) return layer_fail(a, "layer-namespaces");

	// No access times: reading a file or listing a directory changes
	// nothing a kept layer's stamps would have to catch.
	snprintf(opts, sizeof(opts), "mode=0755,size=%lld", (long long)a->disk);
	if (mount("corral-rw", Y->rw, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOATIME, opts) < 0)
		return layer_fail(a, "mount-rw");
	// Mount points and the directories a job may write are made in the
	// upper layer, so the overlay never copies up a directory owned by an
	// id outside the sandbox.
	static const struct {
		const char *sub;
		mode_t mode;
		int job_owned;
	} upper_dirs[] = {
		{"/proc", 0555, 0},
		{"/dev", 0755, 0},
		{"/tmp", 01777, 0},
		{"/work", 0755, 1},
	};
	if (mkdir_as(Y->upper, 0755, 0, 0) < 0 || mkdir_as(Y->work, 0700, 0, 0) < 0 || mkdir_as(Y->root, 0755, 0, 0) < 0)
		return layer_fail(a, "prepare-rw");
	for (size_t i = 0; i < sizeof(upper_dirs) / sizeof(upper_dirs[0]); i++) {
		if (join(path, sizeof(path), Y->upper, upper_dirs[i].sub) < 0) return layer_fail(a, "prepare-rw");
		int own = upper_dirs[i].job_owned;
		if (mkdir_as(path, upper_dirs[i].mode, own ? Y->uid : 0, own ? Y->gid : 0) < 0)
			return layer_fail(a, "prepare-rw");
	}
	if (Y->netc > 0 && etc_files(Y) < 0) return layer_fail(a, "etc-files");
	a->upper_fd = (int)syscall(SYS_openat, AT_FDCWD, Y->upper, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	a->work_fd = (int)syscall(SYS_openat, AT_FDCWD, Y->work, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (a->upper_fd < 0 || a->work_fd < 0) return layer_fail(a, "prepare-rw");
	if (mount("corral-root", Y->root, "overlay", MS_NOSUID | MS_NODEV | MS_NOATIME, Y->ovl_opts) < 0)
		return layer_fail(a, "mount-overlay");
	if (a->probe) a->xino = xino_on(Y->proc, Y->root);
	// The overlay marks a directory that is in both the upper directory
	// and the image (user.overlay.origin, and impure on its parent) the
	// first time it is looked up: look them up now, so that a job's
	// lookups change nothing in the layer (corral_reset).
	for (size_t i = 0; i < sizeof(upper_dirs) / sizeof(upper_dirs[0]) + 1; i++) {
		const char *sub = i < sizeof(upper_dirs) / sizeof(upper_dirs[0]) ? upper_dirs[i].sub : "/etc";
		struct stat st;
		if (join(path, sizeof(path), Y->root, sub) == 0) (void)stat(path, &st);
	}

	if (join(path, sizeof(path), Y->root, "/proc") < 0 || mount(Y->proc, path, NULL, MS_MOVE, NULL) < 0)
		return layer_fail(a, "move-proc");
	if (join(path, sizeof(path), Y->root, "/dev") < 0 || mount(Y->dev, path, NULL, MS_MOVE, NULL) < 0)
		return layer_fail(a, "move-dev");
	snprintf(opts, sizeof(opts), "mode=1777,size=%lld", (long long)a->disk);
	if (join(path, sizeof(path), Y->root, "/dev/shm") < 0 ||
	    mount("corral-shm", path, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOATIME, opts) < 0)
		return layer_fail(a, "mount-shm");
	a->shm_fd = (int)syscall(SYS_openat, AT_FDCWD, path, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (a->shm_fd < 0) return layer_fail(a, "mount-shm");
	// Every inode corral_reset stamps has its times now: move the floor
	// past them (in the tmpfs's root, which no job reaches).
	if (a->probe || a->stamp) a->fine_ctime = fine_ctime(Y->rw, a->probe ? 3 : 1);
	if (chdir(Y->root) < 0 || mount(".", "/", NULL, MS_MOVE, NULL) < 0) return layer_fail(a, "move-root");
	a->root_fd = (int)syscall(SYS_openat, AT_FDCWD, ".", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (a->root_fd < 0) return layer_fail(a, "move-root");
	a->landlock_fd = landlock_ruleset(Y, a->root_fd);
	if (a->landlock_fd < 0 && errno != 0) return layer_fail(a, "landlock");
	syscall(SYS_exit, 0);
	return 0;
}

static void close_fd(int *fd) {
	if (*fd >= 0) close(*fd);
	*fd = -1;
}

// spend_ipc lets go of an old layer's IPC namespace. Freeing one costs the
// kernel an RCU grace period (expedited on some machines: an interrupt to
// every busy CPU and a real-time kernel thread that preempts the next
// job), but the namespaces closed before its free work runs share one.
// So an empty namespace waits until CORRAL_IPC_BATCH have, and goes with
// them: it holds nothing of the job, and no process can reach it again.
// One that still holds a System V object goes at once, so that the
// object's memory, charged to the job cgroup, is freed before the next
// job. (POSIX message queues, which an empty-looking namespace could
// still hold, are out of reach: every seccomp profile denies mq_open.)
static void spend_ipc(struct corral_loop *L, int fd, int empty) {
	if (fd < 0) return;
	if (!empty) {
		close(fd);
		return;
	}
	L->ipc_spent[L->nipc_spent++] = fd;
	if (L->nipc_spent < CORRAL_IPC_BATCH) return;
	for (int i = 0; i < L->nipc_spent; i++) close(L->ipc_spent[i]);
	L->nipc_spent = 0;
}

// stamp reads what a job could see of the inode at name under dir ("":
// dir itself).
static int stamp(int dir, const char *name, struct corral_stamp *o) {
	struct statx x;
	// STATX_CTIME|STATX_MTIME (in the basic stats) also tell the kernel
	// that the times were read: their next change takes a fine-grained
	// time (fine_ctime).
	if (statx(dir, name, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW | AT_STATX_SYNC_AS_STAT, STATX_BASIC_STATS, &x) < 0)
		return -1;
	memset(o, 0, sizeof(*o));
	o->ino = x.stx_ino;
	o->size = x.stx_size;
	o->mode = x.stx_mode;
	o->uid = x.stx_uid;
	o->gid = x.stx_gid;
	o->nlink = x.stx_nlink;
	o->atime = x.stx_atime.tv_sec;
	o->atime_ns = x.stx_atime.tv_nsec;
	o->mtime = x.stx_mtime.tv_sec;
	o->mtime_ns = x.stx_mtime.tv_nsec;
	o->ctime = x.stx_ctime.tv_sec;
	o->ctime_ns = x.stx_ctime.tv_nsec;
	return 0;
}

// layer_stamps stamps every inode of the current layer that a job can
// change, into out: the upper directory and the directories and /etc
// files the reset made in it, the overlay's work directory, the root of
// /dev/shm. Any other change needs one of these to change: a new name in
// a directory changes the directory, and a job reaches no other inode of
// the layer's tmpfs. Returns how many, or -1.
static int layer_stamps(const struct corral_loop *L, struct corral_stamp *out) {
	const struct corral_layer *Y = &L->layer;
	const struct corral_kept *K = &L->kept;
	static const char *const upper[] = {"", "proc", "dev", "tmp", "work"};
	int n = 0;
	for (size_t i = 0; i < sizeof(upper) / sizeof(upper[0]); i++)
		if (stamp(K->upper_fd, upper[i], &out[n++]) < 0) return -1;
	if (Y->netc > 0) {
		if (Y->netc > CORRAL_MAX_STAMPS - 9) return -1;
		if (stamp(K->upper_fd, "etc", &out[n++]) < 0) return -1;
		char path[4096];
		for (int i = 0; i < Y->netc; i++)
			if (join(path, sizeof(path), "etc/", Y->etc[i].name) < 0 || stamp(K->upper_fd, path, &out[n++]) < 0)
				return -1;
	}
	if (stamp(K->work_fd, "", &out[n++]) < 0 || stamp(K->work_fd, "work", &out[n++]) < 0 ||
	    stamp(K->shm_fd, "", &out[n++]) < 0)
		return -1;
	return n;
}

// probe_ino makes an unnamed file (O_TMPFILE) in dir, an O_PATH fd of a
// directory on one of the layer's tmpfs mounts, and returns its inode
// number (0: it could not). A tmpfs numbers its inodes from a counter of
// its own, one up for each new inode, named or not, and an unnamed file
// changes no inode the stamps cover: only the counter tells that a job
// made (and closed) such files, and the next job's first new file would
// show how many. Two probes one apart mean none was made in between.
static uint64_t probe_ino(int dir) {
	int fd = openat(dir, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd < 0) return 0;
	struct stat st;
	uint64_t ino = fstat(fd, &st) == 0 ? (uint64_t)st.st_ino : 0;
	close(fd);
	return ino;
}

// layer_unchanged reports whether the current layer can serve the next
// job as it is: it was stamped when built, has disk bytes, every stamp is
// as it was, and neither tmpfs made an inode since its last probe. probe
// gets the new probes' numbers.
static int layer_unchanged(const struct corral_loop *L, int64_t disk, uint64_t probe[2]) {
	const struct corral_kept *K = &L->kept;
	if (K->ok != 1 || K->nstamps == 0 || L->tmpl.mnt_fd < 0 || disk != K->disk) return 0;
	struct corral_stamp now[CORRAL_MAX_STAMPS];
	if (layer_stamps(L, now) != K->nstamps || memcmp(now, K->stamps, (size_t)K->nstamps * sizeof(now[0])) != 0)
		return 0;
	probe[0] = probe_ino(K->upper_fd);
	probe[1] = probe_ino(K->shm_fd);
	return probe[0] && probe[1] && probe[0] == K->probe[0] + 1 && probe[1] == K->probe[1] + 1;
}

// A layer that its job left exactly as it was built is kept: a new one
// would be the same, and its making and the old one's teardown are the
// reset's dearest part (two RCU grace periods, see spend_ipc). What a job
// can change in a layer is its tmpfs (the upper directory, /tmp and /work
// in it) and /dev/shm; its mounts need privileges no job has. The layer's
// stamps, taken when it was built, cover every inode there a job can
// reach, times of change included, so a file made and removed again
// shows. That holds only on a kernel whose change times always move once
// read (fine_ctime); and the overlay must number directories from their
// real inodes (xino=on, see xino_on), else the numbers would tell the
// next job which directories the last one looked up. The first reset
// finds both out; without them no layer is kept. The mounts have no
// access times.
//
// The IPC namespace is new unless no job process touched it since it was
// made (L->ipc_touched): a System V object, even one made and removed,
// moves the namespace's id counters, which the next job's first object
// would show. A job touches it only through shmget, semget or msgget
// (every profile denies POSIX message queues), which under the zygote's
// filter reach the init as user notifications (serve_notification in
// loop_linux.c); a process of the default profile made outside the
// zygote counts as touching it.
//
// The network namespace is the init's until a job makes an AF_INET or
// AF_INET6 socket (heard the same way, L->net_touched); after such a job
// the next gets one of the layer's own, with only its loopback, unless
// the parent wired the init's (L->own_net 0, for egress).
// unix_sockets counts the AF_UNIX sockets of the network namespace the
// jobs run in (the init's, or the layer's own): the lines of its
// /proc/net/unix after the header, read from the start of an fd kept open
// (opened from inside the namespace, see layer_child). -1 on an error.
static int unix_sockets(struct corral_loop *L) {
	if (L->unix_fd < 0) {
		char path[4096];
		if (join(path, sizeof(path), L->layer.proc, "/self/net/unix") < 0) return -1;
		L->unix_fd = open(path, O_RDONLY | O_CLOEXEC);
		if (L->unix_fd < 0) return -1;
	}
	char buf[8192];
	int lines = 0;
	ssize_t n;
	off_t off = 0;
	while ((n = pread(L->unix_fd, buf, sizeof(buf), off)) > 0) {
		for (ssize_t i = 0; i < n; i++) lines += buf[i] == '\n';
		off += n;
	}
	return n < 0 ? -1 : lines - 1;
}

// Sockets can outlive every process of a job: an AF_UNIX socket sent over
// another (SCM_RIGHTS) into a cycle of messages is held by the messages
// alone once the processes closed theirs, and so is whatever else the
// messages carry: a file of the writable layer or /dev/shm, a listening
// TCP socket. Their memory stays charged to the job cgroup, their port
// taken, until the kernel's garbage collector for such cycles runs, which
// only the closing of some AF_UNIX socket on the host sets off. So a reset
// that finds more AF_UNIX sockets in the sandbox's namespace than it had
// when it was built closes a socket pair (setting the collector off) and
// waits up to LEFTOVER_WAIT_MS for them to go; if they stay, the reset
// fails and the parent destroys the sandbox. (Without a cycle the count is
// back at once: a process's sockets close before it can be reaped.)
#define LEFTOVER_WAIT_MS 100

static int sockets_settled(struct corral_loop *L) {
	int n = unix_sockets(L);
	if (L->unix_base < 0) {
		L->unix_base = n;
		return 0;
	}
	if (n < 0 || n <= L->unix_base) return 0;
	for (int waited = 0; waited < LEFTOVER_WAIT_MS; waited++) {
		int sv[2];
		if (waited % 10 == 0 && socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, sv) == 0) {
			close(sv[0]);
			close(sv[1]);
		}
		struct timespec ms = {0, 1000000};
		nanosleep(&ms, NULL);
		if (unix_sockets(L) <= L->unix_base) return 0;
	}
	return -EBUSY;
}

// The pid namespace lasts as long as the sandbox, and its last pid would
// tell the next job how many processes the last one made (echo $$). Each
// reset puts it back where it was when the first layer was built, so
// every job's processes get the same pids; all of the last job's are
// reaped by now. Best effort: a kernel that refuses leaves the counter.
static void pids_back(struct corral_loop *L) {
	if (L->pid_fd < 0) return;
	char buf[32];
	if (L->pid_base < 0) {
		ssize_t n = pread(L->pid_fd, buf, sizeof(buf) - 1, 0);
		if (n > 0) {
			buf[n] = 0;
			L->pid_base = strtol(buf, NULL, 10);
		}
		return;
	}
	int n = snprintf(buf, sizeof(buf), "%ld", L->pid_base);
	(void)!pwrite(L->pid_fd, buf, (size_t)n, 0);
}

int corral_reset(struct corral_loop *L, int64_t disk, const char **step) {
	struct corral_spawn *t = &L->tmpl;
	struct corral_kept *K = &L->kept;
	*step = "leftover-sockets";
	int rc = sockets_settled(L);
	if (rc < 0) return rc;
	pids_back(L);
	uint64_t probe[2] = {0, 0};
	int keep = layer_unchanged(L, disk, probe);
	if (keep) {
		K->probe[0] = probe[0];
		K->probe[1] = probe[1];
	}
	// The IPC namespace stays when no job process touched it since it
	// was made (ipc_touched), unless layers are never kept.
	int new_ipc = t->ipc_fd < 0 || L->ipc_touched || !L->layer.keep;
	// The network namespace likewise: the init's until a job touches it,
	// then one of the layer's own after every job that touched it.
	int new_net = L->own_net && L->net_touched;
	if (keep && !new_ipc && !new_net) return 1;
	if (!keep) {
		// The old layer: its namespace, and every mount in it, goes with
		// the last of these (every job process is dead by now).
		close_fd(&t->mnt_fd);
		close_fd(&t->landlock_fd);
		close_fd(&L->root_fd);
		close_fd(&K->upper_fd);
		close_fd(&K->work_fd);
		close_fd(&K->shm_fd);
		K->nstamps = 0;
	}
	// The old IPC namespace waits for the layer child, which looks into
	// it (spend_ipc).
	int old_ipc = -1;
	if (new_ipc) {
		old_ipc = t->ipc_fd;
		t->ipc_fd = -1;
	}

	*step = "layer-namespaces";
	if (!layer_stack) {
		void *p = mmap(NULL, LAYER_STACK_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
		if (p == MAP_FAILED) {
			int err = errno;
			if (old_ipc >= 0) close(old_ipc);
			return -err;
		}
		layer_stack = p;
	}
	struct layer_args a = {
		.Y = &L->layer,
		.disk = disk,
		.old_ipc_fd = old_ipc,
		.keep = keep,
		.new_ipc = new_ipc,
		.new_net = new_net,
		.net_fd = -1,
		.unix_fd = -1,
		.probe = !keep && K->ok < 0 && L->layer.keep,
		.stamp = !keep && K->ok == 1,
		.mnt_fd = -1,
		.ipc_fd = -1,
		.root_fd = -1,
		.landlock_fd = -1,
		.upper_fd = -1,
		.work_fd = -1,
		.shm_fd = -1,
	};
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	// No SIGCHLD: the init's reaper never sees this child; __WCLONE reaps it.
	int pid = clone(layer_child, layer_stack + LAYER_STACK_SIZE,
	                CLONE_VM | CLONE_VFORK | CLONE_FILES | (keep ? 0 : CLONE_NEWNS), &a);
	int err = errno;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (pid < 0) {
		if (old_ipc >= 0) close(old_ipc);
		return -err;
	}
	int status = 0;
	while (waitpid(pid, &status, __WCLONE) < 0 && errno == EINTR) {}
	if (new_ipc) spend_ipc(L, old_ipc, a.old_ipc_empty);
	// A child that died without saying why, or came back without what it
	// was to make, fails the reset: never a job in the init's namespaces
	// by default.
	if (!a.err && (!WIFEXITED(status) || (new_ipc && a.ipc_fd < 0) || (!keep && a.mnt_fd < 0) ||
	               (new_net && (a.net_fd < 0 || a.unix_fd < 0)))) {
		a.err = EIO;
		a.step = "layer-child";
	}
	if (a.err) {
		close_fd(&a.mnt_fd);
		close_fd(&a.ipc_fd);
		close_fd(&a.root_fd);
		close_fd(&a.landlock_fd);
		close_fd(&a.upper_fd);
		close_fd(&a.work_fd);
		close_fd(&a.shm_fd);
		close_fd(&a.net_fd);
		close_fd(&a.unix_fd);
		*step = a.step;
		return -a.err;
	}
	if (new_ipc) {
		t->ipc_fd = a.ipc_fd;
		L->ipc_touched = 0;
	}
	if (new_net) {
		// The last of the old namespace's references: the kernel tears
		// it down, sockets, counters and all, in the background.
		close_fd(&t->net_fd);
		close_fd(&L->unix_fd);
		t->net_fd = a.net_fd;
		L->unix_fd = a.unix_fd;
		L->unix_base = 0; // the init's sockets are in its own
		L->net_touched = 0;
	}
	if (keep) return 1;
	t->mnt_fd = a.mnt_fd;
	t->landlock_fd = a.landlock_fd;
	// landlock_restrict_self's flags stay 0: landlockConfig asks for none
	// of go-landlock's logging options.
	t->landlock_flags = 0;
	L->root_fd = a.root_fd;
	K->upper_fd = a.upper_fd;
	K->work_fd = a.work_fd;
	K->shm_fd = a.shm_fd;
	K->disk = disk;
	if (a.probe) K->ok = a.fine_ctime && a.xino;
	else if (!L->layer.keep) K->ok = 0;
	if (K->ok == 1 && a.fine_ctime) {
		int n = layer_stamps(L, K->stamps);
		K->nstamps = n > 0 ? n : 0;
		K->probe[0] = probe_ino(K->upper_fd);
		K->probe[1] = probe_ino(K->shm_fd);
		if (!K->probe[0] || !K->probe[1]) K->nstamps = 0;
	}
	return 0;
}
