package isolate

import (
	"context"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/corralhq/corral/jobs"
)

func helperRun(t *testing.T, sb *Sandbox, stdin string, lim jobs.Limits, args ...string) *jobs.StepResult {
	t.Helper()
	p := Process{Argv: append([]string{"/bin/hostile"}, args...), Env: DefaultEnv, Limits: lim}
	if stdin != "" {
		p.Stdin = []byte(stdin)
	}
	r, err := sb.Run(context.Background(), p)
	if err != nil {
		t.Fatalf("Run %v: %v", args, err)
	}
	return r
}

// Each run's stdin is its own open file, sealed: a job can leave no offset,
// flag or lock on it for the next job, nor write into it (under strict, a
// writable file is code to map executable).
func TestStdinOwnAndSealed(t *testing.T) {
	sb := hostileSandbox(t)
	if _, why := hostileTool(t); hostileBinary == nil {
		t.Skipf("needs the static C helper: %s", why)
	}
	r := helperRun(t, sb, "", jobs.Limits{}, "stdinmark")
	wantLines(t, r, "seek 123456", "setfl ok", "flock ok")
	r = helperRun(t, sb, "", jobs.Limits{}, "stdinstate")
	wantLines(t, r, "pos 0", "flags clear", "flock ok")
	if err := sb.Reset(context.Background(), 0); err != nil {
		t.Fatal(err)
	}
	r = helperRun(t, sb, "", jobs.Limits{}, "stdinstate")
	wantLines(t, r, "pos 0", "flags clear", "flock ok")
	r = helperRun(t, sb, "data", jobs.Limits{}, "stdinwrite")
	wantLines(t, r, "pwrite EPERM", "pwrite-reopened EPERM", "mmap-shared-rw EPERM")
	r = helperRun(t, sb, "", jobs.Limits{}, "stdinwrite")
	if strings.Contains(r.Stdout, " ok\n") && !strings.Contains(r.Stdout, "reopen-rw") {
		t.Errorf("empty stdin written: %q", r.Stdout)
	}
	for _, l := range []string{"pwrite ok", "pwrite-reopened ok", "mmap-shared-rw ok"} {
		if strings.Contains(r.Stdout, l) {
			t.Errorf("empty stdin: %s: %q", l, r.Stdout)
		}
	}
}

// A job that hides a file in a cycle of AF_UNIX messages leaves nothing to
// the next: the reset waits for the kernel to collect the cycle (or fails,
// and the sandbox is replaced). Before, the socket stayed listed in the
// sandbox's namespace after the reset, and the file's 48 MiB stayed used
// in /dev/shm, charged to the job cgroup.
func TestLeftoverSocketsCollected(t *testing.T) {
	sb := hostileSandbox(t)
	if _, why := hostileTool(t); hostileBinary == nil {
		t.Skipf("needs the static C helper: %s", why)
	}
	lim := jobs.Limits{MemoryBytes: 96 << 20, FileSizeBytes: 128 << 20}
	r := helperRun(t, sb, "", lim, "gcycle", "48")
	wantLines(t, r, "sendmsg ok")
	err := sb.Reset(context.Background(), 0)
	if err != nil {
		// Not collected in time: the reset says so, and the parent
		// destroys the sandbox; nothing of it reaches a next job.
		if !strings.Contains(err.Error(), "leftover-sockets") {
			t.Fatalf("Reset: %v", err)
		}
		t.Logf("reset refused the sandbox: %v", err)
		return
	}
	r = run(t, sb, jobs.Limits{}, "cat", "/proc/net/unix")
	if lines := strings.Split(strings.TrimSpace(r.Stdout), "\n"); len(lines) != 1 {
		t.Errorf("the next job sees the last one's sockets:\n%s", r.Stdout)
	}
	r = run(t, sb, jobs.Limits{}, "df", "-k", "/dev/shm")
	lines := strings.Split(strings.TrimSpace(r.Stdout), "\n")
	if f := strings.Fields(lines[len(lines)-1]); len(f) < 3 || f[2] != "0" {
		t.Errorf("the next job finds /dev/shm used: %q", r.Stdout)
	}
}

// The device nodes bound from the host are read-only binds: a job uses
// them as devices but cannot change the host inodes (before, touch
// /dev/null set the host's times).
func TestDeviceNodesReadOnly(t *testing.T) {
	sb := hostileSandbox(t)
	var before unix.Stat_t
	if err := unix.Stat("/dev/null", &before); err != nil {
		t.Fatal(err)
	}
	r := run(t, sb, jobs.Limits{}, "sh", "-c", `echo x > /dev/null && echo write-ok
head -c 4 /dev/urandom | wc -c
touch /dev/null 2>/dev/null && echo touched || echo touch-refused
chmod 600 /dev/full 2>/dev/null && echo chmodded || echo chmod-refused`)
	wantLines(t, r, "write-ok", "4", "touch-refused", "chmod-refused")
	var after unix.Stat_t
	if err := unix.Stat("/dev/null", &after); err != nil {
		t.Fatal(err)
	}
	if after.Mtim != before.Mtim || after.Mode != before.Mode {
		t.Errorf("the host's /dev/null changed: %+v -> %+v", before.Mtim, after.Mtim)
	}
}

// A job cannot fake a CPU limit breach by signalling itself.
func TestSelfSentSIGXCPU(t *testing.T) {
	sb := hostileSandbox(t)
	r := run(t, sb, jobs.Limits{CPUTimeMs: 2000}, "sh", "-c", "kill -XCPU $$")
	if r.Status != jobs.StatusSignaled || r.Signal != "SIGXCPU" {
		t.Fatalf("status %s signal %s, want signaled SIGXCPU", r.Status, r.Signal)
	}
}

// A job's pids do not tell how many processes the last job made.
func TestPidsBackAfterReset(t *testing.T) {
	sb := hostileSandbox(t)
	pid := func() string {
		r := run(t, sb, jobs.Limits{}, "sh", "-c", "echo $$")
		if err := sb.Reset(context.Background(), 0); err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(r.Stdout)
	}
	pid() // the sandbox's first job: its pids follow the sandbox's own set-up
	first := pid()
	r := run(t, sb, jobs.Limits{}, "sh", "-c", "for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do /bin/true; done")
	if r.Status != jobs.StatusOK {
		t.Fatalf("%+v", r)
	}
	if err := sb.Reset(context.Background(), 0); err != nil {
		t.Fatal(err)
	}
	if again := pid(); again != first {
		t.Errorf("pid %s after a job of 20 processes, %s before", again, first)
	}
}

// A port the last job's loopback connection used is free for the next:
// the sandbox keeps no TIME_WAIT sockets (before, bind failed with
// EADDRINUSE for 60 s, and /proc/net/tcp showed the last job's
// connections).
func TestNoTimeWaitLeft(t *testing.T) {
	sb := hostileSandbox(t)
	if _, why := hostileTool(t); hostileBinary == nil {
		t.Skipf("needs the static C helper: %s", why)
	}
	r := helperRun(t, sb, "", jobs.Limits{}, "twmake", "8080")
	wantLines(t, r, "tw made")
	if err := sb.Reset(context.Background(), 0); err != nil {
		t.Fatal(err)
	}
	r = helperRun(t, sb, "", jobs.Limits{}, "twbind", "8080")
	wantLines(t, r, "bind ok")
	r = run(t, sb, jobs.Limits{}, "cat", "/proc/net/tcp")
	if lines := strings.Split(strings.TrimSpace(r.Stdout), "\n"); len(lines) != 1 {
		t.Errorf("the next job sees the last one's TCP sockets:\n%s", r.Stdout)
	}
}

// Unnamed files (O_TMPFILE) leave no name and change no stamped inode, but
// use up tmpfs inode numbers: a kept layer would show the next job how
// many the last one made. A layer whose tmpfs counters moved is not kept.
func TestTmpfileCounterNotKept(t *testing.T) {
	sb := hostileSandbox(t)
	if _, why := hostileTool(t); hostileBinary == nil {
		t.Skipf("needs the static C helper: %s", why)
	}
	for _, dir := range []string{"/dev/shm", "/tmp"} {
		ino := func() string {
			r := helperRun(t, sb, "", jobs.Limits{}, "tmpino", dir)
			if err := sb.Reset(context.Background(), 0); err != nil {
				t.Fatal(err)
			}
			return strings.TrimSpace(r.Stdout)
		}
		ino()
		before := ino()
		r := helperRun(t, sb, "", jobs.Limits{}, "tmpfiles", "50", dir)
		wantLines(t, r, "tmpfiles ok")
		if err := sb.Reset(context.Background(), 0); err != nil {
			t.Fatal(err)
		}
		if after := ino(); after != before {
			t.Errorf("%s: %s after 50 unnamed files of the last job, %s before", dir, after, before)
		}
	}
}

// netProbe runs a job that reads its network namespace's identity, its
// loopback's counters and the TCP connections opened in it, then resets.
// The job makes no socket itself.
func netProbe(t *testing.T, sb *Sandbox) (ns, rest string) {
	t.Helper()
	r := run(t, sb, jobs.Limits{}, "sh", "-c", `readlink /proc/self/ns/net
grep 'lo:' /proc/net/dev
awk '/^Tcp:/ {n++} n == 2 {print "tcp opens", $6, $7; exit}' /proc/net/snmp
wc -l < /proc/net/tcp`)
	if err := sb.Reset(context.Background(), 0); err != nil {
		t.Fatal(err)
	}
	ns, rest, _ = strings.Cut(r.Stdout, "\n")
	return ns, rest
}

// A job that made an AF_INET socket leaves its network namespace behind:
// the next job gets a new one with only its loopback, so /proc/net's
// counters and sockets show nothing of the last job's traffic. A job that
// made none keeps the namespace, as the IPC namespace is kept. Before,
// every job of a sandbox shared the init's namespace: the next job read
// the last one's loopback traffic in /proc/net/dev and /proc/net/snmp.
func TestNetworkNamespaceAfterTraffic(t *testing.T) {
	sb := hostileSandbox(t)
	if _, why := hostileTool(t); hostileBinary == nil {
		t.Skipf("needs the static C helper: %s", why)
	}
	ns0, before := netProbe(t, sb)
	if ns, _ := netProbe(t, sb); ns != ns0 {
		t.Errorf("a job without sockets changed the network namespace: %s, then %s", ns0, ns)
	}
	wantLines(t, helperRun(t, sb, "", jobs.Limits{}, "twmake", "8080"), "tw made")
	if err := sb.Reset(context.Background(), 0); err != nil {
		t.Fatal(err)
	}
	ns1, after := netProbe(t, sb)
	if ns1 == ns0 {
		t.Errorf("the job after one with loopback traffic runs in the same network namespace %s", ns0)
	}
	if after != before {
		t.Errorf("the next job sees the last one's traffic:\n%s\nwhere the first job saw:\n%s", after, before)
	}
	if ns, _ := netProbe(t, sb); ns != ns1 {
		t.Errorf("a job without sockets changed the new network namespace: %s, then %s", ns1, ns)
	}

	// Sockets that outlive their job are still found in a layer's own
	// namespace (TestLeftoverSocketsCollected, in the init's).
	lim := jobs.Limits{MemoryBytes: 96 << 20, FileSizeBytes: 128 << 20}
	wantLines(t, helperRun(t, sb, "", lim, "gcycle", "48"), "sendmsg ok")
	if err := sb.Reset(context.Background(), 0); err != nil {
		if !strings.Contains(err.Error(), "leftover-sockets") {
			t.Fatalf("Reset: %v", err)
		}
		t.Logf("reset refused the sandbox: %v", err)
		return
	}
	r := run(t, sb, jobs.Limits{}, "cat", "/proc/net/unix")
	if lines := strings.Split(strings.TrimSpace(r.Stdout), "\n"); len(lines) != 1 {
		t.Errorf("the next job sees the last one's sockets:\n%s", r.Stdout)
	}
}

// A sandbox whose network the parent wires (KeepNetwork, for egress) keeps
// its jobs in the init's namespace, where the wiring is.
func TestKeepNetwork(t *testing.T) {
	sb := hostileSandbox(t, func(c *Config) { c.KeepNetwork = true })
	if _, why := hostileTool(t); hostileBinary == nil {
		t.Skipf("needs the static C helper: %s", why)
	}
	ns0, _ := netProbe(t, sb)
	wantLines(t, helperRun(t, sb, "", jobs.Limits{}, "twmake", "8080"), "tw made")
	if err := sb.Reset(context.Background(), 0); err != nil {
		t.Fatal(err)
	}
	if ns, _ := netProbe(t, sb); ns != ns0 {
		t.Errorf("KeepNetwork: the network namespace changed, %s then %s", ns0, ns)
	}
}
