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

// TestResetIPCNamespaces: a reset closes the old layer's IPC namespace at
// once when it still holds a System V object, a shared memory segment, a
// semaphore set or a message queue (whose memory is charged to the job
// cgroup), and keeps an empty one until ipcBatch have gathered, to
// close them together; the init never holds more than that.
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
	// job runs script and returns its IPC namespace.
	job := func(script string) string {
		t.Helper()
		r := run(t, sb, jobs.Limits{}, "sh", "-c", script+" >/dev/null && readlink /proc/self/ns/ipc")
		ns := strings.TrimSpace(r.Stdout)
		if r.Status != jobs.StatusOK || !strings.HasPrefix(ns, "ipc:[") {
			t.Fatalf("%q: %s %q %q", script, r.Status, r.Stdout, r.Stderr)
		}
		if err := sb.Reset(ctx, 0); err != nil {
			t.Fatal(err)
		}
		return ns
	}

	empty := job("true")
	if !held()[empty] {
		t.Errorf("the empty namespace %s was closed at once, want it kept for a batch", empty)
	}
	for _, obj := range []string{"shm", "sem", "msg"} {
		used := job("hostile " + obj + "create")
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
		job("true")
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
