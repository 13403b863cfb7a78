package isolate

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/corralhq/corral/jobs"
)

// TestResetIPCNamespaces: a reset makes a new IPC namespace after a job
// that made a System V call (a process under the zygote's filter, whose
// listener hears of it) or may have made one unheard (a process of the
// default profile made outside the zygote), and keeps it after any other
// job (true, or one under strict, which denies the calls). It closes the
// old namespace at once when it still holds a System V object, a shared
// memory segment, a semaphore set or a message queue (whose memory is
// charged to the job cgroup), and keeps an empty one until ipcBatch have
// gathered, to close them together; the init never holds more than that.
func TestResetIPCNamespaces(t *testing.T) {
	if tool, why := hostileTool(t); tool == "" {
		t.Skip(why)
	}
	sb := hostileSandbox(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// held returns the IPC namespaces the init has open.
	held := func() map[string]bool {
		t.Helper()
		dir := fmt.Sprintf("/proc/%d/fd", sb.cmd.Process.Pid)
		ents, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		ns := map[string]bool{}
		for _, e := range ents {
			if l, err := os.Readlink(dir + "/" + e.Name()); err == nil && strings.HasPrefix(l, "ipc:[") {
				ns[l] = true
			}
		}
		return ns
	}
	// ipcOf runs script as one process and returns its IPC namespace
	// ("true": readlink alone).
	ipcOf := func(p Process, script string) string {
		t.Helper()
		p.Argv, p.Env = []string{"sh", "-c", script + " >/dev/null; readlink /proc/self/ns/ipc"}, DefaultEnv
		if script == "true" {
			p.Argv = []string{"readlink", "/proc/self/ns/ipc"}
		}
		r, err := sb.Run(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		ns := strings.TrimSpace(r.Stdout)
		if r.Status != jobs.StatusOK || !strings.HasPrefix(ns, "ipc:[") {
			t.Fatalf("%q: %s %q %q", script, r.Status, r.Stdout, r.Stderr)
		}
		return ns
	}
	// job runs script, resets and returns the job's IPC namespace and the
	// next job's.
	job := func(script string) (string, string) {
		t.Helper()
		ns := ipcOf(Process{}, script)
		if err := sb.Reset(ctx, 0); err != nil {
			t.Fatal(err)
		}
		return ns, ipcOf(Process{}, "true")
	}

	// No System V call: the namespace stays.
	ns, next := job("true")
	if next != ns {
		t.Errorf("after a job without System V calls: IPC namespace %s, want %s kept", next, ns)
	}
	if err := sb.Reset(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if r, err := sb.Run(ctx, Process{Argv: []string{"true"}, Env: DefaultEnv, Seccomp: SeccompStrict}); err != nil || r.Status != jobs.StatusOK {
		t.Fatalf("strict true: %v %+v", err, r)
	}
	if err := sb.Reset(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if after := ipcOf(Process{}, "true"); after != next {
		t.Errorf("after a strict job: IPC namespace %s, want %s kept", after, next)
	}
	// A call that finds nothing is heard, and the namespace replaced; it
	// is empty, so the init keeps it for a batch.
	if err := sb.Reset(ctx, 0); err != nil {
		t.Fatal(err)
	}
	empty, next := job("hostile shmcheck")
	if next == empty {
		t.Errorf("after a job that called shmget: IPC namespace %s again, want a new one", next)
	}
	if !held()[empty] {
		t.Errorf("the empty namespace %s was closed at once, want it kept for a batch", empty)
	}
	// A default process made outside the zygote (the second process of
	// a job, not prepared) is not heard: the namespace is replaced.
	if err := sb.Reset(ctx, 0); err != nil {
		t.Fatal(err)
	}
	first := ipcOf(Process{}, "true")
	if second := ipcOf(Process{}, "true"); second != first {
		t.Fatalf("two processes of one job in IPC namespaces %s and %s", first, second)
	}
	if err := sb.Reset(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if next := ipcOf(Process{}, "true"); next == first {
		t.Errorf("after a default process made outside the zygote: IPC namespace %s again, want a new one", next)
	}
	for _, obj := range []string{"shm", "sem", "msg"} {
		if err := sb.Reset(ctx, 0); err != nil {
			t.Fatal(err)
		}
		used, _ := job("hostile " + obj + "create")
		if held()[used] {
			t.Errorf("the namespace %s still holding a %s object was kept, want it closed at once", used, obj)
		}
	}
	if r := run(t, sb, jobs.Limits{}, "hostile", "shmcheck"); r.Stdout != "shm absent\n" {
		t.Errorf("after the reset: %q %q", r.Stdout, r.Stderr)
	}
	// Namespace numbers are reused once freed: count, not names.
	seen, dropped, last := 0, false, len(held())
	for i := 0; i < 2*ipcBatch; i++ {
		if err := sb.Reset(ctx, 0); err != nil {
			t.Fatal(err)
		}
		job("hostile shmcheck")
		n := len(held())
		seen = max(seen, n)
		dropped = dropped || n < last
		last = n
		// The current layer's and at most ipcBatch-1 waiting.
		if n > ipcBatch {
			t.Fatalf("after %d resets the init holds %d IPC namespaces, want at most %d", i+1, n, ipcBatch)
		}
	}
	if seen < ipcBatch || !dropped {
		t.Errorf("the init held at most %d IPC namespaces and closed a batch: %v; want %d, then a batch closed", seen, dropped, ipcBatch)
	}
}
