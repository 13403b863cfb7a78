package isolate

import (
	"context"
	"encoding/binary"
	"github.com/landlock-lsm/go-landlock/landlock"
	ll "github.com/landlock-lsm/go-landlock/landlock/syscall"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/corralhq/corral/jobs"
)

// needRoot skips a test that needs root and the kernel features of a
// sandbox.
func needRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (user namespaces with a host uid range, cgroups, mounts)")
	}
	if _, err := exec.LookPath("busybox"); err != nil {
		t.Skip("needs busybox-static for the test image (apt-get install busybox-static)")
	}
}

// testLower lays out a busybox tree as the sandbox's only layer. A plain
// directory is a valid overlay lower; the squashfs path is tested through
// rootfs and cmd/corral.
func testLower(t testing.TB) (lower, runDir string) {
	t.Helper()
	base, err := os.MkdirTemp("", "corral-isolate-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	// The sandbox's host uids must be able to reach the layer.
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	lower = filepath.Join(base, "lower")
	runDir = filepath.Join(base, "run")
	for _, d := range []string{"bin", "etc", "tmp", "work", "proc", "dev"} {
		if err := os.MkdirAll(filepath.Join(lower, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.MkdirAll(runDir, 0o755)
	bb, _ := exec.LookPath("busybox")
	data, err := os.ReadFile(bb)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(lower, "bin/busybox"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bb, "--list").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, applet := range strings.Fields(string(out)) {
		os.Symlink("busybox", filepath.Join(lower, "bin", applet))
	}
	os.WriteFile(filepath.Join(lower, "etc/hostname"), []byte("image\n"), 0o644)
	// A world-writable directory in the image: only Landlock keeps jobs
	// from writing there.
	os.Mkdir(filepath.Join(lower, "open"), 0o777)
	os.Chmod(filepath.Join(lower, "open"), 0o777)
	return lower, runDir
}

func newTestSandbox(t testing.TB) *Sandbox {
	t.Helper()
	needRoot(t)
	lower, runDir := testLower(t)
	return newSandboxOn(t, lower, runDir)
}

// newSandboxOn starts a sandbox on one layer, closed when the test ends.
func newSandboxOn(t testing.TB, lower, runDir string) *Sandbox {
	t.Helper()
	return newSandboxWith(t, Config{Lower: []string{lower}, RunDir: runDir})
}

// newSandboxWith starts a sandbox with cfg, logging to the test, in the
// tests' cgroup; closed when the test ends.
func newSandboxWith(t testing.TB, cfg Config) *Sandbox {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg.Log, cfg.CgroupParent = testLog{t}, testCgroupParent
	sb, err := New(ctx, cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := sb.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return sb
}

type testLog struct{ t testing.TB }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Logf("init: %s", strings.TrimSpace(string(p)))
	return len(p), nil
}

func run(t testing.TB, sb *Sandbox, lim jobs.Limits, argv ...string) *jobs.StepResult {
	t.Helper()
	res, err := sb.Run(context.Background(), Process{Argv: argv, Env: DefaultEnv, Limits: lim})
	if err != nil {
		t.Fatalf("Run %q: %v", argv, err)
	}
	return res
}

func TestSandboxRunsCommand(t *testing.T) {
	sb := newTestSandbox(t)
	res := run(t, sb, jobs.Limits{}, "sh", "-c", "echo hello; echo oops >&2; id -u; pwd; hostname; exit 3")
	if res.Status != jobs.StatusNonzeroExit || res.ExitCode != 3 {
		t.Fatalf("status %s exit %d, want nonzero_exit 3: %+v", res.Status, res.ExitCode, res)
	}
	if want := "hello\n1000\n/work\ncorral\n"; res.Stdout != want {
		t.Errorf("stdout %q, want %q", res.Stdout, want)
	}
	if res.Stderr != "oops\n" {
		t.Errorf("stderr %q", res.Stderr)
	}
}

func TestUnreachableRunDir(t *testing.T) {
	needRoot(t)
	lower, runDir := testLower(t)
	hidden := filepath.Join(filepath.Dir(runDir), "hidden")
	os.Mkdir(hidden, 0o700)
	_, err := New(context.Background(), Config{Lower: []string{lower}, RunDir: hidden, CgroupParent: testCgroupParent})
	if err == nil || !strings.Contains(err.Error(), "not searchable") {
		t.Fatalf("want a clear error for a 0700 run directory, got %v", err)
	}
}

// Requests the C loop cannot take are errors for the caller, and the
// sandbox goes on; many arguments and a large environment pass whole.
func TestSpawnPacket(t *testing.T) {
	sb := newTestSandbox(t)
	ctx := context.Background()
	for _, p := range []Process{
		{Argv: []string{"echo", "a\x00b"}, Env: DefaultEnv},
		{Argv: []string{"true"}, Env: append([]string{"X=\x00"}, DefaultEnv...)},
		{Argv: []string{"true"}, Env: DefaultEnv, Cwd: "/work\x00/x"},
	} {
		if _, err := sb.Run(ctx, p); err == nil || !strings.Contains(err.Error(), "NUL") {
			t.Errorf("Run %q %q %q: %v, want a NUL error", p.Argv, p.Env[0], p.Cwd, err)
		}
	}
	args := []string{"sh", "-c", `echo $# "$X"`, "sh"}
	for i := 0; i < 2000; i++ {
		args = append(args, strconv.Itoa(i))
	}
	big := strings.Repeat("x", 100<<10)
	res, err := sb.Run(ctx, Process{Argv: args, Env: append([]string{"X=" + big}, DefaultEnv...)})
	if err != nil {
		t.Fatal(err)
	}
	if want := "2000 " + big + "\n"; res.Status != jobs.StatusOK || res.Stdout != want {
		t.Errorf("status %s, stdout %d bytes, want %d", res.Status, len(res.Stdout), len(want))
	}
	// A command that is not there: the shell's 127, and the sandbox goes on.
	if res := run(t, sb, jobs.Limits{}, "no-such-command"); res.ExitCode != 127 {
		t.Errorf("missing command: %+v", res)
	}
	if res := run(t, sb, jobs.Limits{}, "true"); res.Status != jobs.StatusOK {
		t.Errorf("after the errors: %+v", res)
	}
}

// The writable places a job finds, as on a usual host: /tmp sticky and
// world-writable, /work its own, umask 022.
func TestWritableDirs(t *testing.T) {
	sb := newTestSandbox(t)
	res := run(t, sb, jobs.Limits{}, "sh", "-c", "stat -c '%a %u' /tmp /work /dev/shm; umask")
	if want := "1777 0\n755 1000\n1777 0\n0022\n"; res.Stdout != want {
		t.Errorf("got %q, want %q (stderr %q)", res.Stdout, want, res.Stderr)
	}
}

func TestDecodeReply(t *testing.T) {
	ne := binary.NativeEndian
	exited := make([]byte, exitedReplySize)
	exited[0] = replyExited
	ne.PutUint32(exited[4:], 9)
	ne.PutUint64(exited[8:], 1234567)
	for i := range nCounters {
		ne.PutUint64(exited[16+8*i:], uint64(100+i))
	}
	m, ok := decodeReply(exited)
	if !ok || m.Kind != msgExited || *m.Exit != (exitReport{WaitStatus: 9, WallNs: 1234567}) {
		t.Fatalf("exited: %v %+v", ok, m)
	}
	// With the counters flag, the counters in cgroupCounters' order.
	exited[1] = exitedCounters
	m, ok = decodeReply(exited)
	want := cgroupCounters{CPUNs: 100, UserNs: 101, SysNs: 102, MemoryPeak: 103, MemoryUsage: 104, OOMKills: 105, PidsMax: 106}
	if !ok || m.Exit.Counters == nil || *m.Exit.Counters != want || m.Exit.WallNs != 1234567 {
		t.Fatalf("exited with counters: %v %+v", ok, m.Exit)
	}
	ready := make([]byte, 16)
	ready[0] = replyReady
	if m, ok := decodeReply(ready); !ok || m.Kind != msgReady || *m.Ready != (readyReport{}) {
		t.Fatalf("ready: %v %+v", ok, m)
	}
	ready[1] = readyParked
	ne.PutUint64(ready[8:], 123456)
	if m, ok := decodeReply(ready); !ok || m.Kind != msgReady || *m.Ready != (readyReport{Parked: true, MemoryUsage: 123456}) {
		t.Fatalf("ready, parked: %v %+v", ok, m)
	}
	ready[1] = readyParked | readyKept
	if m, ok := decodeReply(ready); !ok || m.Kind != msgReady || *m.Ready != (readyReport{Kept: true, Parked: true, MemoryUsage: 123456}) {
		t.Fatalf("ready, kept and parked: %v %+v", ok, m)
	}
	// JSON, a short packet and an unknown tag are not binary replies.
	for _, b := range [][]byte{[]byte(`{"kind":"ready"}`), exited[:16], exited[:exitedReplySize-1], append([]byte{0x85}, exited[1:]...), ready[:8], append([]byte{0x84}, ready[1:]...)} {
		if _, ok := decodeReply(b); ok {
			t.Errorf("%q decoded as a binary reply", b)
		}
	}
}

func TestEncodeReset(t *testing.T) {
	b := encodeReset(256<<20, SeccompStrict)
	if len(b) != resetPktSize+len("strict")+1 || b[0] != pktReset || binary.NativeEndian.Uint64(b[8:]) != 256<<20 || string(b[resetPktSize:]) != "strict\x00" {
		t.Fatalf("reset packet % x", b)
	}
}

// TestLandlockLayer: the rights of the rulesets the C reset makes are
// landlockConfig's, downgraded to the kernel's ABI as go-landlock does.
func TestLandlockLayer(t *testing.T) {
	if l := newLandlockLayer(0); l != (landlockLayer{}) {
		t.Fatalf("no Landlock: %+v", l)
	}
	v7 := newLandlockLayer(7)
	if v7.handledFS != uint64(landlock.V7.HandledAccessFS) || v7.scoped != uint64(landlock.V7.Scoped) {
		t.Fatalf("ABI 7: %+v", v7)
	}
	if v7.ro != uint64(ll.AccessFSExecute|ll.AccessFSReadFile|ll.AccessFSReadDir) {
		t.Fatalf("ABI 7 read-only rule: %#x", v7.ro)
	}
	// Writing, but never linking or renaming across directories (refer)
	// nor device ioctls.
	if v7.rw&uint64(ll.AccessFSWriteFile|ll.AccessFSTruncate|ll.AccessFSMakeReg) == 0 || v7.rw&uint64(ll.AccessFSRefer|ll.AccessFSIoctlDev) != 0 {
		t.Fatalf("ABI 7 read-write rule: %#x", v7.rw)
	}
	// A newer kernel gets what corral handles; an older one what it knows.
	if l := newLandlockLayer(42); l.handledFS != v7.handledFS || l.scoped != v7.scoped || l.abi != 42 {
		t.Fatalf("ABI 42: %+v", l)
	}
	v1 := newLandlockLayer(1)
	if v1.handledFS != uint64(landlock.V1.HandledAccessFS) || v1.scoped != 0 || v1.rw&uint64(ll.AccessFSTruncate) != 0 {
		t.Fatalf("ABI 1: %+v", v1)
	}
	for _, l := range []landlockLayer{v1, v7} {
		if l.ro&^l.handledFS != 0 || l.rw&^l.handledFS != 0 || l.ro&^l.rw != 0 {
			t.Fatalf("rules outside the handled rights: %+v", l)
		}
	}
}

// TestEmptyStdin: a process given no stdin reads EOF, also through a
// reopened /dev/stdin, and cannot change the empty file that every such
// process of the sandbox shares.
func TestEmptyStdin(t *testing.T) {
	sb := newTestSandbox(t)
	for i := 0; i < 2; i++ {
		r := run(t, sb, jobs.Limits{}, "sh", "-c", `
n=$(cat | wc -c); echo "read $n"
n=$(cat /dev/stdin | wc -c); echo "reopened $n"
echo x 2>/dev/null >/dev/stdin && echo "wrote" || echo "write refused"
chmod 666 /proc/self/fd/0 2>/dev/null && echo "chmod" || echo "chmod refused"
stat -L -c %a /proc/self/fd/0`)
		if want := "read 0\nreopened 0\nwrite refused\nchmod refused\n444\n"; r.Stdout != want {
			t.Fatalf("run %d: stdout %q, want %q (stderr %q)", i, r.Stdout, want, r.Stderr)
		}
	}
}
