package isolate

// The hostile-job suite: one sandbox, one hostile job per case. Each case
// checks the outcome it names, then shows that the slot is still healthy: a
// normal job runs in the same sandbox, a Reset succeeds and no process is
// left in the job cgroup. docs/security.md maps each case to the layer that
// stops it.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corralhq/corral/jobs"
)

// hostileSrc is one static helper for every scenario that busybox cannot
// play: it prints the errno name (or "ok") of the operation it tries.
const hostileSrc = `#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/shm.h>
#include <sys/sem.h>
#include <sys/msg.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <sys/wait.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <sys/file.h>

static const char *en(int e) {
	switch (e) {
	case 0: return "ok";
	case EPERM: return "EPERM";
	case EACCES: return "EACCES";
	case ENOENT: return "ENOENT";
	case EROFS: return "EROFS";
	case ETXTBSY: return "ETXTBSY";
	case EINVAL: return "EINVAL";
	case ENOSYS: return "ENOSYS";
	case ECONNREFUSED: return "ECONNREFUSED";
	case ENETUNREACH: return "ENETUNREACH";
	case EAFNOSUPPORT: return "EAFNOSUPPORT";
	case EADDRINUSE: return "EADDRINUSE";
	}
	static char buf[32];
	snprintf(buf, sizeof buf, "errno%d", e);
	return buf;
}

static void report(const char *what, long rc) {
	printf("%s %s\n", what, rc < 0 ? en(errno) : "ok");
}

int main(int argc, char **argv) {
	if (argc < 2) return 2;
	const char *s = argv[1];
	if (!strcmp(s, "ids")) {
		printf("uid=%ld euid=%ld\n", (long)syscall(SYS_getuid), (long)syscall(SYS_geteuid));
		report("setuid0", syscall(SYS_setuid, 0));
		printf("uid=%ld euid=%ld\n", (long)syscall(SYS_getuid), (long)syscall(SYS_geteuid));
	} else if (!strcmp(s, "wx")) {
		void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		report("mmap-wx", p == MAP_FAILED ? -1 : 0);
		void *q = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (q == MAP_FAILED) { report("mmap-rw", -1); return 1; }
		report("mprotect-wx", mprotect(q, 4096, PROT_READ | PROT_WRITE | PROT_EXEC));
	} else if (!strcmp(s, "openw")) {
		for (int i = 2; i < argc; i++) {
			int fd = open(argv[i], O_WRONLY);
			report(argv[i], fd);
			if (fd >= 0) close(fd);
		}
	} else if (!strcmp(s, "unixconn") && argc > 2) {
		int fd = socket(AF_UNIX, SOCK_STREAM, 0);
		if (fd < 0) { report("socket", -1); return 1; }
		struct sockaddr_un a;
		memset(&a, 0, sizeof a);
		a.sun_family = AF_UNIX;
		size_t n = strlen(argv[2]);
		if (n > sizeof a.sun_path - 1) return 2;
		memcpy(a.sun_path + 1, argv[2], n); /* abstract: leading NUL */
		report("connect", connect(fd, (struct sockaddr *)&a, offsetof(struct sockaddr_un, sun_path) + 1 + n));
	} else if ((!strcmp(s, "tcpconn") || !strcmp(s, "udpsend")) && argc > 2) {
		int tcp = !strcmp(s, "tcpconn");
		int fd = socket(AF_INET, tcp ? SOCK_STREAM : SOCK_DGRAM, 0);
		if (fd < 0) { report("socket", -1); return 1; }
		struct sockaddr_in a;
		memset(&a, 0, sizeof a);
		a.sin_family = AF_INET;
		a.sin_port = htons(atoi(argv[2]));
		a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		if (tcp) report("tcp-connect", connect(fd, (struct sockaddr *)&a, sizeof a));
		else report("udp-send", sendto(fd, "hostile", 7, 0, (struct sockaddr *)&a, sizeof a));
	} else if (!strcmp(s, "tcpself")) {
		/* A server and a client inside the job, on its own loopback. */
		int l = socket(AF_INET, SOCK_STREAM, 0);
		struct sockaddr_in a;
		socklen_t n = sizeof a;
		memset(&a, 0, sizeof a);
		a.sin_family = AF_INET;
		a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		report("tcp-bind", bind(l, (struct sockaddr *)&a, sizeof a));
		report("tcp-listen", listen(l, 1));
		getsockname(l, (struct sockaddr *)&a, &n);
		int c = socket(AF_INET, SOCK_STREAM, 0);
		report("tcp-connect-self", connect(c, (struct sockaddr *)&a, sizeof a));
	} else if (!strcmp(s, "syscalls")) {
		report("unshare", syscall(SYS_unshare, CLONE_NEWUSER));
		report("mount", syscall(SYS_mount, "none", "/tmp", "tmpfs", 0L, NULL));
		report("ptrace", syscall(SYS_ptrace, PTRACE_TRACEME, 0L, 0L, 0L));
		long pid = syscall(SYS_clone, (long)(CLONE_NEWUSER | SIGCHLD), 0L, 0L, 0L, 0L);
		if (pid == 0) syscall(SYS_exit_group, 0);
		if (pid > 0) waitpid(pid, NULL, 0);
		report("clone-newuser", pid);
		/* setns gets past the default profile for these four types
		   (the zygote's children use it) and fails on capabilities. */
		static const struct { const char *name, *path; int type; } ns[] = {
			{"setns-mnt", "/proc/self/ns/mnt", CLONE_NEWNS},
			{"setns-ipc", "/proc/self/ns/ipc", CLONE_NEWIPC},
			{"setns-cgroup", "/proc/self/ns/cgroup", CLONE_NEWCGROUP},
			{"setns-net", "/proc/self/ns/net", CLONE_NEWNET},
		};
		for (int i = 0; i < 4; i++) {
			int fd = open(ns[i].path, O_RDONLY);
			if (fd < 0) { report(ns[i].name, -1); continue; }
			report(ns[i].name, syscall(SYS_setns, fd, ns[i].type));
			close(fd);
		}
	} else if (!strcmp(s, "daemon")) {
		/* Leave the session, ignore every signal, outlive the parent. */
		pid_t pid = fork();
		if (pid < 0) { report("fork", -1); return 1; }
		if (pid > 0) { puts("parent leaving"); return 0; }
		setsid();
		for (int sig = 1; sig < 65; sig++) signal(sig, SIG_IGN);
		if (fork() > 0) _exit(0); /* and orphan the grandchild */
		for (;;) pause();
	} else if (!strcmp(s, "shmcreate")) {
		report("shmget", shmget(4242, 4096, IPC_CREAT | 0666));
	} else if (!strcmp(s, "semcreate")) {
		report("semget", semget(4243, 1, IPC_CREAT | 0666));
	} else if (!strcmp(s, "msgcreate")) {
		report("msgget", msgget(4244, IPC_CREAT | 0666));
	} else if (!strcmp(s, "xattrflip") && argc > 2) {
		/* Set a user xattr and take it away again. */
		report("setxattr", setxattr(argv[2], "user.corral", "x", 1, 0));
		report("removexattr", removexattr(argv[2], "user.corral"));
	} else if (!strcmp(s, "timesback") && argc > 2) {
		/* Change a file's times and put them back exactly. */
		struct stat st;
		if (stat(argv[2], &st) < 0) { report("stat", -1); return 1; }
		struct timespec later[2] = {{st.st_atim.tv_sec + 100, 0}, {st.st_mtim.tv_sec + 100, 0}};
		report("utimensat", utimensat(AT_FDCWD, argv[2], later, 0));
		struct timespec back[2] = {st.st_atim, st.st_mtim};
		report("utimensat-back", utimensat(AT_FDCWD, argv[2], back, 0));
	} else if (!strcmp(s, "locks") && argc > 2) {
		/* Locks change no inode: they go with the process. */
		int fd = open(argv[2], O_RDONLY | O_DIRECTORY);
		if (fd < 0) { report("open", -1); return 1; }
		report("flock", flock(fd, LOCK_EX));
	} else if (!strcmp(s, "stdinmark")) {
		/* Leave marks on stdin's open file: offset, status flags, a lock. */
		printf("seek %ld\n", (long)lseek(0, 123456, SEEK_SET));
		report("setfl", fcntl(0, F_SETFL, O_APPEND | O_NONBLOCK));
		report("flock", flock(0, LOCK_EX | LOCK_NB));
	} else if (!strcmp(s, "stdinstate")) {
		printf("pos %ld\n", (long)lseek(0, 0, SEEK_CUR));
		int fl = fcntl(0, F_GETFL);
		printf("flags %s\n", fl >= 0 && (fl & (O_APPEND | O_NONBLOCK)) ? "set" : "clear");
		report("flock", flock(0, LOCK_EX | LOCK_NB));
	} else if (!strcmp(s, "stdinwrite")) {
		/* Write into stdin's file, directly, reopened, or mapped. */
		report("pwrite", pwrite(0, "x", 1, 0));
		int fd = open("/proc/self/fd/0", O_RDWR);
		report("reopen-rw", fd);
		if (fd >= 0) {
			report("pwrite-reopened", pwrite(fd, "x", 1, 0));
			void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
			report("mmap-shared-rw", p == MAP_FAILED ? -1 : 0);
		}
	} else if (!strcmp(s, "gcycle") && argc > 2) {
		/* An O_TMPFILE of N MiB in /dev/shm, held only by a message that
		   also holds the very socket it waits in: a cycle no process owns
		   once every fd is closed. */
		int fd = open("/dev/shm", O_TMPFILE | O_RDWR, 0600);
		if (fd < 0) { report("tmpfile", -1); return 1; }
		static char mb[1 << 20];
		memset(mb, 1, sizeof mb);
		for (int i = 0; i < atoi(argv[2]); i++)
			if (write(fd, mb, sizeof mb) != (ssize_t)sizeof mb) { report("write", -1); return 1; }
		int sv[2];
		if (socketpair(AF_UNIX, SOCK_DGRAM, 0, sv) < 0) { report("socketpair", -1); return 1; }
		char c = 0;
		struct iovec iov = {&c, 1};
		union { struct cmsghdr h; char b[CMSG_SPACE(2 * sizeof(int))]; } u;
		memset(&u, 0, sizeof u);
		struct msghdr m;
		memset(&m, 0, sizeof m);
		m.msg_iov = &iov;
		m.msg_iovlen = 1;
		m.msg_control = u.b;
		m.msg_controllen = sizeof u.b;
		struct cmsghdr *h = CMSG_FIRSTHDR(&m);
		h->cmsg_level = SOL_SOCKET;
		h->cmsg_type = SCM_RIGHTS;
		h->cmsg_len = CMSG_LEN(2 * sizeof(int));
		int fds[2] = {sv[0], fd};
		memcpy(CMSG_DATA(h), fds, sizeof fds);
		report("sendmsg", sendmsg(sv[1], &m, 0));
		close(sv[0]);
		close(sv[1]);
		close(fd);
	} else if (!strcmp(s, "twmake") && argc > 2) {
		/* A loopback connection to PORT whose server end closes first:
		   that end, local port PORT, goes to TIME_WAIT. */
		int l = socket(AF_INET, SOCK_STREAM, 0);
		int one = 1;
		setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
		struct sockaddr_in a;
		memset(&a, 0, sizeof a);
		a.sin_family = AF_INET;
		a.sin_port = htons(atoi(argv[2]));
		a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		if (bind(l, (struct sockaddr *)&a, sizeof a) < 0 || listen(l, 1) < 0) { report("listen", -1); return 1; }
		int c = socket(AF_INET, SOCK_STREAM, 0);
		if (connect(c, (struct sockaddr *)&a, sizeof a) < 0) { report("connect", -1); return 1; }
		int s2 = accept(l, NULL, NULL);
		close(s2);
		usleep(50000);
		close(c);
		close(l);
		puts("tw made");
	} else if (!strcmp(s, "twbind") && argc > 2) {
		/* Bind PORT as a program that sets no SO_REUSEADDR does. */
		int l = socket(AF_INET, SOCK_STREAM, 0);
		struct sockaddr_in a;
		memset(&a, 0, sizeof a);
		a.sin_family = AF_INET;
		a.sin_port = htons(atoi(argv[2]));
		a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		report("bind", bind(l, (struct sockaddr *)&a, sizeof a));
	} else if (!strcmp(s, "tmpfiles") && argc > 3) {
		/* N unnamed files in DIR, each closed at once: no name, no trace
		   but the tmpfs's inode counter. */
		for (int i = 0; i < atoi(argv[2]); i++) {
			int fd = open(argv[3], O_TMPFILE | O_RDWR, 0600);
			if (fd < 0) { report("tmpfile", -1); return 1; }
			close(fd);
		}
		puts("tmpfiles ok");
	} else if (!strcmp(s, "tmpino") && argc > 2) {
		int fd = open(argv[2], O_TMPFILE | O_RDWR, 0600);
		struct stat st;
		if (fd < 0 || fstat(fd, &st) < 0) { report("tmpfile", -1); return 1; }
		printf("ino %lu\n", (unsigned long)st.st_ino);
	} else if (!strcmp(s, "alloc") && argc > 2) {
		size_t n = (size_t)atoi(argv[2]) << 20;
		char *p = malloc(n);
		if (!p) { report("malloc", -1); return 1; }
		memset(p, 1, n);
		puts("alloc ok");
	} else if (!strcmp(s, "shmcheck")) {
		puts(shmget(4242, 4096, 0) >= 0 ? "shm present" : "shm absent");
	} else {
		return 2;
	}
	return 0;
}
`

var hostileHelper struct {
	once sync.Once
	path string // empty when it could not be built
	why  string
}

// hostileTool builds the static helper once per test binary run.
func hostileTool(t *testing.T) (string, string) {
	hostileHelper.once.Do(func() {
		cc, err := exec.LookPath("cc")
		if err != nil {
			hostileHelper.why = "no C compiler (cc)"
			return
		}
		// Not t.TempDir: the binary outlives this test; the file is
		// copied into each image, so the directory goes right away.
		dir, err := os.MkdirTemp("", "corral-hostile-")
		if err != nil {
			hostileHelper.why = err.Error()
			return
		}
		defer os.RemoveAll(dir)
		src := filepath.Join(dir, "hostile.c")
		if err := os.WriteFile(src, []byte(hostileSrc), 0o644); err != nil {
			hostileHelper.why = err.Error()
			return
		}
		bin := filepath.Join(dir, "hostile")
		if out, err := exec.Command(cc, "-static", "-O1", "-o", bin, src).CombinedOutput(); err != nil {
			hostileHelper.why = "cc -static failed: " + err.Error() + ": " + strings.TrimSpace(string(out))
			return
		}
		data, err := os.ReadFile(bin)
		if err != nil {
			hostileHelper.why = err.Error()
			return
		}
		hostileBinary = data
		hostileHelper.path = "/bin/hostile"
	})
	return hostileHelper.path, hostileHelper.why
}

var hostileBinary []byte

// hostileSandbox is a sandbox whose image also holds the helper
// (/bin/hostile) and two setuid-root programs (/bin/suid-hostile, a copy of
// the helper, and /bin/busybox-suid).
func hostileSandbox(t *testing.T, mod ...func(*Config)) *Sandbox {
	t.Helper()
	needRoot(t)
	lower, runDir := testLower(t)
	hostileTool(t)
	suid := func(name string, data []byte) {
		p := filepath.Join(lower, "bin", name)
		if err := os.WriteFile(p, data, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(p, 0, 0); err != nil {
			t.Fatal(err)
		}
		// os.Chmod takes the setuid bit as os.ModeSetuid, not 04000.
		if err := os.Chmod(p, 0o755|os.ModeSetuid); err != nil { // after chown, which clears it
			t.Fatal(err)
		}
	}
	if hostileBinary != nil {
		if err := os.WriteFile(filepath.Join(lower, "bin/hostile"), hostileBinary, 0o755); err != nil {
			t.Fatal(err)
		}
		suid("suid-hostile", hostileBinary)
	}
	bb, err := os.ReadFile(filepath.Join(lower, "bin/busybox"))
	if err != nil {
		t.Fatal(err)
	}
	suid("busybox-suid", bb)
	cfg := Config{Lower: []string{lower}, RunDir: runDir}
	for _, m := range mod {
		m(&cfg)
	}
	return newSandboxWith(t, cfg)
}

func randHex(t *testing.T) string {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b[:])
}

func sh(script string) Process {
	return Process{Argv: []string{"sh", "-c", script}, Env: DefaultEnv}
}

func wantStatus(t *testing.T, r *jobs.StepResult, want jobs.Status) {
	t.Helper()
	if r.Status != want {
		t.Fatalf("status %s, want %s: exit %d signal %q stdout %q stderr %q usage %+v",
			r.Status, want, r.ExitCode, r.Signal, r.Stdout, r.Stderr, r.Usage)
	}
}

func wantLines(t *testing.T, r *jobs.StepResult, lines ...string) {
	t.Helper()
	got := strings.Split(strings.TrimSuffix(r.Stdout, "\n"), "\n")
	for _, l := range lines {
		found := false
		for _, g := range got {
			if g == l {
				found = true
			}
		}
		if !found {
			t.Errorf("no line %q in stdout %q (stderr %q)", l, r.Stdout, r.Stderr)
		}
	}
}

type hostileCase struct {
	name   string
	helper bool // needs /bin/hostile
	// prep runs before the job (e.g. a small writable layer).
	prep func(t *testing.T, sb *Sandbox)
	// job builds the hostile process; limits and profile included.
	job   func(t *testing.T) Process
	check func(t *testing.T, r *jobs.StepResult, wall time.Duration)
	// after runs after the slot's Reset (state that must not survive it).
	after func(t *testing.T, sb *Sandbox)
}

func TestHostile(t *testing.T) {
	sb := hostileSandbox(t)
	_, why := hostileTool(t)
	hostHostname, err := os.ReadFile("/etc/hostname")
	if err != nil {
		t.Fatal(err)
	}
	hostName := strings.TrimSpace(string(hostHostname))

	cases := []hostileCase{
		{
			name: "fork bomb",
			job: func(t *testing.T) Process {
				p := sh(`b() { b | b & }; b; sleep 1`)
				p.Limits = jobs.Limits{Pids: 32, WallTimeMs: 5000}
				return p
			},
			check: func(t *testing.T, r *jobs.StepResult, wall time.Duration) {
				if !r.PidsLimitReached {
					t.Errorf("pids_limit_reached not set: %s exit %d stderr %.200q", r.Status, r.ExitCode, r.Stderr)
				}
				if r.Status == jobs.StatusWallTimeLimit || wall > 4500*time.Millisecond {
					t.Errorf("the bomb held the step: %s after %v", r.Status, wall)
				}
			},
		},
		{
			name: "memory bomb",
			job: func(t *testing.T) Process {
				// The string doubles until the cgroup kills the shell.
				p := sh(`x=0123456789abcdef; while :; do x=$x$x; done`)
				p.Limits = jobs.Limits{MemoryBytes: 64 << 20, WallTimeMs: 10000}
				return p
			},
			check: func(t *testing.T, r *jobs.StepResult, _ time.Duration) {
				wantStatus(t, r, jobs.StatusMemoryLimit)
				if r.Usage.MemoryPeakBytes > 80<<20 {
					t.Errorf("peak %d past the 64 MiB limit", r.Usage.MemoryPeakBytes)
				}
			},
		},
		{
			name: "busy loop",
			job: func(t *testing.T) Process {
				p := sh(`while :; do :; done`)
				p.Limits = jobs.Limits{CPUTimeMs: 300, WallTimeMs: 10000}
				return p
			},
			check: func(t *testing.T, r *jobs.StepResult, _ time.Duration) {
				wantStatus(t, r, jobs.StatusCPUTimeLimit)
			},
		},
		{
			name: "sleep past wall",
			job: func(t *testing.T) Process {
				p := Process{Argv: []string{"sleep", "30"}, Env: DefaultEnv}
				p.Limits = jobs.Limits{WallTimeMs: 300}
				return p
			},
			check: func(t *testing.T, r *jobs.StepResult, wall time.Duration) {
				wantStatus(t, r, jobs.StatusWallTimeLimit)
				if wall > 3*time.Second {
					t.Errorf("a 300 ms wall limit took %v", wall)
				}
			},
		},
		{
			name: "output flood",
			job: func(t *testing.T) Process {
				p := sh(`yes flood & yes flood >&2`)
				p.Limits = jobs.Limits{OutputBytes: 4096}
				return p
			},
			check: func(t *testing.T, r *jobs.StepResult, _ time.Duration) {
				wantStatus(t, r, jobs.StatusOutputLimit)
				if len(r.Stdout) > 4096 || len(r.Stderr) > 4096 {
					t.Errorf("kept %d/%d bytes past a 4096-byte cap", len(r.Stdout), len(r.Stderr))
				}
			},
		},
		{
			name: "disk full",
			prep: func(t *testing.T, sb *Sandbox) {
				if err := sb.Reset(context.Background(), 2<<20); err != nil {
					t.Fatal(err)
				}
			},
			job: func(t *testing.T) Process {
				return sh(`dd if=/dev/zero of=/work/fill bs=64k count=64`)
			},
			check: func(t *testing.T, r *jobs.StepResult, _ time.Duration) {
				wantStatus(t, r, jobs.StatusNonzeroExit)
				if !strings.Contains(r.Stderr, "No space left") {
					t.Errorf("want ENOSPC, stderr %q", r.Stderr)
				}
			},
			after: func(t *testing.T, sb *Sandbox) {
				// The default-sized layer is back and empty.
				r := run(t, sb, jobs.Limits{}, "sh", "-c", "dd if=/dev/zero of=/work/fill bs=64k count=64 2>/dev/null && ls /work")
				if r.Status != jobs.StatusOK || r.Stdout != "fill\n" {
					t.Fatalf("4 MiB after the reset: %s %q %q", r.Status, r.Stdout, r.Stderr)
				}
			},
		},
		{
			name: "file past size limit",
			job: func(t *testing.T) Process {
				p := sh(`dd if=/dev/zero of=/tmp/big bs=64k count=64`)
				p.Limits = jobs.Limits{FileSizeBytes: 1 << 20}
				return p
			},
			check: func(t *testing.T, r *jobs.StepResult, _ time.Duration) {
				wantStatus(t, r, jobs.StatusFileSizeLimit)
			},
		},
		{
			name: "host paths",
			job: func(t *testing.T) Process {
				// Every read that yields data prints "DATA <path>: <line>";
				// paths that climb out of the root print what they find
				// ("SEEN"), which must be the image's, not the host's.
				return sh(`
for p in /etc/shadow /root /proc/1/environ /proc/1/root/etc/hostname /proc/1/cwd/etc/hostname \
         /proc/1/exe /proc/1/mem /proc/1/maps /sys/firmware; do
  cat "$p" 2>/dev/null | tr '\0' '\n' | sed "s|^|DATA $p: |" | head -5
done
for d in /root /proc/1/root/ /proc/1/fd; do ls -A $d; done 2>/dev/null | sed 's|^|DATA ls: |'
readlink /proc/1/exe /proc/1/root 2>/dev/null | sed 's|^|DATA readlink: |'
[ -e /sys/firmware ] && echo "EXISTS /sys/firmware"
[ -e /sys ] && echo "EXISTS /sys"
for p in /etc/hostname /../../etc/hostname /proc/self/root/../../etc/hostname /proc/self/cwd/../../../etc/hostname; do
  echo "SEEN $p: $(cat $p 2>/dev/null)"
done
[ -e /proc/1 ] && echo "SEEN pid 1"
for c in /proc/[0-9]*/comm; do echo "COMM $(cat $c 2>/dev/null)"; done
exit 0`)
			},
			check: func(t *testing.T, r *jobs.StepResult, _ time.Duration) {
				wantStatus(t, r, jobs.StatusOK)
				for _, l := range strings.Split(r.Stdout, "\n") {
					if strings.HasPrefix(l, "DATA ") || strings.HasPrefix(l, "EXISTS ") {
						t.Errorf("host data or path reached: %q", l)
					}
					if hostName != "" && (l == hostName || strings.HasSuffix(l, ": "+hostName)) {
						t.Errorf("the host's /etc/hostname (%q) printed: %q", hostName, l)
					}
				}
				for _, p := range []string{"/etc/hostname", "/../../etc/hostname", "/proc/self/root/../../etc/hostname", "/proc/self/cwd/../../../etc/hostname"} {
					wantLines(t, r, "SEEN "+p+": image")
				}
				// Its /proc shows its own processes only (hidepid): not the
				// host's, and not the sandbox's init and zygote, whose
				// statistics grow over the sandbox's jobs.
				comms := 0
				for _, l := range strings.Split(r.Stdout, "\n") {
					if l == "SEEN pid 1" {
						t.Errorf("the sandbox's pid 1 is visible to the job")
					}
					if c, ok := strings.CutPrefix(l, "COMM "); ok {
						comms++
						if c != "sh" && c != "cat" {
							t.Errorf("a process not the job's is visible: %q", l)
						}
					}
				}
				if comms == 0 {
					t.Errorf("the job saw no process, not even itself:\n%s", r.Stdout)
				}
			},
		},
		{
			name: "the stage under the job root",
			job: func(t *testing.T) Process {
				// The job root covers the stage's copies in its mount
				// namespace: no path, and no line of mountinfo, leads
				// there. Mount points print as "MNT <path>".
				return sh(`
awk '{print "MNT " $5}' /proc/self/mountinfo
for d in / /.. /proc/self/root/..; do echo "INODE $d $(stat -c %i $d)"; done
for p in /lower /rw /proc/self/root/../lower /proc/self/root/../rw /../../lower; do
  [ -e "$p" ] && echo "EXISTS $p"
done
umount -l / 2>/dev/null && echo "UNMOUNTED /"
exit 0`)
			},
			check: func(t *testing.T, r *jobs.StepResult, _ time.Duration) {
				wantStatus(t, r, jobs.StatusOK)
				var inode string
				for _, l := range strings.Split(strings.TrimSpace(r.Stdout), "\n") {
					f := strings.Fields(l)
					switch {
					case f[0] == "MNT":
						ok := f[1] == "/" || f[1] == "/proc" || f[1] == "/dev" ||
							strings.HasPrefix(f[1], "/proc/") || strings.HasPrefix(f[1], "/dev/")
						if !ok {
							t.Errorf("a mount outside the job's /, /proc and /dev: %q", l)
						}
					case f[0] == "INODE":
						if inode == "" {
							inode = f[2]
						} else if f[2] != inode {
							t.Errorf("climbing above the root reached another directory: %q (/ is %s)", l, inode)
						}
					default:
						t.Errorf("%q", l)
					}
				}
				if !strings.Contains(r.Stdout, "MNT /\n") {
					t.Errorf("no mount at /: %q", r.Stdout)
				}
			},
		},
		{
			name: "setuid(0)", helper: true,
			job: func(t *testing.T) Process {
				return Process{Argv: []string{"hostile", "ids"}, Env: DefaultEnv}
			},
			check: func(t *testing.T, r *jobs.StepResult, _ time.Duration) {
				wantStatus(t, r, jobs.StatusOK)
				wantLines(t, r, "setuid0 EPERM")
				if r.Stdout != "uid=1000 euid=1000\nsetuid0 EPERM\nuid=1000 euid=1000\n" {
					t.Errorf("stdout %q", r.Stdout)
				}
			},
		},
		{
			name: "setuid-root binary in the image",
			job: func(t *testing.T) Process {
				s := `ls -ln /bin/busybox-suid | awk '{print "mode", $1}'
busybox-suid id -u
busybox-suid id -u -r`
				if hostileBinary != nil {
					s += "\nsuid-hostile ids"
				}
				return sh(s)
			},
			check: func(t *testing.T, r *jobs.StepResult, _ time.Duration) {
				wantStatus(t, r, jobs.StatusOK)
				lines := strings.Split(strings.TrimSpace(r.Stdout), "\n")
				if len(lines) < 3 || !strings.HasPrefix(lines[0], "mode -rws") || lines[1] != "1000" || lines[2] != "1000" {
					t.Fatalf("setuid busybox: want mode -rws… and uid 1000: %q %q", r.Stdout, r.Stderr)
				}
				if hostileBinary != nil {
					if want := "uid=1000 euid=1000\nsetuid0 EPERM\nuid=1000 euid=1000"; strings.Join(lines[3:], "\n") != want {
						t.Errorf("setuid helper: %q, want %q", lines[3:], want)
					}
				}
			},
		},
		{
			name: "open /proc/self/exe and /proc/1/exe for writing", helper: true,
			job: func(t *testing.T) Process {
				return Process{Argv: []string{"hostile", "openw", "/proc/self/exe", "/proc/1/exe", "/bin/busybox"}, Env: DefaultEnv}
			},
			check: func(t *testing.T, r *jobs.StepResult, _ time.Duration) {
				wantStatus(t, r, jobs.StatusOK)
				for _, l := range strings.Split(strings.TrimSpace(r.Stdout), "\n") {
					if strings.HasSuffix(l, " ok") {
						t.Errorf("opened for writing: %q", l)
					}
				}
				if n := strings.Count(r.Stdout, "\n"); n != 3 {
					t.Errorf("stdout %q", r.Stdout)
				}
			},
		},
		{
			name: "W+X memory under strict", helper: true,
			job: func(t *testing.T) Process {
				return Process{Argv: []string{"hostile", "wx"}, Env: DefaultEnv, Seccomp: SeccompStrict}
			},
			check: func(t *testing.T, r *jobs.StepResult, _ time.Duration) {
				wantStatus(t, r, jobs.StatusOK)
				wantLines(t, r, "mmap-wx EPERM", "mprotect-wx EPERM")
			},
		},
		{
			name: "W+X memory under default", helper: true,
			job: func(t *testing.T) Process {
				return Process{Argv: []string{"hostile", "wx"}, Env: DefaultEnv}
			},
			check: func(t *testing.T, r *jobs.StepResult, _ time.Duration) {
				wantStatus(t, r, jobs.StatusOK)
				wantLines(t, r, "mmap-wx ok", "mprotect-wx ok")
			},
		},
		{
			name: "daemon outlives its parent", helper: true,
			job: func(t *testing.T) Process {
				p := Process{Argv: []string{"hostile", "daemon"}, Env: DefaultEnv}
				p.Limits = jobs.Limits{WallTimeMs: 10000}
				return p
			},
			check: func(t *testing.T, r *jobs.StepResult, wall time.Duration) {
				wantStatus(t, r, jobs.StatusOK)
				if wall > 5*time.Second {
					t.Errorf("the daemon held the step for %v", wall)
				}
				// assertEmpty, right after, shows it is gone.
			},
		},
		{
			name: "SysV IPC and /dev/shm left for the next job", helper: true,
			job: func(t *testing.T) Process {
				return sh(`hostile shmcreate && hostile shmcheck && echo secret > /dev/shm/left && ls /dev/shm`)
			},
			check: func(t *testing.T, r *jobs.StepResult, _ time.Duration) {
				wantStatus(t, r, jobs.StatusOK)
				wantLines(t, r, "shmget ok", "shm present", "left")
			},
			after: func(t *testing.T, sb *Sandbox) {
				r := run(t, sb, jobs.Limits{}, "sh", "-c", "hostile shmcheck; ls -A /dev/shm; cat /dev/shm/left 2>/dev/null; exit 0")
				if r.Status != jobs.StatusOK || r.Stdout != "shm absent\n" {
					t.Fatalf("state of the last job visible after the reset: %s %q %q", r.Status, r.Stdout, r.Stderr)
				}
			},
		},
		{
			name: "host loopback port and abstract socket", helper: true,
			job: func(t *testing.T) Process {
				tcp, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				abs := "corral-test-" + randHex(t)
				ux, err := net.Listen("unix", "@"+abs)
				if err != nil {
					t.Fatal(err)
				}
				// UDP too: Landlock (ABI 4+) restricts only TCP, so a
				// datagram shows what the network namespace alone does.
				udp, err := net.ListenPacket("udp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				accepted := make(chan string, 3)
				var wg sync.WaitGroup
				for _, l := range []net.Listener{tcp, ux} {
					wg.Add(1)
					go func(l net.Listener) {
						defer wg.Done()
						for {
							c, err := l.Accept()
							if err != nil {
								return
							}
							accepted <- l.Addr().String()
							c.Close()
						}
					}(l)
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					buf := make([]byte, 64)
					for {
						if _, _, err := udp.ReadFrom(buf); err != nil {
							return
						}
						accepted <- "udp " + udp.LocalAddr().String()
					}
				}()
				// Registered before the case's checks run; cleanups run
				// after the subtest's body, so the job is over by then.
				t.Cleanup(func() {
					tcp.Close()
					ux.Close()
					udp.Close()
					wg.Wait()
					close(accepted)
					for a := range accepted {
						t.Errorf("the host listener %s got a connection or datagram from the job", a)
					}
				})
				port := strconv.Itoa(tcp.Addr().(*net.TCPAddr).Port)
				uport := strconv.Itoa(udp.LocalAddr().(*net.UDPAddr).Port)
				return sh(`nc -w 1 127.0.0.1 ` + port + ` </dev/null && echo "TCP CONNECTED"
hostile tcpconn ` + port + `
hostile udpsend ` + uport + `
hostile unixconn ` + abs + `
hostile tcpself
exit 0`)
			},
			check: func(t *testing.T, r *jobs.StepResult, _ time.Duration) {
				wantStatus(t, r, jobs.StatusOK)
				if strings.Contains(r.Stdout, "TCP CONNECTED") {
					t.Errorf("the job reached the host's 127.0.0.1: %q", r.Stdout)
				}
				// The host's abstract socket does not exist in the job's
				// network namespace.
				wantLines(t, r, "connect ECONNREFUSED")
				// Nothing listens on that port in the job's own network
				// namespace: the connect is refused there.
				if !strings.Contains(r.Stdout, "tcp-connect ECONNREFUSED") {
					t.Errorf("tcp connect to the host's port: %q", r.Stdout)
				}
				// The UDP datagram leaves,
				// on the job's own loopback, and the host sees nothing
				// (checked when the listeners close).
				wantLines(t, r, "udp-send ok")
			},
		},
		{
			name: "change the hostname",
			job: func(t *testing.T) Process {
				before, err := os.Hostname()
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() {
					if after, err := os.Hostname(); err != nil || after != before {
						t.Errorf("the host's hostname changed: %q -> %q (%v)", before, after, err)
					}
				})
				return sh(`hostname evil; echo "rc $?"; hostname`)
			},
			check: func(t *testing.T, r *jobs.StepResult, _ time.Duration) {
				wantStatus(t, r, jobs.StatusOK)
				wantLines(t, r, "rc 1", "corral")
				if !strings.Contains(r.Stderr, "not permitted") {
					t.Errorf("want EPERM from sethostname, stderr %q", r.Stderr)
				}
			},
		},
		{
			name: "denied syscalls through the whole stack", helper: true,
			job: func(t *testing.T) Process {
				return Process{Argv: []string{"hostile", "syscalls"}, Env: DefaultEnv}
			},
			check: func(t *testing.T, r *jobs.StepResult, _ time.Duration) {
				wantStatus(t, r, jobs.StatusOK)
				wantLines(t, r, "unshare EPERM", "mount EPERM", "ptrace EPERM", "clone-newuser EPERM",
					"setns-mnt EPERM", "setns-ipc EPERM", "setns-cgroup EPERM", "setns-net EPERM")
			},
		},
	}

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.helper && hostileBinary == nil {
				t.Skipf("needs the static C helper: %s", why)
			}
			if tc.prep != nil {
				tc.prep(t, sb)
			}
			p := tc.job(t)
			start := time.Now()
			r, err := sb.Run(context.Background(), p)
			wall := time.Since(start)
			if err != nil {
				t.Fatalf("Run %q: %v", p.Argv, err)
			}
			t.Logf("%s in %v: exit %d signal %q stdout %.300q stderr %.300q", r.Status, wall.Round(time.Millisecond), r.ExitCode, r.Signal, r.Stdout, r.Stderr)
			tc.check(t, r, wall)
			assertEmpty(t, sb)
			// The slot stays healthy: a normal job, a reset, nothing left.
			if ok := run(t, sb, jobs.Limits{}, "echo", "ok"); ok.Status != jobs.StatusOK || ok.Stdout != "ok\n" {
				t.Fatalf("echo ok after %s: %+v", tc.name, ok)
			}
			if err := sb.Reset(context.Background(), 0); err != nil {
				t.Fatalf("Reset after %s: %v", tc.name, err)
			}
			assertEmpty(t, sb)
			if tc.after != nil {
				tc.after(t, sb)
			}
		})
	}
}
