package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// TestBenchEmbedded runs a short `corral bench --embedded --floor --json`
// against a busybox image and checks the report is complete and sane. It
// makes no timing assertions.
func TestBenchEmbedded(t *testing.T) {
	needRoot(t)
	data := dataDir(t)
	if _, stderr, code := corral(t, "image", "busybox", "default", "--data", data); code != 0 {
		t.Skipf("cannot build the busybox image: %s", stderr)
	}
	stdout, stderr, code := corral(t, "bench", "--embedded", "--data", data, "--jobs", "30", "--slots", "2", "--json", "--floor")
	if code != 0 {
		t.Fatalf("bench exited %d:\n%s\n%s", code, stdout, stderr)
	}
	var rep benchReport
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("bench output is not a JSON report: %v\n%s", err, stdout)
	}
	if rep.Config.Mode != "embedded" || rep.Config.Jobs != 30 || rep.Config.Slots != 2 || rep.Config.Inflight != 4 {
		t.Errorf("config = %+v", rep.Config)
	}
	if rep.JobsOK != 30 || rep.Statuses["ok"] != 30 || rep.JobsFailed != 0 {
		t.Errorf("jobs ok %d, failed %d, statuses %v, errors %v", rep.JobsOK, rep.JobsFailed, rep.Statuses, rep.Errors)
	}
	if rep.JobsPerS <= 0 || rep.ElapsedS <= 0 {
		t.Errorf("jobs/s %v, elapsed %v", rep.JobsPerS, rep.ElapsedS)
	}
	if l := rep.LatencyMs; l.N != 30 || l.P50 <= 0 || l.P50 > l.P90 || l.P90 > l.P99 || l.P99 > l.Max {
		t.Errorf("latency = %+v", l)
	}
	if rep.SplitMs.Run.N != 30 || rep.SplitMs.Run.P50 <= 0 {
		t.Errorf("run split = %+v", rep.SplitMs.Run)
	}
	if rep.CPU == nil || !rep.CPU.Available || rep.CPU.WorkerNatsMsPerJob <= 0 || rep.CPU.TotalMsPerJob <= 0 {
		t.Errorf("cpu = %+v", rep.CPU)
	} else if rep.CPU.MachineBusy <= 0 || rep.CPU.MachineBusy > 1 {
		// The machine's busy share covers what the bench accounts.
		t.Errorf("machine busy %.3f, want (0, 1]", rep.CPU.MachineBusy)
	}
	if rep.Memory == nil || !rep.Memory.Available || rep.Memory.Sandboxes < 1 || rep.Memory.USSKiBAvg <= 0 || rep.Memory.ProcessRSSKiB <= 0 {
		t.Errorf("memory = %+v", rep.Memory)
	}
	// 30 jobs after 20 warm-up ones, each followed by a reset, in at least
	// 3 sandboxes (2 slots and a spare) made cold.
	if sb := rep.Sandboxes; sb == nil || sb.Created < 3 || sb.CreateMsMean <= 0 || sb.Resets < 40 || sb.ResetMsMean <= 0 {
		t.Errorf("sandboxes = %+v", rep.Sandboxes)
	} else {
		// /bin/true changes nothing: every layer is kept, where the
		// kernel has multigrain timestamps (6.13); none before.
		var major, minor int
		fmt.Sscanf(rep.Machine.Kernel, "Linux %d.%d", &major, &minor)
		want := int64(0)
		if major > 6 || major == 6 && minor >= 13 {
			want = sb.Resets
		}
		if sb.ResetsKept != want {
			t.Errorf("%d of %d resets kept the layer on %s, want %d", sb.ResetsKept, sb.Resets, rep.Machine.Kernel, want)
		}
	}
	if f := rep.Floor; f == nil || f.Runs != 30 || f.Threads != 2 || f.RunsPerS <= 0 || f.LatencyMs.P50 <= 0 || f.GoExec.RunsPerS <= 0 || f.RatioJobsPerS <= 0 {
		t.Errorf("floor = %+v", rep.Floor)
	} else if sf := f.Sandboxes; sf == nil || sf.RunsPerS <= 0 || sf.LatencyMs.P50 <= 0 || sf.RatioToFloor <= 0 {
		t.Errorf("floor in sandboxes = %+v", f.Sandboxes)
	}
	m := rep.Machine
	if m.Nproc <= 0 || m.Kernel == "" || (m.CgroupVersion != 1 && m.CgroupVersion != 2) || m.Date == "" {
		t.Errorf("machine = %+v", m)
	}

	// --rounds 3: the jobs in three rounds, each followed by its floor;
	// --fresh-layers: no layer kept.
	stdout, stderr, code = corral(t, "bench", "--embedded", "--data", data, "--jobs", "31", "--slots", "2", "--json", "--floor", "--rounds", "3", "--fresh-layers")
	if code != 0 {
		t.Fatalf("bench --rounds exited %d:\n%s\n%s", code, stdout, stderr)
	}
	rep = benchReport{}
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("bench output is not a JSON report: %v\n%s", err, stdout)
	}
	if rep.JobsOK != 31 || rep.LatencyMs.N != 31 {
		t.Errorf("--rounds: jobs ok %d, latency %+v", rep.JobsOK, rep.LatencyMs)
	}
	f := rep.Floor
	if f == nil || len(f.Rounds) != 3 || f.RatioMedian <= 0 || f.Runs != 30 {
		t.Fatalf("--rounds floor = %+v", f)
	}
	jobs := 0
	for _, r := range f.Rounds {
		jobs += r.Jobs
		if r.JobsPerS <= 0 || r.FloorRunsPerS <= 0 || r.Ratio <= 0 || r.LatencyP50Ms <= 0 || r.FloorP50Ms <= 0 {
			t.Errorf("round = %+v", r)
		}
	}
	if jobs != 31 {
		t.Errorf("rounds hold %d jobs, want 31", jobs)
	}
	if rep.CPU == nil || !rep.CPU.Available || rep.CPU.TotalMsPerJob <= 0 {
		t.Errorf("--rounds cpu = %+v", rep.CPU)
	}
	if sb := rep.Sandboxes; sb == nil || sb.Resets < 40 || sb.ResetsKept != 0 {
		t.Errorf("--fresh-layers: sandboxes = %+v, want no reset keeping a layer", rep.Sandboxes)
	}
}

// TestBenchStats checks the percentile helper.
func TestBenchStats(t *testing.T) {
	vs := make([]float64, 100)
	for i := range vs {
		vs[i] = float64(100 - i) // 100 .. 1
	}
	s := stats(vs)
	if s.N != 100 || s.P50 != 50 || s.P90 != 90 || s.P99 != 99 || s.Max != 100 || s.Mean != 50.5 {
		t.Errorf("stats = %+v", s)
	}
	if s := stats(nil); s.N != 0 {
		t.Errorf("stats(nil) = %+v", s)
	}
}

// TestBenchMissingImage: a missing image is a clear error naming the fix.
func TestBenchMissingImage(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	needRoot(t)
	data := dataDir(t)
	_, stderr, code := corral(t, "bench", "--embedded", "--data", data, "--jobs", "1")
	if code == 0 || !strings.Contains(stderr, "corral image default") {
		t.Errorf("exit %d, stderr %q: want an error telling to run 'corral image default'", code, stderr)
	}
}
