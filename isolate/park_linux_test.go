package isolate

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/corralhq/corral/jobs"
	"golang.org/x/sys/unix"
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
	var runProbe func(name string, more, last bool) string
	p := Process{Argv: []string{"sh", "-c", probe}, Env: DefaultEnv, Limits: lim, Cwd: "/tmp", Stdin: []byte("stdin here\n")}
	runOne := func(name string, more bool) string {
		t.Helper()
		return runProbe(name, more, false)
	}
	runProbe = func(name string, more, last bool) string {
		t.Helper()
		q := p
		q.More, q.Last = more, last
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
	afterReset := runProbe("Last, before its own reset", false, true)
	if err := sb.Reset(context.Background(), 0); err != nil {
		t.Fatal(err)
	}
	afterLast := runOne("prepared at the reset a Last process started", false)
	for name, got := range map[string]string{"after a step": afterMore, "on request": onRequest, "after Reset": afterReset, "after a Last reset": afterLast} {
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
		"/proc/1/root: No such file or directory", // hidepid: the init is not there
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

// preparedCount counts the processes of the job cgroup that still share the
// init's memory: prepared ones.
func preparedCount(t *testing.T, sb *Sandbox) int {
	t.Helper()
	pids, err := sb.cg.pids()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, pid := range pids {
		if sharesInitMemory(sb, pid) {
			n++
		}
	}
	return n
}

// statusKeys are the /proc/self/status and /proc/self/limits lines that
// must not depend on how a process was made.
var statusKeys = []string{"Uid:", "Gid:", "Groups:", "NoNewPrivs:", "Seccomp:", "Seccomp_filters:",
	"CapInh:", "CapPrm:", "CapEff:", "CapBnd:", "CapAmb:", "SigBlk:", "SigIgn:", "SigCgt:",
	"Max cpu time", "Max file size", "Max stack size", "Max core file size", "Max open files", "stdin here"}

func keyLines(out string) string {
	var keep []string
	for _, l := range strings.Split(out, "\n") {
		for _, k := range statusKeys {
			if strings.HasPrefix(l, k) {
				keep = append(keep, l)
			}
		}
	}
	return strings.Join(keep, "\n")
}

// TestPreparedStrictProcess: after a reset the sandbox prepares a process
// for the profile it last ran, strict included, whose filter is loaded after
// the request's part (strict forbids chdir and dup3); it must be the same
// as one made on request.
func TestPreparedStrictProcess(t *testing.T) {
	sb := newTestSandbox(t)
	p := Process{Argv: []string{"cat", "/proc/self/status", "/proc/self/limits", "-"}, Env: DefaultEnv,
		Limits: jobs.Limits{OpenFiles: 100}, Cwd: "/tmp", Stdin: []byte("stdin here\n"), Seccomp: SeccompStrict}
	var lastPid string // the job's pid in the sandbox
	runOne := func(name string) string {
		t.Helper()
		r, err := sb.Run(context.Background(), p)
		if err != nil || r.Status != jobs.StatusOK || r.Stderr != "" {
			t.Fatalf("%s: %v %+v", name, err, r)
		}
		for _, l := range strings.Split(r.Stdout, "\n") {
			if f := strings.Fields(l); len(f) == 2 && f[0] == "Pid:" {
				lastPid = f[1]
			}
		}
		return keyLines(r.Stdout)
	}
	onRequest := runOne("made on request") // the process prepared at New was default's
	if err := sb.Reset(context.Background(), 0); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for preparedCount(t, sb) != 1 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if n := preparedCount(t, sb); n != 1 {
		t.Fatalf("%d prepared processes after the reset, want 1", n)
	}
	// Its pid inside the sandbox (the last NSpid), which the job must
	// report as its own: the prepared process ran it.
	var preparedPid string
	pids, _ := sb.cg.pids()
	for _, pid := range pids {
		if !sharesInitMemory(sb, pid) {
			continue
		}
		st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(string(st), "\n") {
			if f := strings.Fields(l); len(f) > 1 && f[0] == "NSpid:" {
				preparedPid = f[len(f)-1]
			}
		}
	}
	prepared := runOne("prepared at Reset")
	if lastPid == "" || lastPid != preparedPid {
		t.Errorf("the job ran as pid %q, the prepared process was %q", lastPid, preparedPid)
	}
	if prepared != onRequest {
		t.Errorf("prepared:\n%s\nmade on request:\n%s", prepared, onRequest)
	}
	for _, want := range []string{"Seccomp:\t2", "Seccomp_filters:\t1", "NoNewPrivs:\t1", "CapEff:\t0000000000000000", "stdin here"} {
		if !strings.Contains(prepared, want) {
			t.Errorf("prepared process lacks %q:\n%s", want, prepared)
		}
	}
	if !strings.Contains(prepared, "Max open files            100                  100") {
		t.Errorf("rlimits not applied:\n%s", prepared)
	}
	assertEmpty(t, sb)
}

// TestLastProcessResets: after a Last process the init resets the sandbox
// on its own; until Reset nothing else is accepted, Reset only waits for it
// (or resets again for another size), and the Last process's own result
// is whole.
func TestLastProcessResets(t *testing.T) {
	sb := newTestSandbox(t)
	// A reset that never comes fails the test rather than hanging it.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := sb.Run(ctx, Process{Argv: []string{"true"}, Env: DefaultEnv, More: true, Last: true}); err == nil {
		t.Fatal("More and Last accepted together")
	}
	// A memory peak that must come through the concurrent reset intact.
	r, err := sb.Run(ctx, Process{Argv: []string{"sh", "-c", "echo x > /tmp/f; echo y > /work/g; echo z > /dev/shm/h; dd if=/dev/zero of=/dev/null bs=8M count=1 2>/dev/null; echo done"},
		Env: DefaultEnv, Last: true})
	if err != nil || r.Status != jobs.StatusOK || r.Stdout != "done\n" {
		t.Fatalf("Last process: %v %+v", err, r)
	}
	if r.Usage.MemoryPeakBytes < 4<<20 {
		t.Errorf("memory peak %d below dd's 8 MiB buffer", r.Usage.MemoryPeakBytes)
	}
	if _, err := sb.Run(ctx, Process{Argv: []string{"true"}, Env: DefaultEnv}); !errors.Is(err, errResetting) {
		t.Errorf("Run before Reset: %v", err)
	}
	if err := sb.WriteFiles(ctx, []File{{Path: "a", Data: []byte("a")}}); !errors.Is(err, errResetting) {
		t.Errorf("WriteFiles before Reset: %v", err)
	}
	if _, err := sb.Collect(ctx, []string{"g"}); !errors.Is(err, errResetting) {
		t.Errorf("Collect before Reset: %v", err)
	}
	if err := sb.Reset(ctx, 0); err != nil {
		t.Fatal(err)
	}
	r = run(t, sb, jobs.Limits{}, "sh", "-c", "for f in /tmp/f /work/g /dev/shm/h; do [ -e $f ] && echo LEFT $f; done; ls -A /work /dev/shm; df -k /work | tail -1 | awk '{print $2}'")
	if r.Stdout != "/dev/shm:\n\n/work:\n"+strconv.Itoa(int(jobs.DefaultLimits().DiskBytes>>10))+"\n" {
		t.Errorf("after the reset of a Last process: %q %q", r.Stdout, r.Stderr)
	}
	// A Last process that cannot start is done too; then a reset to
	// another size than the sandbox's: Reset resets once more.
	r, err = sb.Run(ctx, Process{Argv: []string{"no-such-program"}, Env: DefaultEnv, Last: true})
	if err != nil || r.ExitCode != 127 {
		t.Fatalf("Last process that cannot start: %v %+v", err, r)
	}
	if err := sb.Reset(ctx, 4<<20); err != nil {
		t.Fatal(err)
	}
	r = run(t, sb, jobs.Limits{}, "sh", "-c", "df -k /work | tail -1 | awk '{print $2}'")
	if r.Stdout != "4096\n" {
		t.Errorf("a 4 MiB layer after a Last process: %q %q", r.Stdout, r.Stderr)
	}
	assertEmpty(t, sb)
}

// TestResetPreparesTheNextProcess: a reset packet naming a profile gets a
// ready reply saying the init prepared the next process, with the memory
// usage it read first; one naming no known profile prepares nothing.
func TestResetPreparesTheNextProcess(t *testing.T) {
	sb := newTestSandbox(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	sb.mu.Lock()
	defer sb.mu.Unlock()
	for _, c := range []struct {
		profile SeccompProfile
		parked  bool
	}{{SeccompDefault, true}, {SeccompStrict, true}, {"no-such-profile", false}} {
		if err := sb.sendPacket(msgReset, encodeReset(sb.cfg.DiskBytes, c.profile), nil); err != nil {
			t.Fatal(err)
		}
		m, err := sb.expect(ctx, msgReady)
		if err != nil {
			t.Fatalf("%s: %v", c.profile, err)
		}
		// The usage may be 0 (nothing is charged to the job cgroup between
		// jobs); TestUsage checks the peaks that count from it.
		if r := m.Ready; r == nil || r.Parked != c.parked || r.MemoryUsage < 0 {
			t.Fatalf("%s: ready %+v", c.profile, m.Ready)
		}
	}
}

// TestZygote: the init has a zygote thread under the default profile's
// filter (see spawn_linux.h) that outlives the jobs its children ran (the
// init's kill(-1) spares its own thread group), and a job's process, its
// child, carries that filter and nothing of the zygote's privileges.
func TestZygote(t *testing.T) {
	sb := newTestSandbox(t)
	initPid := sb.cmd.Process.Pid
	zygote := func() map[string]string {
		t.Helper()
		tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", initPid))
		if err != nil {
			t.Fatal(err)
		}
		for _, task := range tasks {
			dir := fmt.Sprintf("/proc/%d/task/%s/", initPid, task.Name())
			comm, err := os.ReadFile(dir + "comm")
			if err != nil || strings.TrimSpace(string(comm)) != "corral-zygote" {
				continue
			}
			status, err := os.ReadFile(dir + "status")
			if err != nil {
				t.Fatal(err)
			}
			fields := map[string]string{}
			for _, line := range strings.Split(string(status), "\n") {
				if k, v, ok := strings.Cut(line, ":"); ok {
					fields[k] = strings.TrimSpace(v)
				}
			}
			return fields
		}
		return nil
	}
	z := zygote()
	if z == nil {
		t.Fatal("the init has no corral-zygote thread")
	}
	for k, want := range map[string]string{"Seccomp": "2", "Seccomp_filters": "1", "NoNewPrivs": "1", "CapBnd": "0000000000000000"} {
		if z[k] != want {
			t.Errorf("zygote %s: %q, want %q", k, z[k], want)
		}
	}
	// A process of each kind the zygote makes: prepared at New, after a
	// step (More), after a Last process's own reset; and a job that
	// leaves a daemon behind for the init's kill(-1).
	steps := []Process{
		{Argv: []string{"sh", "-c", "(sleep 100 &) ; grep -E '^(Seccomp|Uid|CapEff|CapBnd):' /proc/self/status"}, Env: DefaultEnv, More: true},
		{Argv: []string{"sh", "-c", "grep -E '^(Seccomp|Uid|CapEff|CapBnd):' /proc/self/status"}, Env: DefaultEnv, Last: true},
		{Argv: []string{"sh", "-c", "grep -E '^(Seccomp|Uid|CapEff|CapBnd):' /proc/self/status"}, Env: DefaultEnv},
	}
	var first string
	for i, p := range steps {
		r, err := sb.Run(context.Background(), p)
		if err != nil || r.Status != jobs.StatusOK {
			t.Fatalf("step %d: %v %+v", i, err, r)
		}
		if i == 0 {
			first = r.Stdout
			for _, want := range []string{"Seccomp:\t2", "CapEff:\t0000000000000000", "CapBnd:\t0000000000000000"} {
				if !strings.Contains(r.Stdout, want) {
					t.Errorf("job process: want %q in\n%s", want, r.Stdout)
				}
			}
			if strings.Contains(r.Stdout, "Uid:\t0") {
				t.Errorf("job process runs as root:\n%s", r.Stdout)
			}
		} else if r.Stdout != first {
			t.Errorf("step %d sees\n%s\nwant\n%s", i, r.Stdout, first)
		}
		if err := sb.Reset(context.Background(), 0); err != nil {
			t.Fatal(err)
		}
	}
	if zygote() == nil {
		t.Fatal("the zygote did not outlive the jobs")
	}
}

// TestOutputPipesPrepared: New and each Reset make the next process's
// output pipes ahead of its Run, which takes them; each process gets its
// own, owned by the job's uid (its /dev/stdout reopens).
func TestOutputPipesPrepared(t *testing.T) {
	sb := newTestSandbox(t)
	for i := 0; i < 3; i++ {
		if sb.pipes == nil {
			t.Fatalf("round %d: no output pipes prepared", i)
		}
		prepared := sb.pipes
		p := Process{Argv: []string{"sh", "-c", fmt.Sprintf("echo out %d > /dev/stdout; echo err %d >&2", i, i)}, Env: DefaultEnv, Last: true}
		r, err := sb.Run(context.Background(), p)
		if err != nil || r.Status != jobs.StatusOK {
			t.Fatalf("round %d: %v %+v", i, err, r)
		}
		if r.Stdout != fmt.Sprintf("out %d\n", i) || r.Stderr != fmt.Sprintf("err %d\n", i) {
			t.Errorf("round %d: stdout %q stderr %q", i, r.Stdout, r.Stderr)
		}
		if sb.pipes != nil {
			t.Errorf("round %d: Run left the prepared pipes", i)
		}
		if err := sb.Reset(context.Background(), 0); err != nil {
			t.Fatal(err)
		}
		if sb.pipes == prepared {
			t.Errorf("round %d: the next process got the same pipes", i)
		}
	}
}

// TestSpentPipesBounded: the read ends of used output pipes wait for the
// next reset to be closed, at most 16 of them.
func TestSpentPipesBounded(t *testing.T) {
	sb := newTestSandbox(t)
	for i := 0; i < 20; i++ {
		r, err := sb.Run(context.Background(), Process{Argv: []string{"true"}, Env: DefaultEnv})
		if err != nil || r.Status != jobs.StatusOK {
			t.Fatalf("run %d: %v %+v", i, err, r)
		}
		if len(sb.spent) > 16 {
			t.Fatalf("run %d: %d spent pipes held", i, len(sb.spent))
		}
	}
	if len(sb.spent) == 0 {
		t.Fatal("no spent pipes held after the runs")
	}
	if err := sb.Reset(context.Background(), 0); err != nil {
		t.Fatal(err)
	}
	if len(sb.spent) != 0 {
		t.Errorf("%d spent pipes after a reset", len(sb.spent))
	}
}

// TestRunUsesInitCounters: the init reads the job cgroup's counters for
// each exited reply, so Run and the Reset after a Last process need not:
// with the parent's cpuacct file closed (its own reads would fail) they
// still work, and the usage is there.
func TestRunUsesInitCounters(t *testing.T) {
	sb := newTestSandbox(t)
	sb.cg.mu.Lock()
	first := sb.cg.cpuUsage
	if first == nil {
		first = sb.cg.cpuStat
	}
	first.Close()
	sb.cg.mu.Unlock()
	if _, err := sb.cg.counters(); err == nil {
		t.Fatal("the parent still reads the counters")
	}
	for i := 0; i < 2; i++ {
		// CPU, and an 8 MiB buffer (small jobs can stay within the
		// memory cgroup's per-CPU charge batch and show no peak).
		p := Process{Argv: []string{"sh", "-c", "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; dd if=/dev/zero of=/dev/null bs=8M count=1 2>/dev/null"}, Env: DefaultEnv, Last: true}
		r, err := sb.Run(context.Background(), p)
		if err != nil || r.Status != jobs.StatusOK {
			t.Fatalf("run %d: %v %+v", i, err, r)
		}
		if r.Usage.CPUTimeMs <= 0 || r.Usage.MemoryPeakBytes < 4<<20 {
			t.Errorf("run %d: usage %+v", i, r.Usage)
		}
		if err := sb.Reset(context.Background(), 0); err != nil {
			t.Fatalf("reset %d: %v", i, err)
		}
	}
}

// TestInitSIGCHLDDefault: the init neither catches SIGCHLD (a handler ran
// on the loop's thread at every job's exit) nor ignores it (SIG_IGN would
// reap job processes before the loop's wait4 reads their status).
func TestInitSIGCHLDDefault(t *testing.T) {
	sb := newTestSandbox(t)
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", sb.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	const bit = uint64(1) << (unix.SIGCHLD - 1)
	for _, field := range []string{"SigCgt", "SigIgn"} {
		_, rest, ok := strings.Cut(string(b), "\n"+field+":\t")
		if !ok {
			t.Fatalf("no %s in /proc/PID/status", field)
		}
		line, _, _ := strings.Cut(rest, "\n")
		mask, err := strconv.ParseUint(line, 16, 64)
		if err != nil {
			t.Fatal(err)
		}
		if mask&bit != 0 {
			t.Errorf("%s has SIGCHLD: %s", field, line)
		}
	}
	// The loop still reads every exit status.
	if r := run(t, sb, jobs.Limits{}, "sh", "-c", "exit 7"); r.ExitCode != 7 {
		t.Errorf("exit code %d, want 7", r.ExitCode)
	}
}
