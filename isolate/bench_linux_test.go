package isolate

import (
	"context"
	"os/exec"
	"testing"

	"github.com/corralhq/corral/jobs"
)

// BenchmarkSandboxNew measures a cold sandbox: cgroup, init, stage mounts,
// pivot_root, first writable layer. A pool pays it ahead of jobs.
func BenchmarkSandboxNew(b *testing.B) {
	needRoot(b)
	lower, runDir := testLower(b)
	b.ResetTimer()
	for b.Loop() {
		sb, err := New(context.Background(), Config{Lower: []string{lower}, RunDir: runDir, CgroupParent: testCgroupParent})
		if err != nil {
			b.Fatal(err)
		}
		sb.Close()
	}
}

// BenchmarkReset measures resetting a sandbox between jobs that change
// nothing: the layer is kept, the IPC namespace is new.
func BenchmarkReset(b *testing.B) {
	sb := newTestSandbox(b)
	for b.Loop() {
		if err := sb.Reset(context.Background(), 0); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkResetFresh measures replacing the writable layer between jobs
// (Config.FreshLayers).
func BenchmarkResetFresh(b *testing.B) {
	needRoot(b)
	lower, runDir := testLower(b)
	sb, err := New(context.Background(), Config{Lower: []string{lower}, RunDir: runDir, CgroupParent: testCgroupParent, FreshLayers: true})
	if err != nil {
		b.Fatal(err)
	}
	defer sb.Close()
	for b.Loop() {
		if err := sb.Reset(context.Background(), 0); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRunTrue measures running /bin/true in a warm sandbox, every
// limit on: spawn, cgroup counters before and after, output pipes.
func BenchmarkRunTrue(b *testing.B) {
	sb := newTestSandbox(b)
	p := Process{Argv: []string{"/bin/true"}, Env: DefaultEnv}
	for b.Loop() {
		r, err := sb.Run(context.Background(), p)
		if err != nil || r.Status != jobs.StatusOK {
			b.Fatal(err, r)
		}
	}
}

// BenchmarkRunTruePrepared is BenchmarkRunTrue where each run asks for the
// next one's process to be prepared (Process.More), as after a reset: the
// setup that does not depend on the request is off the run's path.
func BenchmarkRunTruePrepared(b *testing.B) {
	sb := newTestSandbox(b)
	p := Process{Argv: []string{"/bin/true"}, Env: DefaultEnv, More: true}
	for b.Loop() {
		r, err := sb.Run(context.Background(), p)
		if err != nil || r.Status != jobs.StatusOK {
			b.Fatal(err, r)
		}
	}
}

// BenchmarkOSExecTrue is the reference: a plain os/exec of the host's
// /bin/true, no sandbox.
func BenchmarkOSExecTrue(b *testing.B) {
	for b.Loop() {
		if err := exec.Command("/bin/true").Run(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkResetAfterSocket measures the reset after a job that made an
// AF_INET socket (a refused loopback connection): the layer is kept, the
// network namespace is new. Only the reset is timed.
func BenchmarkResetAfterSocket(b *testing.B) {
	sb := newTestSandbox(b)
	p := Process{Argv: []string{"sh", "-c", "nc 127.0.0.1 9 </dev/null 2>/dev/null; true"}, Env: DefaultEnv}
	for b.Loop() {
		b.StopTimer()
		if r, err := sb.Run(context.Background(), p); err != nil || r.Status != jobs.StatusOK {
			b.Fatal(err, r)
		}
		b.StartTimer()
		if err := sb.Reset(context.Background(), 0); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRunTrueTwoSlots runs /bin/true in two warm sandboxes at once,
// each run preparing the next process (Process.More): the sandboxes' part
// of corral bench's shape (two slots), without the queue. ns/op is the
// wall time per run over both, so 1e9/ns-op is runs per second, to set
// beside the floor's two threads.
func BenchmarkRunTrueTwoSlots(b *testing.B) {
	sbs := make(chan *Sandbox, 2)
	for range 2 {
		sbs <- newTestSandbox(b)
	}
	p := Process{Argv: []string{"/bin/true"}, Env: DefaultEnv, More: true}
	b.SetParallelism(1)
	b.RunParallel(func(pb *testing.PB) {
		sb := <-sbs
		defer func() { sbs <- sb }()
		for pb.Next() {
			r, err := sb.Run(context.Background(), p)
			if err != nil || r.Status != jobs.StatusOK {
				b.Error(err, r)
				return
			}
		}
	})
}
