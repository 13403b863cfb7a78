package isolate

import (
	"context"
	"golang.org/x/sys/unix"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/corralhq/corral/jobs"
)

func TestLimits(t *testing.T) {
	sb := newTestSandbox(t)
	for _, tc := range []struct {
		name   string
		lim    jobs.Limits
		argv   []string
		status jobs.Status
		check  func(t *testing.T, r *jobs.StepResult)
	}{
		{
			name: "cpu", lim: jobs.Limits{CPUTimeMs: 300, WallTimeMs: 10000},
			argv: []string{"sh", "-c", "while :; do :; done"}, status: jobs.StatusCPUTimeLimit,
			check: func(t *testing.T, r *jobs.StepResult) {
				if r.Usage.CPUTimeMs < 300 {
					t.Errorf("cpu %.1f ms, want >= 300", r.Usage.CPUTimeMs)
				}
			},
		},
		{
			name: "cpu across processes", lim: jobs.Limits{CPUTimeMs: 400, WallTimeMs: 10000},
			argv:   []string{"sh", "-c", "(while :; do :; done) & (while :; do :; done) & wait"},
			status: jobs.StatusCPUTimeLimit,
		},
		{
			name: "wall", lim: jobs.Limits{WallTimeMs: 300},
			argv: []string{"sleep", "30"}, status: jobs.StatusWallTimeLimit,
			check: func(t *testing.T, r *jobs.StepResult) {
				if r.Signal != "SIGKILL" || r.ExitCode != -1 {
					t.Errorf("signal %q exit %d, want SIGKILL -1", r.Signal, r.ExitCode)
				}
			},
		},
		{
			name: "memory", lim: jobs.Limits{MemoryBytes: 32 << 20},
			// tmpfs pages are charged to the job: 64 MiB into /dev/shm.
			argv: []string{"dd", "if=/dev/zero", "of=/dev/shm/x", "bs=1M", "count=64"}, status: jobs.StatusMemoryLimit,
			check: func(t *testing.T, r *jobs.StepResult) {
				if r.Usage.MemoryPeakBytes < 24<<20 {
					t.Errorf("peak %d, want near the 32 MiB limit", r.Usage.MemoryPeakBytes)
				}
			},
		},
		{
			name: "output", lim: jobs.Limits{OutputBytes: 1000},
			argv: []string{"yes"}, status: jobs.StatusOutputLimit,
			check: func(t *testing.T, r *jobs.StepResult) {
				if len(r.Stdout) != 1000 || !r.StdoutTruncated || r.StderrTruncated {
					t.Errorf("stdout %d bytes truncated=%v, want 1000 truncated", len(r.Stdout), r.StdoutTruncated)
				}
			},
		},
		{
			name: "stderr flood", lim: jobs.Limits{},
			argv: []string{"sh", "-c", "yes >&2"}, status: jobs.StatusOutputLimit,
			check: func(t *testing.T, r *jobs.StepResult) {
				if len(r.Stderr) != 1<<20 || !r.StderrTruncated {
					t.Errorf("stderr %d bytes truncated=%v, want the 1 MiB default kept", len(r.Stderr), r.StderrTruncated)
				}
			},
		},
		{
			name: "file size", lim: jobs.Limits{FileSizeBytes: 1 << 20},
			argv: []string{"dd", "if=/dev/zero", "of=/tmp/big", "bs=64k", "count=64"}, status: jobs.StatusFileSizeLimit,
			check: func(t *testing.T, r *jobs.StepResult) {
				if r.Signal != "SIGXFSZ" {
					t.Errorf("signal %q, want SIGXFSZ", r.Signal)
				}
			},
		},
		{
			name: "pids", lim: jobs.Limits{Pids: 8, WallTimeMs: 5000},
			// busybox sh gives up with exit 2 when fork fails.
			argv:   []string{"sh", "-c", "for i in 1 2 3 4 5 6 7 8 9 10 11 12; do sleep 1 & done; wait"},
			status: jobs.StatusNonzeroExit,
			check: func(t *testing.T, r *jobs.StepResult) {
				if !r.PidsLimitReached {
					t.Errorf("pids_limit_reached not set: %+v", r)
				}
				if !strings.Contains(r.Stderr, "fork") && !strings.Contains(r.Stderr, "again") {
					t.Logf("stderr: %q", r.Stderr)
				}
			},
		},
		{
			name: "open files", lim: jobs.Limits{OpenFiles: 10},
			argv: []string{"sh", "-c", "ulimit -n"}, status: jobs.StatusOK,
			check: func(t *testing.T, r *jobs.StepResult) {
				if strings.TrimSpace(r.Stdout) != "10" {
					t.Errorf("ulimit -n says %q, want 10", r.Stdout)
				}
			},
		},
		{
			name: "signaled", argv: []string{"sh", "-c", "kill -SEGV $$"}, status: jobs.StatusSignaled,
			check: func(t *testing.T, r *jobs.StepResult) {
				if r.Signal != "SIGSEGV" || r.ExitCode != -1 {
					t.Errorf("signal %q exit %d", r.Signal, r.ExitCode)
				}
			},
		},
		{
			name: "not found", argv: []string{"no-such-command"}, status: jobs.StatusNonzeroExit,
			check: func(t *testing.T, r *jobs.StepResult) {
				if r.ExitCode != 127 || !strings.Contains(r.Stderr, "no such file") {
					t.Errorf("exit %d stderr %q, want 127 and a message", r.ExitCode, r.Stderr)
				}
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := run(t, sb, tc.lim, tc.argv...)
			if r.Status != tc.status {
				t.Fatalf("status %s, want %s: exit %d signal %q stderr %q usage %+v",
					r.Status, tc.status, r.ExitCode, r.Signal, r.Stderr, r.Usage)
			}
			if tc.check != nil {
				tc.check(t, r)
			}
			assertEmpty(t, sb)
			// The slot stays healthy after every breach.
			if ok := run(t, sb, jobs.Limits{}, "true"); ok.Status != jobs.StatusOK {
				t.Fatalf("true after %s: %+v", tc.name, ok)
			}
			if err := sb.Reset(context.Background(), 0); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// assertEmpty checks that no process of the sandbox is left in its cgroup
// but the one the init prepared for the next run, which still shares the
// init's memory: it never ran any of the job's code.
func assertEmpty(t *testing.T, sb *Sandbox) {
	t.Helper()
	pids, err := sb.cg.pids()
	if err != nil {
		t.Fatal(err)
	}
	var left []int
	parked := 0
	for _, pid := range pids {
		if sharesInitMemory(sb, pid) {
			parked++
			continue
		}
		left = append(left, pid)
	}
	if len(left) != 0 || parked > 1 {
		t.Fatalf("processes left in the job cgroup: %v (and %d prepared ones)", left, parked)
	}
}

// sharesInitMemory reports whether pid has the init's address space
// (kcmp KCMP_VM): a process the init prepared, before its exec.
func sharesInitMemory(sb *Sandbox, pid int) bool {
	const kcmpVM = 1
	r, _, errno := unix.Syscall6(unix.SYS_KCMP, uintptr(sb.cmd.Process.Pid), uintptr(pid), kcmpVM, 0, 0, 0)
	return errno == 0 && r == 0
}

func TestUsage(t *testing.T) {
	sb := newTestSandbox(t)
	r := run(t, sb, jobs.Limits{}, "sh", "-c", "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done")
	if r.Status != jobs.StatusOK {
		t.Fatalf("%+v", r)
	}
	u := r.Usage
	if u.CPUTimeMs <= 0 || u.WallTimeMs <= 0 {
		t.Fatalf("usage not measured: %+v", u)
	}
	if u.UserMs+u.SysMs > u.CPUTimeMs*1.5+20 {
		t.Errorf("user+sys %.1f far above cpu %.1f", u.UserMs+u.SysMs, u.CPUTimeMs)
	}
	// Per job: a second, idle run does not inherit the first one's cpu.
	r2 := run(t, sb, jobs.Limits{}, "true")
	if r2.Usage.CPUTimeMs >= u.CPUTimeMs {
		t.Errorf("cpu of true %.1f ms >= busy loop %.1f ms: counters not per job", r2.Usage.CPUTimeMs, u.CPUTimeMs)
	}
	// The memory peak is the process's own: dd's 8 MiB buffer, not the
	// init's memory a prepared process shares before its exec (which
	// wait4's ru_maxrss would count), nor an earlier process's; also for
	// a process the init prepared at a reset, after reading the baseline
	// itself, and at the reset a Last process started.
	ctx := context.Background()
	for i, how := range []string{"on request", "again", "prepared at a reset", "prepared at a Last process's reset"} {
		switch i {
		case 2:
			if err := sb.Reset(ctx, 0); err != nil {
				t.Fatal(err)
			}
		case 3:
			if _, err := sb.Run(ctx, Process{Argv: []string{"true"}, Env: DefaultEnv, Last: true}); err != nil {
				t.Fatal(err)
			}
			if err := sb.Reset(ctx, 0); err != nil {
				t.Fatal(err)
			}
		}
		r3 := run(t, sb, jobs.Limits{}, "dd", "if=/dev/zero", "of=/dev/null", "bs=8M", "count=2")
		if p := r3.Usage.MemoryPeakBytes; p < 7<<20 || p > 24<<20 {
			t.Errorf("%s: peak of dd bs=8M: %d bytes, want 7-24 MiB", how, p)
		}
		if r3.Usage.CPUTimeMs <= 0 {
			t.Errorf("%s: no cpu time: %+v", how, r3.Usage)
		}
	}
	if p := run(t, sb, jobs.Limits{}, "true").Usage.MemoryPeakBytes; p > 4<<20 {
		t.Errorf("peak of true after dd: %d bytes: not per process", p)
	}
}

func TestStdinAndEnv(t *testing.T) {
	sb := newTestSandbox(t)
	res, err := sb.Run(context.Background(), Process{
		Argv:  []string{"sh", "-c", "read x; echo got $x $FOO; cat"},
		Env:   append(append([]string(nil), DefaultEnv...), "FOO=bar"),
		Stdin: []byte("line1\nline2\n"),
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Stdout != "got line1 bar\nline2\n" {
		t.Fatalf("stdout %q", res.Stdout)
	}
	// Binary output comes back as base64.
	r := run(t, sb, jobs.Limits{}, "printf", `\377\376`)
	if r.Stdout != "" || r.StdoutB64 != "//4=" {
		t.Fatalf("binary stdout: %q / %q", r.Stdout, r.StdoutB64)
	}
}

func TestHostInvisible(t *testing.T) {
	sb := newTestSandbox(t)
	marker := filepath.Join(sb.cfg.RunDir, "host-marker")
	if err := os.WriteFile(marker, []byte("secret"), 0o644); err != nil {
		t.Fatal(err)
	}
	script := `
for p in /etc/shadow /root /sys/firmware /proc/kcore ` + marker + `; do
  if cat "$p" 2>/dev/null | head -c 1 | grep -q .; then echo "READ $p"; fi
done
ls / | tr '\n' ' '
echo
cat /etc/hostname
cat /proc/1/environ 2>/dev/null && echo "READ /proc/1/environ"
ls /proc/1/root/ 2>/dev/null && echo "READ /proc/1/root"
mount 2>/dev/null | grep -c . 
`
	r := run(t, sb, jobs.Limits{}, "sh", "-c", script)
	if strings.Contains(r.Stdout, "READ") {
		t.Fatalf("the job read a host path:\n%s", r.Stdout)
	}
	lines := strings.Split(r.Stdout, "\n")
	for _, name := range strings.Fields(lines[0]) {
		switch name {
		case "bin", "dev", "etc", "open", "proc", "tmp", "work":
		default:
			t.Errorf("unexpected entry /%s in the sandbox root: %q", name, lines[0])
		}
	}
	if lines[1] != "image" {
		t.Errorf("/etc/hostname is %q, want the image's", lines[1])
	}
}

func TestJobNotRootOnHost(t *testing.T) {
	sb := newTestSandbox(t)
	done := make(chan *jobs.StepResult, 1)
	go func() { done <- run(t, sb, jobs.Limits{WallTimeMs: 10000}, "sleep", "5") }()
	// The job's process once it runs the job's program: before its exec,
	// the process prepared for it shares the init's memory.
	var pids []int
	deadline := time.Now().Add(5 * time.Second)
	for len(pids) == 0 && time.Now().Before(deadline) {
		all, _ := sb.cg.pids()
		for _, pid := range all {
			if !sharesInitMemory(sb, pid) {
				pids = append(pids, pid)
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	if len(pids) == 0 {
		t.Fatal("the job never showed up in its cgroup")
	}
	status, err := os.ReadFile("/proc/" + strconv.Itoa(pids[0]) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	want := strconv.Itoa(int(sb.cfg.HostUID) + JobUID)
	for _, line := range strings.Split(string(status), "\n") {
		if f := strings.Fields(line); len(f) == 5 && (f[0] == "Uid:" || f[0] == "Gid:") {
			for _, id := range f[1:] {
				if id != want {
					t.Errorf("%s on the host: %v, want all %s", f[0], f[1:], want)
				}
			}
		}
		if f := strings.Fields(line); len(f) == 2 && (f[0] == "CapEff:" || f[0] == "CapPrm:" || f[0] == "CapBnd:" || f[0] == "CapAmb:" || f[0] == "CapInh:") {
			if f[1] != "0000000000000000" {
				t.Errorf("%s %s, want none", f[0], f[1])
			}
		}
		// Nothing of the init's signal handling leaks into the job: no
		// handler, nothing ignored or blocked.
		if f := strings.Fields(line); len(f) == 2 && (f[0] == "SigBlk:" || f[0] == "SigIgn:" || f[0] == "SigCgt:") {
			if f[1] != "0000000000000000" {
				t.Errorf("%s %s, want none", f[0], f[1])
			}
		}
		if f := strings.Fields(line); len(f) == 2 && f[0] == "NoNewPrivs:" && f[1] != "1" {
			t.Errorf("no_new_privs not set")
		}
	}
	<-done
}

func TestWallKillsWholeTree(t *testing.T) {
	sb := newTestSandbox(t)
	// A grandchild leaves the session, ignores every signal it can and
	// would outlive its parent.
	r := run(t, sb, jobs.Limits{WallTimeMs: 500},
		"sh", "-c", `setsid sh -c 'trap "" TERM HUP INT QUIT; sleep 100' & sleep 100`)
	if r.Status != jobs.StatusWallTimeLimit {
		t.Fatalf("status %s", r.Status)
	}
	assertEmpty(t, sb)
	// The main process exits at once, leaving an orphan: the step ends
	// and the orphan dies with it.
	start := time.Now()
	r = run(t, sb, jobs.Limits{WallTimeMs: 20000}, "sh", "-c", `setsid sh -c 'trap "" TERM; sleep 100' </dev/null >/dev/null 2>&1 & exit 0`)
	if r.Status != jobs.StatusOK {
		t.Fatalf("status %s", r.Status)
	}
	if time.Since(start) > 10*time.Second {
		t.Fatalf("the orphan held the step")
	}
	assertEmpty(t, sb)
}

func TestNothingSurvivesReset(t *testing.T) {
	sb := newTestSandbox(t)
	shm := shmTool(t)
	if shm != "" {
		// Copy the helper into the sandbox through its writable layer.
		data, _ := os.ReadFile(shm)
		res, err := sb.Run(context.Background(), Process{
			Argv: []string{"sh", "-c", "cat > /tmp/shm && chmod +x /tmp/shm && /tmp/shm create && /tmp/shm check"},
			Env:  DefaultEnv, Stdin: data,
		})
		if err != nil || res.Status != jobs.StatusOK || !strings.Contains(res.Stdout, "present") {
			t.Fatalf("creating SysV shm: %v %+v", err, res)
		}
		// The steps of one job share their IPC namespace, as they share
		// files...
		res = run(t, sb, jobs.Limits{}, "/tmp/shm", "check")
		if !strings.Contains(res.Stdout, "present") {
			t.Fatalf("SysV shm of the job's first step not seen by its next: %q %q", res.Stdout, res.Stderr)
		}
		// ...the next job gets a fresh one.
		if err := sb.Reset(context.Background(), 0); err != nil {
			t.Fatal(err)
		}
		res, err = sb.Run(context.Background(), Process{
			Argv: []string{"sh", "-c", "cat > /tmp/shm && chmod +x /tmp/shm && /tmp/shm check"},
			Env:  DefaultEnv, Stdin: data,
		})
		if err != nil || !strings.Contains(res.Stdout, "absent") {
			t.Fatalf("SysV shm seen by the next job: %v %+v", err, res)
		}
	}
	r := run(t, sb, jobs.Limits{}, "sh", "-c", "echo a > /tmp/a && echo b > /work/b && echo c > /dev/shm/c && mkdir -p /etc/x 2>/dev/null; touch /bin/evil 2>/dev/null; ls /tmp /work /dev/shm")
	if r.Status != jobs.StatusOK {
		t.Fatalf("%+v", r)
	}
	// Steps of one job share files...
	if r := run(t, sb, jobs.Limits{}, "cat", "/tmp/a", "/work/b", "/dev/shm/c"); r.Stdout != "a\nb\nc\n" {
		t.Fatalf("files did not persist between steps: %+v", r)
	}
	if err := sb.Reset(context.Background(), 0); err != nil {
		t.Fatal(err)
	}
	// ...jobs do not.
	r = run(t, sb, jobs.Limits{}, "sh", "-c", "ls -A /tmp /work /dev/shm; ls /bin/evil 2>&1; ipcs -m 2>/dev/null | grep -c 0x")
	if strings.Contains(r.Stdout, "a\n") || strings.Contains(r.Stdout, "b\n") || strings.Contains(r.Stdout, "c\n") || !strings.Contains(r.Stdout, "No such file") {
		t.Fatalf("state survived the reset:\n%s", r.Stdout)
	}
}

// shmTool compiles a static helper that creates or checks a SysV shared
// memory segment (busybox has no ipcmk). Empty when no C compiler.
func shmTool(t *testing.T) string {
	cc, err := exec.LookPath("cc")
	if err != nil {
		t.Log("no C compiler: SysV shm part skipped")
		return ""
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "shm.c")
	os.WriteFile(src, []byte(`#include <stdio.h>
#include <string.h>
#include <sys/shm.h>
int main(int argc, char **argv) {
	int create = argc > 1 && strcmp(argv[1], "create") == 0;
	int id = shmget(4242, 4096, create ? IPC_CREAT | 0666 : 0);
	puts(id >= 0 ? "present" : "absent");
	return create && id < 0;
}
`), 0o644)
	bin := filepath.Join(dir, "shm")
	if out, err := exec.Command(cc, "-static", "-O1", "-o", bin, src).CombinedOutput(); err != nil {
		t.Logf("cannot build the static shm helper (%v: %s): SysV part skipped", err, out)
		return ""
	}
	return bin
}

func TestDiskFull(t *testing.T) {
	needRoot(t)
	lower, runDir := testLower(t)
	sb, err := New(context.Background(), Config{Lower: []string{lower}, RunDir: runDir, CgroupParent: testCgroupParent, DiskBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Close()
	r := run(t, sb, jobs.Limits{}, "dd", "if=/dev/zero", "of=/work/fill", "bs=64k", "count=64")
	if r.Status != jobs.StatusNonzeroExit || !strings.Contains(r.Stderr, "No space left") {
		t.Fatalf("want ENOSPC from a 1 MiB layer: %s %q", r.Status, r.Stderr)
	}
	if err := sb.Reset(context.Background(), 4<<20); err != nil {
		t.Fatal(err)
	}
	r = run(t, sb, jobs.Limits{}, "dd", "if=/dev/zero", "of=/work/fill", "bs=64k", "count=32")
	if r.Status != jobs.StatusOK {
		t.Fatalf("after reset to 4 MiB, 2 MiB fit: %s %q", r.Status, r.Stderr)
	}
}

func TestCancel(t *testing.T) {
	sb := newTestSandbox(t)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		time.Sleep(200 * time.Millisecond)
		cancel()
	}()
	res, err := sb.Run(ctx, Process{Argv: []string{"sleep", "30"}, Env: DefaultEnv})
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != jobs.StatusCancelled {
		t.Fatalf("status %s", res.Status)
	}
}

func TestLandlockConfinesWrites(t *testing.T) {
	if LandlockABI() == 0 {
		t.Skip("the kernel has no Landlock")
	}
	sb := newTestSandbox(t)
	// The image's /open is world-writable: file permissions let the job
	// write there, Landlock does not (only /tmp, /work and /dev/shm).
	// Each layer gets its own ruleset: the first from New, the next from
	// a reset.
	for layer := 0; layer < 2; layer++ {
		if layer > 0 {
			if err := sb.Reset(context.Background(), 0); err != nil {
				t.Fatal(err)
			}
		}
		r := run(t, sb, jobs.Limits{}, "sh", "-c", `
echo x > /tmp/ok1 && echo x > /work/ok2 && echo x > /dev/shm/ok3 && echo fine
echo x > /dev/null && echo devnull
echo hi > /dev/stdout
grep -c . /proc/self/status >/dev/null && echo readproc
touch /open/x 2>/dev/null && echo "WROTE /open"
exit 0
`)
		if r.Status != jobs.StatusOK || r.Stdout != "fine\ndevnull\nhi\nreadproc\n" {
			t.Fatalf("layer %d, under Landlock: %s %q %q", layer, r.Status, r.Stdout, r.Stderr)
		}
	}
}

// TestEveryLayerTheSame: a reset builds the writable layer as New does:
// the /etc files, and the modes and owners of the directories a job may
// write.
func TestEveryLayerTheSame(t *testing.T) {
	needRoot(t)
	lower, runDir := testLower(t)
	etc := map[string][]byte{"corral-a": []byte("first\n"), "corral-b": []byte("second\n")}
	sb, err := New(context.Background(), Config{Lower: []string{lower}, RunDir: runDir, CgroupParent: testCgroupParent, EtcFiles: etc})
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Close()
	const probe = `cat /etc/corral-a /etc/corral-b
stat -c '%n %a %u:%g' /etc/corral-a /tmp /work /dev/shm /proc /dev
echo "me $(id -u):$(id -g)"
echo changed > /etc/corral-a 2>/dev/null && echo "WROTE /etc"
echo x > /tmp/left; echo x > /dev/shm/left; echo x > /work/left`
	var first string
	for layer := 0; layer < 3; layer++ {
		if layer > 0 {
			if err := sb.Reset(context.Background(), 0); err != nil {
				t.Fatal(err)
			}
		}
		r := run(t, sb, jobs.Limits{}, "sh", "-c", probe)
		if r.Status != jobs.StatusOK {
			t.Fatalf("layer %d: %s %q", layer, r.Status, r.Stderr)
		}
		if layer == 0 {
			first = r.Stdout
			lines := strings.Split(r.Stdout, "\n")
			me := strings.TrimPrefix(lines[8], "me ")
			// /proc is owned by the host's root, which the sandbox does
			// not map: the overflow id.
			want := "first\nsecond\n/etc/corral-a 644 0:0\n/tmp 1777 0:0\n/work 755 " + me + "\n/dev/shm 1777 0:0\n/proc 555 65534:65534\n/dev 755 0:0\nme " + me + "\n"
			if me == "0:0" || r.Stdout != want {
				t.Fatalf("first layer:\n%s\nwant:\n%s", r.Stdout, want)
			}
			continue
		}
		if r.Stdout != first {
			t.Fatalf("layer %d differs from the first:\n%s\nfirst:\n%s", layer, r.Stdout, first)
		}
	}
}

func TestSeccompInSandbox(t *testing.T) {
	sb := newTestSandbox(t)
	// busybox unshare calls unshare(2): denied by every profile.
	r := run(t, sb, jobs.Limits{}, "unshare", "-n", "true")
	if r.Status != jobs.StatusNonzeroExit || !strings.Contains(r.Stderr, "not permitted") {
		t.Fatalf("unshare under the default profile: %s %q", r.Status, r.Stderr)
	}
	// strict: a static no-op runs; a socket does not.
	res, err := sb.Run(context.Background(), Process{Argv: []string{"true"}, Env: DefaultEnv, Seccomp: SeccompStrict})
	if err != nil || res.Status != jobs.StatusOK {
		t.Fatalf("true under strict: %v %+v", err, res)
	}
	res, err = sb.Run(context.Background(), Process{Argv: []string{"nc", "-l", "-p", "8080"}, Env: DefaultEnv, Seccomp: SeccompStrict})
	if err != nil || res.Status == jobs.StatusOK {
		t.Fatalf("a socket under strict: %v %+v", err, res)
	}
	if _, err := sb.Run(context.Background(), Process{Argv: []string{"true"}, Env: DefaultEnv, Seccomp: "off"}); err == nil {
		t.Fatal(`profile "off" accepted`)
	}
}

func TestLoopbackInsideSandbox(t *testing.T) {
	sb := newTestSandbox(t)
	// A job may serve and reach TCP on its own loopback (network none).
	r := run(t, sb, jobs.Limits{WallTimeMs: 10000}, "sh", "-c", `
nc -l -p 8080 > /tmp/got &
for i in 1 2 3 4 5 6 7 8 9 10; do echo hi | nc 127.0.0.1 8080 2>/dev/null && break; sleep 0.1; done
wait; cat /tmp/got`)
	if r.Stdout != "hi\n" {
		t.Fatalf("loopback TCP inside the sandbox: %s %q %q", r.Status, r.Stdout, r.Stderr)
	}
}

func TestOnlyStdioAndAskedEnv(t *testing.T) {
	sb := newTestSandbox(t)
	res, err := sb.Run(context.Background(), Process{
		Argv: []string{"sh", "-c", "ls /proc/self/fd | tr '\\n' ' '; echo; env | sort"},
		Env:  []string{"PATH=/bin", "ONLY=this"},
	})
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitN(res.Stdout, "\n", 2)
	// 0, 1, 2 and the directory ls itself reads.
	if fds := strings.Fields(lines[0]); len(fds) > 4 {
		t.Errorf("the job holds more than stdio: %v", fds)
	}
	for _, kv := range strings.Split(strings.TrimSpace(lines[1]), "\n") {
		switch strings.SplitN(kv, "=", 2)[0] {
		case "PATH", "ONLY", "PWD", "SHLVL", "_": // the last three are the shell's own
		default:
			t.Errorf("unexpected variable in the job's environment: %q", kv)
		}
	}
}

func TestInitRunsFromSealedCopy(t *testing.T) {
	sb := newTestSandbox(t)
	exe, err := os.Readlink("/proc/" + strconv.Itoa(sb.cmd.Process.Pid) + "/exe")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(exe, "/memfd:corral-init") {
		t.Fatalf("the init runs from %q, not from the sealed memfd", exe)
	}
	// Even host root cannot write it: the copy is sealed.
	f, err := os.OpenFile("/proc/"+strconv.Itoa(sb.cmd.Process.Pid)+"/exe", os.O_WRONLY, 0)
	if err == nil {
		_, err = f.Write([]byte("x"))
		f.Close()
	}
	if err == nil {
		t.Fatal("wrote to the init's executable")
	}
}

// A process's peak is its own: what an earlier step left charged (here 24
// MiB of tmpfs pages) does not count.
func TestMemoryPeakIsPerProcess(t *testing.T) {
	sb := newTestSandbox(t)
	r := run(t, sb, jobs.Limits{}, "dd", "if=/dev/zero", "of=/tmp/fill", "bs=1M", "count=24")
	if r.Status != jobs.StatusOK || r.Usage.MemoryPeakBytes < 20<<20 {
		t.Fatalf("the writer's peak %d, want >= 20 MiB: %+v", r.Usage.MemoryPeakBytes, r)
	}
	r = run(t, sb, jobs.Limits{}, "true")
	if r.Usage.MemoryPeakBytes > 8<<20 {
		t.Fatalf("true reports a %d-byte peak: the earlier step's pages were counted", r.Usage.MemoryPeakBytes)
	}
}

// A step whose memory limit is below what earlier steps left in the job's
// files gets memory_limit without running, and the sandbox serves the next
// step. On cgroup v1 the limit cannot be set (EBUSY): that used to break
// the sandbox, and the worker ran the job again and again.
func TestMemoryLimitBelowFiles(t *testing.T) {
	sb := newTestSandbox(t)
	r := run(t, sb, jobs.Limits{MemoryBytes: 128 << 20}, "dd", "if=/dev/zero", "of=/tmp/big", "bs=1M", "count=48")
	if r.Status != jobs.StatusOK {
		t.Fatalf("write 48 MiB: %+v", r)
	}
	r = run(t, sb, jobs.Limits{MemoryBytes: 16 << 20}, "true")
	if cgroupVersion() == 1 {
		if r.Status != jobs.StatusMemoryLimit || !strings.Contains(r.Stderr, "not started") {
			t.Errorf("step under the files' size: %+v", r)
		}
	} else if r.Status != jobs.StatusMemoryLimit && r.Status != jobs.StatusOK {
		t.Errorf("step under the files' size (v2): %+v", r)
	}
	if r := run(t, sb, jobs.Limits{MemoryBytes: 128 << 20}, "ls", "/tmp/big"); r.Status != jobs.StatusOK {
		t.Errorf("the next step: %+v", r)
	}
}

// An init that stops answering (here: stopped) after a kill was sent is
// killed itself after killGrace, and the run fails with the sandbox
// broken, instead of waiting for ever.
func TestHungInitAfterKill(t *testing.T) {
	grace := killGrace
	killGrace = 300 * time.Millisecond
	t.Cleanup(func() { killGrace = grace })
	sb := newTestSandbox(t)
	go func() {
		time.Sleep(100 * time.Millisecond)
		sb.cmd.Process.Signal(syscall.SIGSTOP)
	}()
	done := make(chan error, 1)
	go func() {
		_, err := sb.Run(context.Background(), Process{Argv: []string{"sleep", "5"}, Env: DefaultEnv, Limits: jobs.Limits{WallTimeMs: 300}})
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "init") {
			t.Errorf("Run: %v, want the init's failure", err)
		}
	case <-time.After(10 * time.Second):
		sb.cmd.Process.Kill()
		t.Fatal("Run still waits 10 s after its wall limit")
	}
	if _, err := sb.Run(context.Background(), Process{Argv: []string{"true"}, Env: DefaultEnv}); err == nil {
		t.Error("the sandbox still runs after its init was killed")
	}
}

// Alive tells a sandbox whose init died while idle (the pool replaces it
// before a job gets it) from a working one.
func TestAlive(t *testing.T) {
	sb := newTestSandbox(t)
	if !sb.Alive() {
		t.Fatal("a new sandbox is not alive")
	}
	if r := run(t, sb, jobs.Limits{}, "true"); r.Status != jobs.StatusOK {
		t.Fatalf("%+v", r)
	}
	sb.cmd.Process.Kill()
	for deadline := time.Now().Add(5 * time.Second); sb.Alive(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("a sandbox whose init was killed is still alive")
		}
	}
}
