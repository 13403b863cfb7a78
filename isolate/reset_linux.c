// The reset of the writable layer, in C: the init serves reset packets in
// its loop (loop_linux.c) without entering Go, so a job's turnaround wakes
// none of the init's Go runtime threads.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
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

static int fail(const char **step, const char *name) {
	*step = name;
	return -errno;
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

static int add_rule(int ruleset, const char *path, uint64_t access) {
	int fd = open(path, O_PATH | O_CLOEXEC);
	if (fd < 0) return -1;
	struct ll_path_beneath_attr a = {access, fd};
	long rc = syscall(SYS_landlock_add_rule, ruleset, CORRAL_LANDLOCK_RULE_PATH_BENEATH, &a, 0);
	int err = errno;
	close(fd);
	errno = err;
	return rc < 0 ? -1 : 0;
}

// landlock_ruleset makes the ruleset of the new layer: read and execute in
// the whole job root, write in its /tmp and /work and in /dev (a read-only
// mount of harmless device files, and /dev/shm). Rules hold inodes, so each
// layer needs its own. *out is its fd, -1 without Landlock. Returns 0 or
// -errno.
static int landlock_ruleset(const struct corral_layer *Y, int *out) {
	*out = -1;
	if (Y->ll_abi <= 0) return 0;
	struct ll_ruleset_attr attr = {Y->ll_handled_fs, 0, Y->ll_scoped};
	size_t size = Y->ll_abi >= 6 ? sizeof(attr) : Y->ll_abi >= 4 ? 16 : 8;
	int fd = (int)syscall(SYS_landlock_create_ruleset, &attr, size, 0);
	if (fd < 0) return -errno;
	char path[4096];
	static const char *const rw[] = {"/tmp", "/work"};
	int rc = add_rule(fd, Y->root, Y->ll_ro);
	for (int i = 0; rc == 0 && i < 2; i++) {
		rc = join(path, sizeof(path), Y->root, rw[i]);
		if (rc == 0) rc = add_rule(fd, path, Y->ll_rw);
	}
	if (rc == 0) rc = add_rule(fd, Y->dev, Y->ll_rw);
	if (rc < 0) {
		int err = errno;
		close(fd);
		return -err;
	}
	*out = fd;
	return 0;
}

int corral_reset(struct corral_loop *L, int64_t disk, const char **step) {
	const struct corral_layer *Y = &L->layer;
	char opts[64], path[4096];
	// Detaching is O(1): the kernel frees the old tree once no process
	// uses it (every job process is dead by now). The job root is mounted
	// inside the writable layer's tmpfs: one detach takes both.
	umount2(Y->rw, MNT_DETACH);
	snprintf(opts, sizeof(opts), "mode=0755,size=%lld", (long long)disk);
	if (mount("corral-rw", Y->rw, "tmpfs", MS_NOSUID | MS_NODEV, opts) < 0) return fail(step, "mount-rw");
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
		return fail(step, "prepare-rw");
	for (size_t i = 0; i < sizeof(upper_dirs) / sizeof(upper_dirs[0]); i++) {
		if (join(path, sizeof(path), Y->upper, upper_dirs[i].sub) < 0) return fail(step, "prepare-rw");
		uint32_t uid = upper_dirs[i].job_owned ? Y->uid : 0, gid = upper_dirs[i].job_owned ? Y->gid : 0;
		if (mkdir_as(path, upper_dirs[i].mode, uid, gid) < 0) return fail(step, "prepare-rw");
	}
	if (Y->netc > 0 && etc_files(Y) < 0) return fail(step, "etc-files");
	if (mount("corral-root", Y->root, "overlay", MS_NOSUID | MS_NODEV, Y->ovl_opts) < 0)
		return fail(step, "mount-overlay");

	// The layer's own mount and IPC namespaces, made once: job processes
	// join them instead of each copying the mount table. The job root's
	// /proc, /dev and /dev/shm are mounted in that namespace only.
	struct corral_spawn *t = &L->tmpl;
	int *old[] = {&t->mnt_fd, &t->ipc_fd, &t->landlock_fd};
	for (size_t i = 0; i < sizeof(old) / sizeof(old[0]); i++) {
		if (*old[i] >= 0) close(*old[i]);
		*old[i] = -1;
	}
	snprintf(opts, sizeof(opts), "mode=1777,size=%lld", (long long)disk);
	int mnt, ipc;
	int rc = corral_layer_ns(Y->root, Y->proc, Y->dev, opts, &mnt, &ipc, step);
	if (rc < 0) return rc;
	t->mnt_fd = mnt;
	t->ipc_fd = ipc;
	rc = landlock_ruleset(Y, &t->landlock_fd);
	if (rc < 0) {
		*step = "landlock";
		return rc;
	}
	t->landlock_flags = Y->ll_flags;
	return 0;
}
