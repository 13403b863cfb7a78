// The init's job path in C: spawn requests, kill requests and the running
// job's reaping never enter Go. The Go init calls corral_loop_run, which
// returns only for the other messages (reset, put, collect), whose bytes it
// leaves in the caller's buffer. So a job costs the init its own system
// calls, and no goroutine hand-off, scheduler or sysmon wake-up.
//
// Replies are the protocol's JSON messages (proto_linux.go), written here
// with fixed shapes.
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/seccomp.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "spawn_linux.h"

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif

// Names of enum corral_step, as the parent knows them (InitError.Step).
static const char *const step_names[] = {
	"", "setsid", "cgroup", "cgroupns", "namespaces", "cwd", "stdio", "rlimit",
	"capabilities", "securebits", "credentials", "no_new_privs", "landlock",
	"close-fds", "seccomp", "exec", "clone",
};

static int64_t now_ns(void) {
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

// send_json sends one reply: a JSON message or a binary one.
static int send_json(struct corral_loop *L, const char *msg, int len) {
	for (;;) {
		if (send(L->sock, msg, (size_t)len, MSG_NOSIGNAL) >= 0) return 0;
		if (errno != EINTR) return -errno;
	}
}

static int send_error(struct corral_loop *L, const char *step, int err, const char *msg) {
	char b[256];
	int n;
	if (msg)
		n = snprintf(b, sizeof(b), "{\"kind\":\"error\",\"err\":{\"step\":\"%s\",\"errno\":%d,\"msg\":\"%s\"}}", step, err, msg);
	else
		n = snprintf(b, sizeof(b), "{\"kind\":\"error\",\"err\":{\"step\":\"%s\",\"errno\":%d}}", step, err);
	return send_json(L, b, n);
}

static void close_fds(int *fds, int n) {
	for (int i = 0; i < n; i++) close(fds[i]);
}

// close_out closes the running process's output pipes (see spawn).
static void close_out(struct corral_loop *L) {
	for (int i = 0; i < 2; i++) {
		if (L->out_fds[i] >= 0) close(L->out_fds[i]);
		L->out_fds[i] = -1;
	}
}

// park_profile prepares the next job process for seccomp profile prof,
// unless a job runs or one is prepared already. Returns 1 if it did.
static int park_profile(struct corral_loop *L, int prof) {
	if (prof < 0 || L->pid || L->park.pid || L->tmpl.mnt_fd < 0) return 0;
	L->park.s = L->tmpl;
	L->park.s.seccomp_filter = L->profiles[prof];
	L->park.profile = prof;
	L->park.late_seccomp = L->late_seccomp[prof];
	// The zygote's profile: a child of the zygote, under its filter.
	if (prof == L->zy_profile && corral_zpark_start(&L->zy, &L->park) == 0) return 1;
	return corral_park_start(&L->park) == 0;
}

int corral_read_counters(const struct corral_counter *c, int n, int64_t *out) {
	char buf[4096];
	int have = -1; // the fd whose content is in buf
	ssize_t len = 0;
	memset(out, 0, sizeof(int64_t) * CORRAL_NCOUNTERS);
	for (int i = 0; i < n; i++) {
		if (c[i].field < 0 || c[i].field >= CORRAL_NCOUNTERS) return -1;
		if (c[i].fd != have) {
			// A cgroup file regenerates its content on a read at 0.
			len = pread(c[i].fd, buf, sizeof(buf) - 1, 0);
			if (len <= 0 || len == (ssize_t)sizeof(buf) - 1) return -1;
			buf[len] = 0;
			have = c[i].fd;
		}
		const char *p = buf;
		if (c[i].key[0]) {
			size_t k = strlen(c[i].key);
			p = NULL;
			for (const char *line = buf; line && *line;) {
				if (strncmp(line, c[i].key, k) == 0 && line[k] == ' ') {
					p = line + k + 1;
					break;
				}
				line = strchr(line, '\n');
				if (line) line++;
			}
			if (!p) continue; // absent: 0
		}
		while (*p == ' ') p++;
		int64_t v;
		if (strncmp(p, "max", 3) == 0) v = INT64_MAX;
		else {
			char *end;
			errno = 0;
			unsigned long long u = strtoull(p, &end, 10);
			if (end == p || errno) return -1;
			v = u > INT64_MAX ? INT64_MAX : (int64_t)u;
		}
		out[c[i].field] = v == INT64_MAX ? v : v * c[i].scale;
	}
	return 0;
}

// read_usage reads the job cgroup's memory usage: 0, or -1 when it cannot.
static int read_usage(struct corral_loop *L, int64_t *usage) {
	char b[32];
	if (L->usage_fd < 0) return -1;
	ssize_t n = pread(L->usage_fd, b, sizeof(b) - 1, 0);
	if (n <= 0) return -1;
	b[n] = 0;
	char *end;
	long long v = strtoll(b, &end, 10);
	if (end == b || v < 0) return -1;
	*usage = v;
	return 0;
}

// reset_layer replaces the writable layer (corral_reset) and answers with
// a ready reply or the failed step. The prepared process belongs to the
// old layer, so it goes first. Then, if it can read the job cgroup's memory
// usage, it prepares the next process for profile prof (that usage first:
// the prepared process's setup is counted in its own usage) and says so in
// the reply, which spares the parent a park packet.
static int reset_layer(struct corral_loop *L, int64_t disk, int prof) {
	corral_park_drop(&L->park);
	const char *step = "reset";
	int rc = corral_reset(L, disk, &step);
	if (rc < 0) return send_error(L, step, -rc, NULL);
	struct corral_ready_reply r = {CORRAL_REPLY_READY, rc == 1 ? CORRAL_READY_KEPT : 0, {0}, 0};
	if (prof >= 0 && read_usage(L, &r.memory_usage) == 0 && park_profile(L, prof))
		r.flags |= CORRAL_READY_PARKED;
	return send_json(L, (const char *)&r, sizeof(r));
}

// after_process follows the reply that ends a process (rc: its send): a
// Last process's spawn asked for the reset to follow at once, while the
// parent reads the result, without waiting for a reset packet; the next
// process is prepared for the same profile.
static int after_process(struct corral_loop *L, int rc) {
	if (rc < 0 || !L->reset_after) return rc;
	L->reset_after = 0;
	return reset_layer(L, L->layer.disk, L->last_profile);
}

// finish ends the job once its main process was reaped: nothing else may
// run on. It kills and reaps everything left (setsid'd orphans included:
// they are the init's children now), killing again after each reap so that
// a process forked during the kill is caught, and only then reports.
static int finish(struct corral_loop *L, int status, int64_t wall_ns) {
	for (;;) {
		kill(-1, SIGKILL);
		int ws;
		if (wait4(-1, &ws, __WALL, NULL) < 0 && errno != EINTR) break; // ECHILD: nothing is left
	}
	if (L->pidfd >= 0) close(L->pidfd);
	L->pid = 0;
	L->pidfd = -1;
	struct corral_exited_reply r;
	memset(&r, 0, sizeof(r));
	r.tag = CORRAL_REPLY_EXITED;
	r.wait_status = (uint32_t)status;
	r.wall_ns = wall_ns;
	// The job's counters, now that nothing of it runs and before a reset
	// frees its memory: in C, cheaper than the parent's reads after the
	// reply.
	if (L->nctr > 0 && corral_read_counters(L->ctr, L->nctr, r.counters) == 0) r.flags = CORRAL_EXITED_COUNTERS;
	close_out(L);
	return after_process(L, send_json(L, (const char *)&r, sizeof(r)));
}

// reap reaps, without waiting, every process that exited; when that includes
// the main process, it ends the job. Returns 1 if it reaped anything, 0 if
// not, or -errno.
static int reap(struct corral_loop *L) {
	int reaped = 0;
	while (L->pid) {
		int ws;
		pid_t got = wait4(-1, &ws, WNOHANG | __WALL, NULL);
		if (got < 0 && errno == EINTR) continue;
		if (got < 0) { // ECHILD: nothing is left, not even the main process
			int rc = finish(L, 0, 0);
			return rc < 0 ? rc : 1;
		}
		if (got == 0) return reaped;
		reaped = 1;
		if (got == L->pid) {
			int rc = finish(L, ws, now_ns() - L->start_ns);
			return rc < 0 ? rc : 1;
		}
	}
	return reaped;
}

// next_str returns the NUL-terminated string at *p and advances *p past
// it; NULL when none ends before end.
static char *next_str(char **p, char *end) {
	char *s = *p;
	if (s >= end) return NULL;
	char *z = memchr(s, 0, (size_t)(end - s));
	if (!z) return NULL;
	*p = z + 1;
	return s;
}

// profile_index returns the index of the seccomp profile named name, -1
// for none.
static int profile_index(struct corral_loop *L, const char *name) {
	for (int i = 0; i < L->nprofiles; i++)
		if (strcmp(L->profile_names[i], name) == 0) return i;
	return -1;
}

// spawn handles one spawn packet (see corral_spawn_pkt) with its three fds.
static int spawn(struct corral_loop *L, char *pkt, size_t len, int *fds, int nfds) {
	struct corral_spawn_pkt h;
	if (L->pid) {
		close_fds(fds, nfds);
		return send_error(L, "protocol", 0, "spawn while a job runs");
	}
	if (len < sizeof(h) || nfds != 3) {
		close_fds(fds, nfds);
		return send_error(L, "protocol", 0, "spawn needs its header and 3 fds");
	}
	memcpy(&h, pkt, sizeof(h));
	if (h.nrlimits > CORRAL_NRLIMITS || h.argc == 0 || h.argc > 1 << 20 || h.envc > 1 << 20) {
		close_fds(fds, nfds);
		return send_error(L, "protocol", 0, "bad spawn header");
	}
	size_t nvec = (size_t)h.argc + h.envc + 2;
	if (nvec > L->veccap) {
		char **v = realloc(L->vec, nvec * sizeof(char *));
		if (!v) {
			close_fds(fds, nfds);
			return send_error(L, "protocol", ENOMEM, "spawn vectors");
		}
		L->vec = v;
		L->veccap = nvec;
	}
	char *p = pkt + sizeof(h), *end = pkt + len;
	char *profile = next_str(&p, end), *cwd = next_str(&p, end);
	char **argv = L->vec, **envp = L->vec + h.argc + 1;
	int ok = profile && cwd;
	for (uint32_t i = 0; ok && i < h.argc; i++) ok = (argv[i] = next_str(&p, end)) != NULL;
	for (uint32_t i = 0; ok && i < h.envc; i++) ok = (envp[i] = next_str(&p, end)) != NULL;
	if (!ok || p != end) {
		close_fds(fds, nfds);
		return send_error(L, "protocol", 0, "bad spawn strings");
	}
	argv[h.argc] = NULL;
	envp[h.envc] = NULL;

	int prof = profile_index(L, profile);
	if (prof < 0) {
		close_fds(fds, nfds);
		return send_error(L, "seccomp", 0, "no program for that profile");
	}
	L->last_profile = prof;
	// The parked child if it was made for this profile and still waits;
	// else a new one.
	struct corral_park *P = &L->park;
	int parked = P->pid > 0 && P->profile == prof && corral_park_alive(P);
	if (!parked) corral_park_drop(&L->park);
	struct corral_spawn local, *s = parked ? &P->s : &local;
	if (!parked) {
		local = L->tmpl;
		local.seccomp_filter = L->profiles[prof];
	}
	// A process under the zygote's filter reports its System V calls and
	// its AF_INET and AF_INET6 sockets (serve_notification); any other
	// process of a profile that allows them may make one unheard.
	int heard = parked && P->inherited && L->zy.listener >= 0;
	if (L->sysv[prof] && !heard) L->ipc_touched = 1;
	if (L->inet[prof] && !heard) L->net_touched = 1;
	s->path = argv[0];
	s->argv = argv;
	s->envp = envp;
	s->search_path = "";
	for (uint32_t i = 0; i < h.envc; i++)
		if (strncmp(envp[i], "PATH=", 5) == 0) s->search_path = envp[i] + 5;
	s->cwd = cwd;
	for (int i = 0; i < 3; i++) s->stdio[i] = fds[i];
	for (uint32_t i = 0; i < h.nrlimits; i++) {
		s->rlimits[i].resource = h.rlimits[i].resource;
		s->rlimits[i].cur = h.rlimits[i].cur;
		s->rlimits[i].max = h.rlimits[i].max;
	}
	s->nrlimits = (int)h.nrlimits;

	int64_t start = now_ns();
	int pid = parked ? corral_park_go(P) : corral_spawn_run(s);
	// The output pipes' write ends stay open here until the process is
	// done, and close just before its reply: the parent's readers then
	// see the end of the output and the reply together, one wake-up
	// instead of one at the process's exit and one at the reply.
	close(fds[0]);
	L->out_fds[0] = fds[1];
	L->out_fds[1] = fds[2];
	// A failed clone breaks the sandbox (the parent gives up on it); a
	// process that failed to start is done like one that exited.
	if (pid < 0) {
		close_out(L);
		return send_error(L, "clone", -pid, NULL);
	}
	L->reset_after = (h.flags & CORRAL_SPAWN_RESET_AFTER) != 0;
	if (s->err_step != 0) {
		int ws;
		while (wait4(pid, &ws, __WALL, NULL) < 0 && errno == EINTR) {}
		const char *step = "unknown";
		if (s->err_step > 0 && (size_t)s->err_step < sizeof(step_names) / sizeof(step_names[0]))
			step = step_names[s->err_step];
		close_out(L);
		return after_process(L, send_error(L, step, s->err_no, NULL));
	}
	// No reply now: the parent hears of this process when it has exited
	// (one wake-up fewer on the job's path).
	// Without a pidfd (only for lack of fds) the periodic reap finds the
	// main process, up to CORRAL_REAP_MAX_MS late.
	L->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	L->pid = pid;
	L->start_ns = start;
	L->reap_ms = CORRAL_REAP_MS;
	return 0;
}

// receive reads one packet into L->buf. Returns its length (0: the parent
// hung up) or -errno; its fds are in fds/nfds.
static long receive(struct corral_loop *L, int *fds, int *nfds) {
	char oob[CMSG_SPACE(sizeof(int) * CORRAL_MAX_PKT_FDS)];
	struct iovec iov = {L->buf, L->cap};
	struct msghdr mh;
	ssize_t n;
	*nfds = 0;
	for (;;) {
		memset(&mh, 0, sizeof(mh));
		mh.msg_iov = &iov;
		mh.msg_iovlen = 1;
		mh.msg_control = oob;
		mh.msg_controllen = sizeof(oob);
		n = recvmsg(L->sock, &mh, MSG_CMSG_CLOEXEC);
		if (n >= 0 || errno != EINTR) break;
	}
	if (n < 0) return -errno;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
		int k = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
		int *in = (int *)CMSG_DATA(c);
		for (int i = 0; i < k; i++) {
			if (*nfds < CORRAL_MAX_PKT_FDS) fds[(*nfds)++] = in[i];
			else close(in[i]);
		}
	}
	// A packet cut short is never acted on.
	if (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) {
		close_fds(fds, *nfds);
		*nfds = 0;
		return -EMSGSIZE;
	}
	if (n == 0) {
		close_fds(fds, *nfds);
		*nfds = 0;
	}
	return n;
}


// park serves a park packet: it prepares the next job process for the
// profile it names, unless a job runs or one is prepared already. Nothing
// is reported: a failure leaves the next spawn to make its own process and
// report that one's.
static void park(struct corral_loop *L, char *pkt, size_t len) {
	char *p = pkt + 1, *end = pkt + len;
	char *name = next_str(&p, end);
	if (name) park_profile(L, profile_index(L, name));
}

// reset serves a reset packet (reset_layer), preparing the next process
// for the profile it names.
static int reset(struct corral_loop *L, char *pkt, size_t len) {
	struct corral_reset_pkt h;
	if (L->pid) return send_error(L, "protocol", 0, "reset while a job process runs");
	if (len < sizeof(h)) return send_error(L, "protocol", 0, "bad reset packet");
	memcpy(&h, pkt, sizeof(h));
	if (h.disk_bytes <= 0) return send_error(L, "protocol", 0, "reset without a disk size");
	char *p = pkt + sizeof(h), *name = next_str(&p, pkt + len);
	if (!name || p != pkt + len) return send_error(L, "protocol", 0, "bad reset packet");
	return reset_layer(L, h.disk_bytes, profile_index(L, name));
}

// corral_quiet_sigchld sets SIGCHLD's action to the default, ignore (not
// SIG_IGN, which would reap children before the loop's wait4). Job
// processes are cloned without an exit signal, but a process that has
// exec'd signals its parent with SIGCHLD at its exit all the same, and
// the Go runtime's handler then ran on the loop's thread between the
// pidfd's wake-up and the exited reply: 40-50 µs of every job on this
// VM. With the default action the kernel discards it without running
// anything in user space. The init's Go code starts no child process and
// does not wait for SIGCHLD.
void corral_quiet_sigchld(void) {
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_DFL;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGCHLD, &sa, NULL);
}

// serve_notification answers a user notification of the zygote's filter:
// a job process called one of the System V calls that make or find an
// object, or made an AF_INET or AF_INET6 socket (seccompZygoteProgram).
// The call goes ahead as if the filter had allowed it; the init only notes
// that the IPC or network namespace was touched, so that the reset
// replaces it. The job's process waits for this answer, so no such call
// takes effect unnoted. A listener that fails is given up: every later
// reset then replaces both namespaces.
static void serve_notification(struct corral_loop *L, short revents) {
	if (revents & (POLLHUP | POLLERR | POLLNVAL)) {
		close(L->zy.listener);
		L->zy.listener = -1;
		L->ipc_touched = L->net_touched = 1;
		return;
	}
	struct seccomp_notif req;
	memset(&req, 0, sizeof(req));
	if (ioctl(L->zy.listener, SECCOMP_IOCTL_NOTIF_RECV, &req) < 0) {
		// ENOENT: the caller died before the answer; EINTR: retried at
		// the next poll.
		if (errno != ENOENT && errno != EINTR) {
			close(L->zy.listener);
			L->zy.listener = -1;
			L->ipc_touched = L->net_touched = 1;
		}
		return;
	}
	if (req.data.nr == SYS_socket) L->net_touched = 1;
	else L->ipc_touched = 1;
	struct seccomp_notif_resp resp;
	memset(&resp, 0, sizeof(resp));
	resp.id = req.id;
	resp.flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE;
	// ENOENT: the caller died meanwhile; nothing to answer.
	(void)ioctl(L->zy.listener, SECCOMP_IOCTL_NOTIF_SEND, &resp);
}

long corral_loop_run(struct corral_loop *L) {
	for (;;) {
		// While a job runs: wait for a packet, the main process's exit
		// (its pidfd), a System V call of one of its processes (the
		// zygote's listener) or the next round of orphan reaping.
		while (L->pid) {
			struct pollfd pfd[3] = {{L->sock, POLLIN, 0}, {L->pidfd, POLLIN, 0}, {L->zy.listener, POLLIN, 0}};
			int ready = poll(pfd, 3, L->reap_ms);
			if (ready < 0 && errno != EINTR) return -errno;
			if (ready > 0 && pfd[2].revents) serve_notification(L, pfd[2].revents);
			int r = reap(L);
			if (r < 0) return r;
			if (r > 0) L->reap_ms = CORRAL_REAP_MS;
			else if (ready == 0 && L->reap_ms < CORRAL_REAP_MAX_MS) L->reap_ms *= 2;
			if (ready > 0 && pfd[0].revents) break;
		}
		int fds[CORRAL_MAX_PKT_FDS], nfds;
		long n = receive(L, fds, &nfds);
		if (n <= 0) return n;
		switch ((unsigned char)L->buf[0]) {
		case CORRAL_PKT_SPAWN: {
			int rc = spawn(L, L->buf, (size_t)n, fds, nfds);
			if (rc < 0) return rc;
			break;
		}
		case CORRAL_PKT_KILL:
			close_fds(fds, nfds);
			kill(-1, SIGKILL);
			break;
		case CORRAL_PKT_PARK:
			close_fds(fds, nfds);
			park(L, L->buf, (size_t)n);
			break;
		case CORRAL_PKT_RESET: {
			close_fds(fds, nfds);
			int rc = reset(L, L->buf, (size_t)n);
			if (rc < 0) return rc;
			break;
		}
		default:
			// For Go.
			memcpy(L->fds, fds, sizeof(int) * (size_t)nfds);
			L->nfds = nfds;
			return n;
		}
	}
}
