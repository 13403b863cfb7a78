package isolate

import (
	"context"
	"strings"
	"testing"

	"github.com/corralhq/corral/jobs"
)

// probe prints what a job process must see whichever way it was made: its
// credentials, capabilities, no_new_privs, seccomp, signal state, fds,
// rlimits, cwd, cgroup, and its stdin.
const probe = `grep -E '^(Uid|Gid|Groups|Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs|Seccomp|Seccomp_filters|Sig(Blk|Ign|Cgt)):' /proc/self/status
ls /proc/self/fd | sort -n | tr '\n' ' '; echo
ulimit -n; ulimit -s; ulimit -f; ulimit -c
pwd; cat /proc/self/cgroup; cat
ls /proc/1/root 2>&1 >/dev/null | head -1`

// TestPreparedProcessIsTheSame runs the probe in a process prepared at a
// reset, in one prepared after a step (Process.More) and in one made on
// request, and wants the same result from all three.
func TestPreparedProcessIsTheSame(t *testing.T) {
	sb := newTestSandbox(t)
	lim := jobs.Limits{OpenFiles: 100, MemoryBytes: 64 << 20, FileSizeBytes: 1 << 20}
	p := Process{Argv: []string{"sh", "-c", probe}, Env: DefaultEnv, Limits: lim, Cwd: "/tmp", Stdin: []byte("stdin here\n")}
	runOne := func(name string, more bool) string {
		t.Helper()
		q := p
		q.More = more
		r, err := sb.Run(context.Background(), q)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if r.Status != jobs.StatusOK || r.Stderr != "" {
			t.Fatalf("%s: %s, stderr %q", name, r.Status, r.Stderr)
		}
		assertEmpty(t, sb)
		return r.Stdout
	}
	afterNew := runOne("prepared at New", true)
	afterMore := runOne("prepared after a step", false)
	onRequest := runOne("made on request", false)
	if err := sb.Reset(context.Background(), 0); err != nil {
		t.Fatal(err)
	}
	afterReset := runOne("prepared at Reset", false)
	for name, got := range map[string]string{"after a step": afterMore, "on request": onRequest, "after Reset": afterReset} {
		if got != afterNew {
			t.Errorf("%s:\n%s\nafter New:\n%s", name, got, afterNew)
		}
	}
	t.Logf("probe:\n%s", afterNew)
	for _, want := range []string{
		"Uid:\t1000\t1000\t1000\t1000", "Gid:\t1000\t1000\t1000\t1000",
		"CapEff:\t0000000000000000", "CapPrm:\t0000000000000000", "CapBnd:\t0000000000000000",
		"NoNewPrivs:\t1", "Seccomp:\t2", "Seccomp_filters:\t1",
		"SigBlk:\t0000000000000000", "SigIgn:\t0000000000000000",
		"\n0 1 2 3 \n", // 3 is ls's own directory fd
		// ulimit -f counts 512-byte blocks.
		"\n100\n65536\n2048\n0\n/tmp\n", "\n0::/\nstdin here\n",
		"/proc/1/root: Permission denied",
	} {
		if !strings.Contains(afterNew, want) {
			t.Errorf("probe lacks %q", want)
		}
	}
}

// TestPreparedProcessOtherProfile: a process prepared for the default
// profile is not used for another; the strict one is made on request.
func TestPreparedProcessOtherProfile(t *testing.T) {
	sb := newTestSandbox(t)
	r, err := sb.Run(context.Background(), Process{Argv: []string{"true"}, Env: DefaultEnv, More: true})
	if err != nil || r.Status != jobs.StatusOK {
		t.Fatalf("default: %v %+v", err, r)
	}
	r, err = sb.Run(context.Background(), Process{Argv: []string{"cat", "/proc/self/status"}, Env: DefaultEnv, Seccomp: SeccompStrict})
	if err != nil || r.Status != jobs.StatusOK {
		t.Fatalf("strict: %v %+v", err, r)
	}
	if !strings.Contains(r.Stdout, "Seccomp_filters:\t1") {
		t.Errorf("strict process: %s", r.Stdout)
	}
	assertEmpty(t, sb)
	// A failing exec in a prepared process reports like any other.
	r, err = sb.Run(context.Background(), Process{Argv: []string{"/no/such/program"}, Env: DefaultEnv})
	if err != nil || r.ExitCode != 127 {
		t.Fatalf("missing program: %v %+v", err, r)
	}
	if err := sb.Reset(context.Background(), 0); err != nil {
		t.Fatal(err)
	}
	r, err = sb.Run(context.Background(), Process{Argv: []string{"true"}, Env: DefaultEnv, Cwd: "/no/such/dir"})
	if err != nil || r.ExitCode != 126 || !strings.Contains(r.Stderr, "working directory") {
		t.Fatalf("missing cwd: %v %+v", err, r)
	}
	assertEmpty(t, sb)
}
