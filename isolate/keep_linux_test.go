package isolate

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/corralhq/corral/jobs"
)

// fineCtimeKernel reports whether the kernel has multigrain timestamps on
// tmpfs (Linux 6.13), without which no layer is kept (fine_ctime).
func fineCtimeKernel(t *testing.T) bool { return kernelAtLeast(6, 13) }

// keepSandbox starts a sandbox with /etc files, whose stamps the check
// covers too.
func keepSandbox(t *testing.T, fresh bool) *Sandbox {
	t.Helper()
	needRoot(t)
	lower, runDir := testLower(t)
	return newSandboxWith(t, Config{
		Lower: []string{lower}, RunDir: runDir,
		EtcFiles:    map[string][]byte{"hosts": []byte("127.0.0.1 localhost\n"), "resolv.conf": []byte("nameserver 10.0.0.1\n")},
		FreshLayers: fresh,
	})
}

// layerOf runs script, then prints the job's mount and IPC namespaces and
// what /tmp, /work and /dev/shm hold; then it resets the sandbox and says
// whether the reset kept the layer. A kept layer keeps its mount
// namespace. (A new one may get the old one's number again: the kernel
// reuses them once freed.)
func layerOf(t *testing.T, sb *Sandbox, script string) (mnt, ipc, files string, kept bool) {
	t.Helper()
	r := run(t, sb, jobs.Limits{}, "sh", "-c", script+
		"\nreadlink /proc/self/ns/mnt; readlink /proc/self/ns/ipc; ls -A /tmp /work /dev/shm | tr '\\n' ' '")
	lines := strings.Split(strings.TrimSpace(r.Stdout), "\n")
	if r.Status != jobs.StatusOK || len(lines) < 3 || !strings.HasPrefix(lines[len(lines)-3], "mnt:[") {
		t.Fatalf("%q: %s %q %q", script, r.Status, r.Stdout, r.Stderr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	before := sb.ResetStats()
	if err := sb.Reset(ctx, 0); err != nil {
		t.Fatal(err)
	}
	after := sb.ResetStats()
	if after.Resets != before.Resets+1 {
		t.Fatalf("ResetStats %+v after %+v and one reset", after, before)
	}
	n := len(lines)
	return lines[n-3], lines[n-2], strings.Join(strings.Fields(lines[n-1]), " "), after.Kept == before.Kept+1
}

const emptyLayer = "/dev/shm: /tmp: /work:"

// TestResetKeepsUnchangedLayer: a job that changed nothing in its layer
// leaves it to the next job (and its IPC namespace, without a System V
// call: TestResetIPCNamespaces); any change (a file
// made and removed again, a mode or time changed, in /tmp, /work or
// /dev/shm, or corral's own WriteFiles) gets the next job a new layer, and
// nothing of it shows there.
func TestResetKeepsUnchangedLayer(t *testing.T) {
	sb := keepSandbox(t, false)
	if !fineCtimeKernel(t) {
		for i := 0; i < 3; i++ {
			if _, _, _, kept := layerOf(t, sb, "true"); kept {
				t.Fatalf("a layer was kept on a kernel without multigrain timestamps")
			}
		}
		t.Skip("kernel before 6.13: no multigrain timestamps on tmpfs, no layer is kept (checked)")
	}
	// Reading, listing and running change nothing: no access times.
	const reader = "cat /etc/hosts /etc/resolv.conf >/dev/null; ls -la / /tmp /work /dev/shm /etc >/dev/null; stat / /tmp /work >/dev/null"
	mnt, ipc, files, _ := layerOf(t, sb, reader)
	for i := 0; i < 3; i++ {
		m, p, f, kept := layerOf(t, sb, reader)
		if !kept || m != mnt {
			t.Fatalf("run %d: layer %s after a job that changed nothing, want %s kept", i, m, mnt)
		}
		if p != ipc {
			t.Fatalf("run %d: IPC namespace %s after a job that made no System V call, want %s kept", i, p, ipc)
		}
		if f != emptyLayer || files != emptyLayer {
			t.Fatalf("files %q, want %q", f, emptyLayer)
		}
		ipc = p
	}
	if st := sb.ResetStats(); st.Kept < 3 {
		t.Errorf("ResetStats %+v: want at least 3 kept", st)
	}
	if r := run(t, sb, jobs.Limits{}, "grep", "-c", "xino=on", "/proc/self/mountinfo"); r.Stdout != "1\n" {
		t.Errorf("the job root's overlay: xino=on %q times, want once", r.Stdout)
	}

	changes := []string{
		"touch /tmp/a",
		"touch /tmp/a && rm /tmp/a",
		"mkdir /work/d && rmdir /work/d",
		"echo x >/work/f && mv /work/f /tmp/f && rm /tmp/f",
		"ln -s x /tmp/l && rm /tmp/l",
		"mkfifo /tmp/p && rm /tmp/p",
		"chmod 700 /work && chmod 755 /work",
		"touch /work",
		"touch /dev/shm/x && rm /dev/shm/x",
		"touch /tmp/a && ln /tmp/a /work/b && rm /tmp/a /work/b",
		"mkdir -p /tmp/d/e && touch /tmp/d/e/x && rm -r /tmp/d",
	}
	for _, change := range changes {
		if _, _, _, kept := layerOf(t, sb, change); kept {
			t.Errorf("%q: the layer was kept", change)
		}
		_, _, f, _ := layerOf(t, sb, "true")
		if f != emptyLayer {
			t.Errorf("%q: the next job sees %q, want %q", change, f, emptyLayer)
		}
	}
	// A change right after the layer's stamps were read, many times over:
	// a coarse clock would miss some.
	for i := 0; i < 20; i++ {
		if _, _, _, kept := layerOf(t, sb, "touch /tmp/a; rm /tmp/a"); kept {
			t.Fatalf("round %d: a file made and removed went unseen", i)
		}
	}

	// Files corral writes are a change too.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, _, _, kept := layerOf(t, sb, "true"); !kept {
		t.Fatal("a job that ran true left a layer that was not kept")
	}
	if err := sb.WriteFiles(ctx, []File{{Path: "in.txt", Data: []byte("x")}}); err != nil {
		t.Fatal(err)
	}
	if _, _, f, kept := layerOf(t, sb, "true"); kept || f != "/dev/shm: /tmp: /work: in.txt" {
		t.Fatalf("with a written file: kept %v, files %q", kept, f)
	}
	if _, _, f, _ := layerOf(t, sb, "true"); f != emptyLayer {
		t.Errorf("after WriteFiles the next job sees %q", f)
	}
	// Another size is another layer, and so is the next reset's default.
	before := sb.ResetStats()
	if err := sb.Reset(ctx, 64<<20); err != nil {
		t.Fatal(err)
	}
	if st := sb.ResetStats(); st.Kept != before.Kept {
		t.Errorf("a reset to 64 MiB kept the layer: %+v", st)
	}
	if _, _, _, kept := layerOf(t, sb, "df -k /tmp | grep -q ' 65536 '"); kept {
		t.Errorf("a reset back to the default size kept the 64 MiB layer")
	}
}

// TestFreshLayers: with Config.FreshLayers every reset builds a new layer.
func TestFreshLayers(t *testing.T) {
	sb := keepSandbox(t, true)
	for i := 0; i < 4; i++ {
		if _, _, _, kept := layerOf(t, sb, "true"); kept {
			t.Fatalf("reset %d kept the layer with FreshLayers", i)
		}
	}
	if st := sb.ResetStats(); st.Kept != 0 || st.Resets != 4 {
		t.Errorf("ResetStats %+v, want 4 resets, none kept", st)
	}
	// Without kept layers the overlay needs no xino: image files keep
	// their own inode numbers.
	r := run(t, sb, jobs.Limits{}, "sh", "-c", "grep -c xino=on /proc/self/mountinfo; stat -c %i /bin/busybox")
	if f := strings.Fields(r.Stdout); len(f) != 2 || f[0] != "0" || len(f[1]) > 10 {
		t.Errorf("with FreshLayers: %q %q, want no xino and a small inode number", r.Stdout, r.Stderr)
	}
}

// TestResetKeepHostile: what the hostile helper can do to a layer without
// busybox's tools. Setting an xattr and taking it away again, or changing
// a directory's times and setting them back exactly, still changes its
// change time: the next job gets a new layer. A lock changes nothing.
func TestResetKeepHostile(t *testing.T) {
	if tool, why := hostileTool(t); tool == "" {
		t.Skip(why)
	}
	if !fineCtimeKernel(t) {
		t.Skip("kernel before 6.13: no layer is kept (TestResetKeepsUnchangedLayer checks)")
	}
	sb := hostileSandbox(t)
	for _, c := range []struct {
		args []string
		want string
		kept bool
	}{
		{[]string{"locks", "/work"}, "flock ok\n", true},
		{[]string{"xattrflip", "/work"}, "setxattr ok\nremovexattr ok\n", false},
		{[]string{"timesback", "/work"}, "utimensat ok\nutimensat-back ok\n", false},
		{[]string{"xattrflip", "/tmp"}, "setxattr EPERM\nremovexattr EPERM\n", true},
	} {
		r := run(t, sb, jobs.Limits{}, append([]string{"hostile"}, c.args...)...)
		if r.Stdout != c.want {
			t.Errorf("%v: %q %q, want %q", c.args, r.Stdout, r.Stderr, c.want)
		}
		before := sb.ResetStats().Kept
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := sb.Reset(ctx, 0)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if kept := sb.ResetStats().Kept > before; kept != c.kept {
			t.Errorf("%v: the reset kept the layer: %v, want %v", c.args, kept, c.kept)
		}
	}
}
