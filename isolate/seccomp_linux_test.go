package isolate

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	seccomp "github.com/seccomp/libseccomp-golang"
	"golang.org/x/sys/unix"
)

func TestParseSeccompProfile(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want SeccompProfile
		err  bool
	}{
		{"", SeccompDefault, false},
		{"default", SeccompDefault, false},
		{"strict", SeccompStrict, false},
		{"off", "", true},
		{"unconfined", "", true},
		{"Default", "", true},
		{" strict", "", true},
	} {
		got, err := ParseSeccompProfile(tc.in)
		if tc.err {
			if !errors.Is(err, ErrSeccompProfile) {
				t.Errorf("ParseSeccompProfile(%q) = %q, %v; want an ErrSeccompProfile", tc.in, got, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseSeccompProfile(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestSeccompProgramCompiles(t *testing.T) {
	for _, p := range []SeccompProfile{SeccompDefault, SeccompStrict} {
		prog, err := seccompProgram(p)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		again, err := seccompProgram(p)
		if err != nil || len(again) != len(prog) || &again[0] != &prog[0] {
			t.Errorf("%s: second call built a new program (%v)", p, err)
		}
		// The program starts by checking the architecture, like every
		// libseccomp program: load seccomp_data.arch (offset 4).
		if first := prog[0]; first.Code != unix.BPF_LD|unix.BPF_W|unix.BPF_ABS || first.K != 4 {
			t.Errorf("%s: first instruction %+v does not load the architecture", p, first)
		}
		if last := prog[len(prog)-1]; last.Code&0x07 != unix.BPF_RET {
			t.Errorf("%s: last instruction %+v is not a return", p, last)
		}
		t.Logf("%s: %d instructions", p, len(prog))
	}
	if _, err := seccompProgram("off"); !errors.Is(err, ErrSeccompProfile) {
		t.Errorf(`seccompProgram("off") = %v, want ErrSeccompProfile`, err)
	}
}

// TestSeccompRulesNeverAllowDenied checks the profiles' tables: no
// always-denied syscall is in an allowing rule, every name resolves, and no
// name is listed twice as unconditionally allowed.
func TestSeccompRulesNeverAllowDenied(t *testing.T) {
	for _, p := range []SeccompProfile{SeccompDefault, SeccompStrict} {
		rules, err := seccompRules(p, 0)
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		for _, r := range rules {
			for _, name := range r.names {
				if _, _, err := seccompSyscall(name); err != nil {
					t.Errorf("%s: %v", p, err)
				}
				setns := p == SeccompDefault && name == "setns" && len(r.conds) == 1 &&
					r.conds[0].Op == seccomp.CompareEqual && slices.Contains(seccompSetnsTypes, r.conds[0].Operand1)
				if r.errno == 0 && slices.Contains(seccompAlwaysDenied, name) && !setns {
					t.Errorf("%s allows always-denied %s", p, name)
				}
				if r.errno == 0 && len(r.conds) == 0 {
					if seen[name] {
						t.Errorf("%s lists %s twice", p, name)
					}
					seen[name] = true
				}
			}
		}
	}
	// The check in seccompRules itself.
	saved := seccompStrictAllowed
	defer func() { seccompStrictAllowed = saved }()
	seccompStrictAllowed = append(slices.Clip(saved), "ptrace")
	if _, err := seccompRules(SeccompStrict, 0); err == nil {
		t.Error("seccompRules accepted a profile allowing ptrace")
	}
}

func TestSeccompParseSockFilters(t *testing.T) {
	for _, n := range []int{0, 7, 9, (unix.BPF_MAXINSNS + 1) * sockFilterSize} {
		if _, err := parseSockFilters(make([]byte, n)); err == nil {
			t.Errorf("parseSockFilters accepted %d bytes", n)
		}
	}
	b := []byte{0x06, 0, 1, 2, 0, 0, 0xff, 0x7f}
	prog, err := parseSockFilters(b)
	if err != nil || len(prog) != 1 || prog[0] != (unix.SockFilter{Code: 6, Jt: 1, Jf: 2, K: binary.NativeEndian.Uint32(b[4:])}) {
		t.Errorf("parseSockFilters = %+v, %v", prog, err)
	}
}

// scLoaderSource is the test's seccomp loader: `loader PROGRAM SCENARIO
// [ARGS]` sets no_new_privs, loads the BPF program in file PROGRAM ("none":
// no filter), then runs SCENARIO and prints "ok", "errno N" or "absent" (no
// such syscall here), or with SCENARIO "exec" executes ARGS. Arguments are
// chosen so that every scenario is harmless without a filter, even as root:
// the unfiltered results are the baseline that tells the filter's EPERM from
// the kernel's.
const scLoaderSource = `
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/timex.h>
#include <sys/wait.h>
#include <linux/filter.h>
#include <linux/seccomp.h>

#ifndef SYS_open_tree_attr
#define SYS_open_tree_attr 467
#endif

static struct sock_filter prog[BPF_MAXINSNS];

static void out(const char *s) {
	size_t n = strlen(s);
	while (n > 0) {
		ssize_t w = write(1, s, n);
		if (w <= 0) _exit(3);
		s += w;
		n -= w;
	}
}

static int report(long r) {
	char buf[64];
	if (r < 0) snprintf(buf, sizeof buf, "errno %d\n", errno);
	else snprintf(buf, sizeof buf, "ok\n");
	out(buf);
	return 0;
}

static void *thread_main(void *arg) { return arg; }

static long do_clone(unsigned long flags) {
	long pid = syscall(SYS_clone, flags | SIGCHLD, 0, 0, 0, 0);
	if (pid == 0) syscall(SYS_exit_group, 0);
	if (pid < 0) return pid;
	int st;
	if (waitpid(pid, &st, 0) < 0) return -1;
	return 0;
}

#define NOFILE "/nonexistent-corral"

static long scenario(const char *s, char **args) {
	struct timespec ts = {0, 0};
	struct timex tx;
	memset(&tx, 0, sizeof tx);
	if (!strcmp(s, "getpid")) return syscall(SYS_getpid);
	if (!strcmp(s, "unknown")) return syscall(1000);
	if (!strcmp(s, "ptrace")) return syscall(SYS_ptrace, 0x7fffffff, 0, 0, 0);
	if (!strcmp(s, "mount")) return syscall(SYS_mount, "none", NOFILE, "tmpfs", 0, NULL);
	if (!strcmp(s, "umount2")) return syscall(SYS_umount2, NOFILE, 0);
	if (!strcmp(s, "fsopen")) return syscall(SYS_fsopen, "corral-no-such-fs", 0);
	if (!strcmp(s, "fsconfig")) return syscall(SYS_fsconfig, -1, 0, NULL, NULL, 0);
	if (!strcmp(s, "fsmount")) return syscall(SYS_fsmount, -1, 0, 0);
	if (!strcmp(s, "fspick")) return syscall(SYS_fspick, -1, "x", 0);
	if (!strcmp(s, "move_mount")) return syscall(SYS_move_mount, -1, "x", -1, "y", 0);
	if (!strcmp(s, "open_tree")) return syscall(SYS_open_tree, -1, "x", 0);
	if (!strcmp(s, "open_tree_attr")) return syscall(SYS_open_tree_attr, -1, "x", 0, NULL, 0);
	if (!strcmp(s, "mount_setattr")) return syscall(SYS_mount_setattr, -1, "x", 0, NULL, 0);
	if (!strcmp(s, "pivot_root")) return syscall(SYS_pivot_root, NOFILE "-a", NOFILE "-b");
	if (!strcmp(s, "chroot")) return syscall(SYS_chroot, NOFILE);
	if (!strcmp(s, "unshare")) return syscall(SYS_unshare, 0);
	if (!strcmp(s, "setns")) return syscall(SYS_setns, -1, 0);
	if (!strcmp(s, "setns-type")) return syscall(SYS_setns, -1, strtoul(args[0], NULL, 0));
	if (!strcmp(s, "keyctl")) return syscall(SYS_keyctl, 0x7fffffff, 0, 0, 0, 0);
	if (!strcmp(s, "add_key")) return syscall(SYS_add_key, NULL, NULL, NULL, 0, 0);
	if (!strcmp(s, "request_key")) return syscall(SYS_request_key, NULL, NULL, NULL, 0);
	if (!strcmp(s, "bpf")) return syscall(SYS_bpf, 0x7fffffff, NULL, 0);
	if (!strcmp(s, "perf_event_open")) return syscall(SYS_perf_event_open, NULL, 0, -1, -1, 0);
	if (!strcmp(s, "io_uring_setup")) return syscall(SYS_io_uring_setup, 0, NULL);
	if (!strcmp(s, "io_uring_enter")) return syscall(SYS_io_uring_enter, -1, 0, 0, 0, NULL, 0);
	if (!strcmp(s, "io_uring_register")) return syscall(SYS_io_uring_register, -1, 0, NULL, 0);
	if (!strcmp(s, "userfaultfd")) return syscall(SYS_userfaultfd, 0x7fffffff);
	if (!strcmp(s, "kexec_load")) return syscall(SYS_kexec_load, 0, 0, NULL, 0x8000);
	if (!strcmp(s, "kexec_file_load")) return syscall(SYS_kexec_file_load, -1, -1, 0, NULL, 0x8000);
	if (!strcmp(s, "init_module")) return syscall(SYS_init_module, NULL, 0, "");
	if (!strcmp(s, "finit_module")) return syscall(SYS_finit_module, -1, "", 0);
	if (!strcmp(s, "delete_module")) return syscall(SYS_delete_module, "corral_no_such_module", O_NONBLOCK);
	if (!strcmp(s, "reboot")) return syscall(SYS_reboot, 0, 0, 0, NULL); // bad magic
	if (!strcmp(s, "swapon")) return syscall(SYS_swapon, NOFILE, 0);
	if (!strcmp(s, "swapoff")) return syscall(SYS_swapoff, NOFILE);
	if (!strcmp(s, "acct")) return syscall(SYS_acct, NOFILE "/x");
	if (!strcmp(s, "open_by_handle_at")) return syscall(SYS_open_by_handle_at, -1, NULL, 0);
	if (!strcmp(s, "name_to_handle_at")) return syscall(SYS_name_to_handle_at, AT_FDCWD, "/", NULL, NULL, 0);
	if (!strcmp(s, "process_vm_readv")) return syscall(SYS_process_vm_readv, getpid(), NULL, 0, NULL, 0, 0);
	if (!strcmp(s, "process_vm_writev")) return syscall(SYS_process_vm_writev, getpid(), NULL, 0, NULL, 0, 0);
#ifdef SYS_ioperm
	if (!strcmp(s, "ioperm")) return syscall(SYS_ioperm, 0x10000, 1, 0);
#endif
#ifdef SYS_iopl
	if (!strcmp(s, "iopl")) return syscall(SYS_iopl, 4);
#endif
	if (!strcmp(s, "syslog")) return syscall(SYS_syslog, 0x7fff, NULL, 0);
	if (!strcmp(s, "settimeofday")) return syscall(SYS_settimeofday, NULL, NULL);
	if (!strcmp(s, "clock_settime")) return syscall(SYS_clock_settime, CLOCK_MONOTONIC, &ts);
	if (!strcmp(s, "clock_adjtime")) return syscall(SYS_clock_adjtime, CLOCK_REALTIME, &tx); // modes 0: read
	if (!strcmp(s, "adjtimex")) return syscall(SYS_adjtimex, &tx);
	if (!strcmp(s, "personality")) return syscall(SYS_personality, strtoul(args[0], NULL, 0));
	if (!strcmp(s, "clone")) return do_clone(strtoul(args[0], NULL, 0));
	if (!strcmp(s, "clone3")) return syscall(SYS_clone3, NULL, 0);
	if (!strcmp(s, "fork")) {
		pid_t pid = fork();
		if (pid == 0) _exit(0);
		if (pid < 0) return -1;
		int st;
		return waitpid(pid, &st, 0);
	}
	if (!strcmp(s, "thread")) {
		pthread_t th;
		int e = pthread_create(&th, NULL, thread_main, NULL);
		if (e) { errno = e; return -1; }
		return pthread_join(th, NULL) ? -1 : 0;
	}
	if (!strcmp(s, "socket") || !strcmp(s, "socketpair")) {
		int family = atoi(args[0]), type = atoi(args[1]), proto = atoi(args[2]);
		if (!strcmp(s, "socket")) return socket(family, type, proto);
		int sv[2];
		return socketpair(family, type, proto, sv);
	}
	if (!strcmp(s, "mmap")) {
		void *p = mmap(NULL, 4096, strtoul(args[0], NULL, 0), MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		return p == MAP_FAILED ? -1 : 0;
	}
	if (!strcmp(s, "mprotect")) {
		void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED) { out("mmap failed\n"); _exit(4); }
		return mprotect(p, 4096, strtoul(args[0], NULL, 0));
	}
	if (!strcmp(s, "openat")) return syscall(SYS_openat, AT_FDCWD, args[0], strtoul(args[1], NULL, 0), 0600);
	if (!strcmp(s, "socket-sweep")) {
		// Every family with an invalid type: the kernel checks the family
		// range, then the type (EINVAL), then whether the family exists.
		for (int family = 0; family < 64; family++) {
			char buf[32];
			long r = socket(family, 15, atoi(args[0]));
			snprintf(buf, sizeof buf, "%d %d\n", family, r < 0 ? errno : 0);
			out(buf);
		}
		_exit(0);
	}
	if (!strcmp(s, "x32")) return syscall(0x40000000 | SYS_getpid);
#ifdef __x86_64__
	if (!strcmp(s, "i386")) {
		long r = 20; // i386 getpid
		__asm__ volatile("int $0x80" : "+a"(r) : : "memory");
		return r;
	}
#endif
	out("absent\n");
	_exit(0);
}

int main(int argc, char **argv) {
	if (argc < 3) { out("usage: loader PROGRAM SCENARIO [ARGS]\n"); return 2; }
	if (strcmp(argv[1], "none")) {
		int fd = open(argv[1], O_RDONLY | O_CLOEXEC);
		if (fd < 0) { perror("open"); return 2; }
		ssize_t n = read(fd, prog, sizeof prog);
		if (n <= 0 || n % sizeof prog[0]) { out("bad program\n"); return 2; }
		close(fd);
		struct sock_fprog fprog = {(unsigned short)(n / sizeof prog[0]), prog};
		if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)) { perror("no_new_privs"); return 2; }
		if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &fprog)) { perror("seccomp"); return 2; }
	}
	if (!strcmp(argv[2], "exec")) {
		execv(argv[3], argv + 3);
		return report(-1);
	}
	return report(scenario(argv[2], argv + 3));
}
`

// scLoader compiles the loader, static so that it runs under strict, and
// writes each profile's program next to it (and, when an errno is given,
// programs whose default action is that errno instead of EPERM).
type scLoader struct {
	path     string
	programs map[SeccompProfile]string
}

func newSCLoader(t *testing.T, def unix.Errno) *scLoader {
	t.Helper()
	cc, err := exec.LookPath("cc")
	if err != nil {
		t.Skip("no C compiler (cc) to build the seccomp test loader")
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "loader.c")
	if err := os.WriteFile(src, []byte(scLoaderSource), 0o644); err != nil {
		t.Fatal(err)
	}
	l := &scLoader{path: filepath.Join(dir, "loader"), programs: map[SeccompProfile]string{}}
	if out, err := exec.Command(cc, "-static", "-O1", "-pthread", "-o", l.path, src).CombinedOutput(); err != nil {
		t.Skipf("cannot build a static C program (is libc.a installed?): %v\n%s", err, out)
	}
	for _, p := range []SeccompProfile{SeccompDefault, SeccompStrict} {
		var prog []unix.SockFilter
		if def == unix.EPERM {
			prog, err = seccompProgram(p)
		} else {
			prog, err = buildSeccompProgram(p, def, false, false)
		}
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		for _, ins := range prog {
			binary.Write(&b, binary.NativeEndian, ins)
		}
		l.programs[p] = filepath.Join(dir, string(p)+".bpf")
		if err := os.WriteFile(l.programs[p], b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return l
}

// scOutcome is what a scenario did: its printed result, or the signal that
// killed it.
type scOutcome struct {
	result string // "ok", "errno N", "absent"
	signal syscall.Signal
}

func (o scOutcome) String() string {
	if o.signal != 0 {
		return "killed by " + o.signal.String()
	}
	if n, ok := strings.CutPrefix(o.result, "errno "); ok {
		if e, err := strconv.Atoi(n); err == nil {
			return fmt.Sprintf("errno %d (%s)", e, unix.ErrnoName(syscall.Errno(e)))
		}
	}
	return o.result
}

func scOK() scOutcome                     { return scOutcome{result: "ok"} }
func scErrno(e syscall.Errno) scOutcome   { return scOutcome{result: fmt.Sprintf("errno %d", int(e))} }
func scKilled(s syscall.Signal) scOutcome { return scOutcome{signal: s} }

// run runs the loader with profile p ("" for no filter).
func (l *scLoader) run(t *testing.T, p SeccompProfile, args ...string) scOutcome {
	t.Helper()
	prog := "none"
	if p != "" {
		prog = l.programs[p]
	}
	cmd := exec.Command(l.path, append([]string{prog}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws := ee.Sys().(syscall.WaitStatus); ws.Signaled() {
			return scKilled(ws.Signal())
		}
	}
	if err != nil {
		t.Fatalf("loader %s %q: %v\n%s%s", p, args, err, out, stderr.Bytes())
	}
	return scOutcome{result: strings.TrimSpace(string(out))}
}

// expect runs a scenario under p and checks the outcome. When the scenario
// without a filter already gives want, the filter's part cannot be seen, and
// the test says so.
func (l *scLoader) expect(t *testing.T, p SeccompProfile, want scOutcome, args ...string) {
	t.Helper()
	got := l.run(t, p, args...)
	if got.result == "absent" {
		t.Logf("%s %q: no such syscall on this architecture", p, args)
		return
	}
	if got != want {
		t.Errorf("%s %q: %v, want %v", p, args, got, want)
		return
	}
	if want != scOK() {
		if base := l.run(t, "", args...); base == want {
			t.Logf("%s %q: %v without a filter too: not conclusive here", p, args, base)
		}
	}
}

var scProfiles = []SeccompProfile{SeccompDefault, SeccompStrict}

func TestSeccompAlwaysDenied(t *testing.T) {
	l := newSCLoader(t, unix.EPERM)
	scCheckAlwaysDenied(t, l)
}

// TestSeccompExplicitDenies compiles the profiles with ENOSYS as the default
// action: the always-denied syscalls and the conditional denials must still
// fail with EPERM, from their own rules.
func TestSeccompExplicitDenies(t *testing.T) {
	l := newSCLoader(t, unix.ENOSYS)
	for _, p := range scProfiles {
		// The default did change.
		l.expect(t, p, scErrno(unix.ENOSYS), "unknown")
	}
	scCheckAlwaysDenied(t, l)
	for _, p := range scProfiles {
		l.expect(t, p, scErrno(unix.EPERM), "clone", "0x10000000") // CLONE_NEWUSER
	}
	l.expect(t, SeccompStrict, scErrno(unix.EPERM), "mmap", "7")
	l.expect(t, SeccompStrict, scErrno(unix.EPERM), "fork")
	l.expect(t, SeccompStrict, scErrno(unix.EPERM), "openat", "/dev/null", "1")
	l.expect(t, SeccompStrict, scErrno(unix.EAFNOSUPPORT), "socket", "1", "1", "0")
	l.expect(t, SeccompDefault, scErrno(unix.EAFNOSUPPORT), "socket", "17", "3", "0")
	l.expect(t, SeccompDefault, scOK(), "socket", "2", "1", "0")
	l.expect(t, SeccompStrict, scOK(), "thread")
}

// TestSeccompSetns: the default profile lets setns through for one type of
// seccompSetnsTypes at a time (EBADF here: the fd is -1); any other type,
// none, two at once and every type under strict fail with EPERM from the
// filter's own rules (ENOSYS is the default action here).
func TestSeccompSetns(t *testing.T) {
	l := newSCLoader(t, unix.ENOSYS)
	for _, typ := range seccompSetnsTypes {
		l.expect(t, SeccompDefault, scErrno(unix.EBADF), "setns-type", fmt.Sprint(typ))
		l.expect(t, SeccompStrict, scErrno(unix.EPERM), "setns-type", fmt.Sprint(typ))
	}
	for _, typ := range []uint64{0, unix.CLONE_NEWUSER, unix.CLONE_NEWPID, unix.CLONE_NEWUTS,
		unix.CLONE_NEWNS | unix.CLONE_NEWIPC, unix.CLONE_NEWUSER | unix.CLONE_NEWNS} {
		l.expect(t, SeccompDefault, scErrno(unix.EPERM), "setns-type", fmt.Sprint(typ))
	}
}

// TestSeccompNoMessageQueues: no profile lets a job make a POSIX message
// queue. A reset keeps an old layer's IPC namespace that holds no System V
// object for a while before closing it (reset_linux.c, spend_ipc): a queue,
// which the System V counts do not show, would stay charged to the job's
// user until then. Allowing mq_open means closing every old namespace at
// once.
func TestSeccompNoMessageQueues(t *testing.T) {
	for _, p := range scProfiles {
		rules, err := seccompRules(p, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rules {
			for _, name := range r.names {
				if r.errno == 0 && strings.HasPrefix(name, "mq_") {
					t.Errorf("%s allows %s", p, name)
				}
			}
		}
	}
	l := newSCLoader(t, unix.ENOSYS)
	for _, p := range scProfiles {
		l.expect(t, p, scErrno(unix.ENOSYS), "mq_open")
	}
}

func scCheckAlwaysDenied(t *testing.T, l *scLoader) {
	for _, p := range scProfiles {
		for _, name := range seccompAlwaysDenied {
			switch name {
			case "umount", "clock_settime64", "clock_adjtime64":
				continue // not on 64-bit architectures
			}
			l.expect(t, p, scErrno(unix.EPERM), name)
		}
	}
}

func TestSeccompUnlistedSyscallFailsWithEPERM(t *testing.T) {
	l := newSCLoader(t, unix.EPERM)
	for _, p := range scProfiles {
		l.expect(t, p, scErrno(unix.EPERM), "unknown")
		l.expect(t, p, scOK(), "getpid")
	}
}

func TestSeccompOtherArchitecturesKilled(t *testing.T) {
	l := newSCLoader(t, unix.EPERM)
	for _, p := range scProfiles {
		if got := l.run(t, p, "x32"); got != scKilled(unix.SIGSYS) {
			t.Errorf("%s: an x32 syscall: %v, want killed by SIGSYS", p, got)
		}
		got := l.run(t, p, "i386")
		if got.result == "absent" || got == scKilled(unix.SIGSYS) {
			continue
		}
		if base := l.run(t, "", "i386"); base == got {
			t.Logf("%s: an i386 syscall (int 0x80): %v without a filter too (no IA32 emulation here)", p, got)
			continue
		}
		t.Errorf("%s: an i386 syscall (int 0x80): %v, want killed by SIGSYS", p, got)
	}
}

func TestSeccompPersonality(t *testing.T) {
	l := newSCLoader(t, unix.EPERM)
	for _, p := range scProfiles {
		l.expect(t, p, scOK(), "personality", "0xffffffff")
		l.expect(t, p, scOK(), "personality", "0")
		l.expect(t, p, scErrno(unix.EPERM), "personality", "0x0040000")   // ADDR_NO_RANDOMIZE
		l.expect(t, p, scErrno(unix.EPERM), "personality", "0x0008")      // PER_LINUX32
		l.expect(t, p, scErrno(unix.EPERM), "personality", "0x1ffffffff") // stray upper bits
	}
}

func TestSeccompSockets(t *testing.T) {
	l := newSCLoader(t, unix.EPERM)
	sock := func(p SeccompProfile, want scOutcome, call string, family, typ, proto int) {
		t.Helper()
		args := []string{call, strconv.Itoa(family), strconv.Itoa(typ), strconv.Itoa(proto)}
		if want == scOK() {
			if base := l.run(t, "", args...); base != scOK() {
				t.Logf("%q fails without a filter (%v): skipped", args, base)
				return
			}
		}
		l.expect(t, p, want, args...)
	}
	eaf := scErrno(unix.EAFNOSUPPORT)
	d := SeccompDefault
	sock(d, scOK(), "socket", unix.AF_INET, unix.SOCK_STREAM, 0)
	sock(d, scOK(), "socket", unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	sock(d, scOK(), "socket", unix.AF_INET6, unix.SOCK_STREAM, 0)
	sock(d, scOK(), "socket", unix.AF_UNIX, unix.SOCK_STREAM, 0)
	sock(d, scOK(), "socket", unix.AF_NETLINK, unix.SOCK_RAW, unix.NETLINK_ROUTE)
	sock(d, eaf, "socket", unix.AF_NETLINK, unix.SOCK_RAW, unix.NETLINK_AUDIT)
	sock(d, eaf, "socket", unix.AF_NETLINK, unix.SOCK_RAW, unix.NETLINK_KOBJECT_UEVENT)
	sock(d, eaf, "socket", unix.AF_PACKET, unix.SOCK_RAW, 0)
	sock(d, eaf, "socket", unix.AF_VSOCK, unix.SOCK_STREAM, 0)
	sock(d, eaf, "socket", unix.AF_ALG, unix.SOCK_SEQPACKET, 0)
	sock(d, eaf, "socket", unix.AF_KEY, unix.SOCK_RAW, 2)
	sock(d, eaf, "socket", unix.AF_BLUETOOTH, unix.SOCK_STREAM, 0)
	sock(d, eaf, "socket", 0, unix.SOCK_STREAM, 0)
	sock(d, eaf, "socket", 0x7fffffff, unix.SOCK_STREAM, 0)
	sock(d, eaf, "socket", -1, unix.SOCK_STREAM, 0)
	sock(d, scOK(), "socketpair", unix.AF_UNIX, unix.SOCK_STREAM, 0)
	sock(d, eaf, "socketpair", unix.AF_INET, unix.SOCK_STREAM, 0)
	// All families, with an invalid type so that the kernel, when it gets
	// the call, fails it with EINVAL whether or not it has the family.
	for _, proto := range []int{unix.NETLINK_ROUTE, unix.NETLINK_AUDIT} {
		base := l.scSweep(t, "", proto)
		for _, p := range scProfiles {
			got := l.scSweep(t, p, proto)
			for family, errno := range got {
				want := unix.EAFNOSUPPORT
				allowed := family == unix.AF_UNIX || family == unix.AF_INET || family == unix.AF_INET6 ||
					family == unix.AF_NETLINK && proto == unix.NETLINK_ROUTE
				if p == SeccompDefault && allowed {
					want = base[family]
				}
				if errno != want {
					t.Errorf("%s: socket(%d, 15, %d): %v, want %v", p, family, proto, errno, want)
				}
			}
		}
	}
	s := SeccompStrict
	sock(s, eaf, "socket", unix.AF_INET, unix.SOCK_STREAM, 0)
	sock(s, eaf, "socket", unix.AF_UNIX, unix.SOCK_STREAM, 0)
	sock(s, eaf, "socketpair", unix.AF_UNIX, unix.SOCK_STREAM, 0)
}

func TestSeccompProcesses(t *testing.T) {
	l := newSCLoader(t, unix.EPERM)
	d, s := SeccompDefault, SeccompStrict
	l.expect(t, d, scOK(), "fork")
	l.expect(t, d, scOK(), "clone", "0")
	l.expect(t, d, scOK(), "clone", fmt.Sprint(unix.CLONE_FILES|unix.CLONE_FS))
	for _, ns := range []int{unix.CLONE_NEWUSER, unix.CLONE_NEWNS, unix.CLONE_NEWUTS, unix.CLONE_NEWIPC,
		unix.CLONE_NEWPID, unix.CLONE_NEWNET, unix.CLONE_NEWCGROUP, unix.CLONE_NEWTIME,
		unix.CLONE_NEWUSER | unix.CLONE_NEWNS} {
		for _, p := range scProfiles {
			l.expect(t, p, scErrno(unix.EPERM), "clone", fmt.Sprintf("%#x", ns))
		}
	}
	l.expect(t, s, scErrno(unix.EPERM), "fork")
	l.expect(t, s, scErrno(unix.EPERM), "clone", "0")
	for _, p := range scProfiles {
		l.expect(t, p, scErrno(unix.ENOSYS), "clone3")
		l.expect(t, p, scOK(), "thread") // glibc falls back from clone3 to clone
	}
}

func TestSeccompWritableExecutableMemory(t *testing.T) {
	l := newSCLoader(t, unix.EPERM)
	const r, w, x = unix.PROT_READ, unix.PROT_WRITE, unix.PROT_EXEC
	for _, call := range []string{"mmap", "mprotect"} {
		for _, prot := range []int{r, r | w, r | x, x, 0} {
			for _, p := range scProfiles {
				l.expect(t, p, scOK(), call, strconv.Itoa(prot))
			}
		}
		// JITs need W+X: the default profile allows it, strict does not.
		for _, prot := range []int{r | w | x, w | x} {
			l.expect(t, SeccompDefault, scOK(), call, strconv.Itoa(prot))
			l.expect(t, SeccompStrict, scErrno(unix.EPERM), call, strconv.Itoa(prot))
		}
	}
}

func TestSeccompStrictOpensReadOnly(t *testing.T) {
	l := newSCLoader(t, unix.EPERM)
	s := SeccompStrict
	l.expect(t, s, scOK(), "openat", "/dev/null", fmt.Sprint(unix.O_RDONLY|unix.O_CLOEXEC))
	l.expect(t, s, scOK(), "openat", "/", fmt.Sprint(unix.O_RDONLY|unix.O_DIRECTORY))
	for _, flags := range []int{unix.O_WRONLY, unix.O_RDWR, unix.O_RDONLY | unix.O_TRUNC,
		unix.O_RDONLY | unix.O_CREAT, unix.O_WRONLY | unix.O_CREAT | unix.O_TRUNC, unix.O_TMPFILE | unix.O_RDWR} {
		l.expect(t, s, scErrno(unix.EPERM), "openat", "/dev/null", fmt.Sprint(flags))
	}
	l.expect(t, SeccompDefault, scOK(), "openat", "/dev/null", fmt.Sprint(unix.O_WRONLY))
}

// TestSeccompRunsPrograms runs real programs under the filters: shells,
// interpreters and compilers under default; static and dynamically linked
// programs under strict.
func TestSeccompRunsPrograms(t *testing.T) {
	l := newSCLoader(t, unix.EPERM)
	dir := t.TempDir()
	run := func(p SeccompProfile, want string, argv ...string) {
		t.Helper()
		path, err := exec.LookPath(argv[0])
		if err != nil {
			t.Logf("%s not installed: skipped", argv[0])
			return
		}
		cmd := exec.Command(l.path, append([]string{l.programs[p], "exec", path}, argv[1:]...)...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), want) {
			t.Errorf("%s: %q: %v\n%s\nwant output containing %q", p, argv, err, out, want)
		}
	}
	d, s := SeccompDefault, SeccompStrict
	run(d, "ok", "sh", "-c", "echo ok | cat")
	run(d, "1", "python3", "-c", "print(1)")
	run(d, "hi", "python3", "-c", "import subprocess, threading, socket; socket.getaddrinfo('localhost', 80); print(subprocess.run(['echo', 'hi'], capture_output=True, text=True).stdout)")
	run(d, "3", "node", "-e", "console.log(1+2)")
	run(d, "Make", "make", "--version")

	hello := filepath.Join(dir, "hello.c")
	if err := os.WriteFile(hello, []byte("#include <stdio.h>\nint main(void) { puts(\"hello\"); return 0; }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := exec.LookPath("cc"); err == nil {
		run(d, "", "cc", "-O2", "-o", filepath.Join(dir, "hello"), hello)
		run(d, "hello", filepath.Join(dir, "hello"))
		run(d, "", "g++", "-x", "c++", "-o", filepath.Join(dir, "hello++"), hello)
		// strict: a dynamically linked program (the loader reads its
		// libraries with read-only opens) and a static one.
		run(s, "hello", filepath.Join(dir, "hello"))
		run(s, "ok", l.path, "none", "getpid")
		run(s, "", "/bin/true")
	}
	if testing.Short() {
		t.Log("-short: skipping java and go")
		return
	}
	if _, err := exec.LookPath("java"); err == nil {
		run(d, "version", "java", "-version")
	}
	if goBin, err := exec.LookPath("go"); err == nil {
		gohello := filepath.Join(dir, "gohello.go")
		if err := os.WriteFile(gohello, []byte("package main\n\nimport \"fmt\"\n\nfunc main() { fmt.Println(\"gohello\") }\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Setenv("CGO_ENABLED", "0")
		t.Setenv("GOFLAGS", "")
		run(d, "", goBin, "build", "-o", filepath.Join(dir, "gohello"), gohello)
		run(s, "gohello", filepath.Join(dir, "gohello"))
	}
}

// scSweep runs the socket-sweep scenario under p: the errno of socket(family,
// 15, proto) for families 0 to 63.
func (l *scLoader) scSweep(t *testing.T, p SeccompProfile, proto int) []syscall.Errno {
	t.Helper()
	o := l.run(t, p, "socket-sweep", strconv.Itoa(proto))
	var errnos []syscall.Errno
	for i, line := range strings.Split(o.result, "\n") {
		var family, errno int
		if _, err := fmt.Sscanf(line, "%d %d", &family, &errno); err != nil || family != i {
			t.Fatalf("socket-sweep %s: bad line %q (%v)", p, line, o)
		}
		errnos = append(errnos, syscall.Errno(errno))
	}
	if len(errnos) != 64 {
		t.Fatalf("socket-sweep %s: %d lines, want 64", p, len(errnos))
	}
	return errnos
}
