package isolate

import (
	"context"
	"strings"
	"testing"

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
