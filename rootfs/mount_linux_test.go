package rootfs_test

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/corralhq/corral/rootfs"
	"github.com/corralhq/corral/rootfs/rootfstest"
)

func ownerOf(fi fs.FileInfo) int {
	if fi == nil {
		return -1
	}
	return int(fi.Sys().(*syscall.Stat_t).Uid)
}

// mountLine returns the /proc/self/mountinfo line of the mount at mp.
func mountLine(t *testing.T, mp string) string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 4 && unescape(f[4]) == mp {
			return line
		}
	}
	return ""
}

// buildSetup gives a build test a busybox tree, a directory of its own, a
// store in it and a mounter.
func buildSetup(t *testing.T) (tree, dir string, store *rootfs.Store, m *rootfs.Mounter) {
	t.Helper()
	tree = buildTree(t)
	dir = t.TempDir()
	store, err := rootfs.OpenStore(filepath.Join(dir, "data"))
	if err != nil {
		t.Fatal(err)
	}
	return tree, dir, store, rootfstest.Mounter(t)
}

func TestBuildFromTar(t *testing.T) {
	tree, dir, store, m := buildSetup(t)
	for _, tc := range []struct{ file, flag string }{
		{"root.tar", "-cf"},
		{"root.tar.gz", "-czf"},
		{"root.tgz", "-czf"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			archive := filepath.Join(dir, tc.file)
			if out, err := exec.Command("tar", "-C", tree, tc.flag, archive, ".").CombinedOutput(); err != nil {
				t.Fatalf("tar: %v: %s", err, out)
			}
			name := strings.ReplaceAll(tc.file, ".", "-")
			img, err := store.Build(context.Background(), name, rootfs.BuildOptions{From: archive, Compression: "gzip"})
			if err != nil {
				t.Fatal(err)
			}
			if img.Source != archive || img.Compression != "gzip" {
				t.Errorf("image = %+v", img)
			}
			lower, release, err := m.Acquire(img)
			if err != nil {
				t.Fatal(err)
			}
			defer release()
			fi, err := os.Stat(filepath.Join(lower[0], "bin", "busybox"))
			if err != nil || fi.Mode().Perm() != 0o755 {
				t.Errorf("bin/busybox: %v %v", fi, err)
			}
			fi, err = os.Stat(filepath.Join(lower[0], "work"))
			if err != nil || ownerOf(fi) != 1000 {
				t.Errorf("work: owner %d, %v", ownerOf(fi), err)
			}
			fi, err = os.Stat(filepath.Join(lower[0], "tmp"))
			if err != nil || fi.Mode()&os.ModeSticky == 0 || fi.Mode().Perm() != 0o777 {
				t.Errorf("tmp: %v %v", fi.Mode(), err)
			}
		})
	}
	if ents, _ := os.ReadDir(filepath.Join(store.Dir(), "tmp")); len(ents) != 0 {
		t.Errorf("tmp not empty: %v", ents)
	}
}

func TestAcquireShared(t *testing.T) {
	store, img := rootfstest.BusyboxImage(t)
	m := rootfstest.Mounter(t)
	l1, r1, err := m.Acquire(img)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r1)
	l2, r2, err := m.Acquire(img)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r2)
	if len(l1) != 1 || len(l2) != 1 || l1[0] != l2[0] {
		t.Fatalf("lowers %v and %v", l1, l2)
	}
	mp := l1[0]
	if want := filepath.Join(m.Dir(), "layers", strings.TrimPrefix(img.Layers[0].Digest, "sha256:")); mp != want {
		t.Errorf("mount point %s, want %s", mp, want)
	}
	if got := mountsUnder(mp); len(got) != 1 {
		t.Fatalf("mounts at %s: %v, want one", mp, got)
	}
	if got := loopsBacking(store.Dir()); len(got) != 1 {
		t.Fatalf("loop devices: %v, want one", got)
	}
	line := mountLine(t, mp)
	opts := strings.Split(strings.Fields(line)[5], ",")
	for _, want := range []string{"ro", "nosuid", "nodev"} {
		if !contains(opts, want) {
			t.Errorf("mount options %v lack %s", opts, want)
		}
	}
	if !strings.Contains(line, " - squashfs /dev/loop") {
		t.Errorf("not a squashfs on a loop device: %s", line)
	}
	if strings.Contains(line, "shared:") || strings.Contains(mountLine(t, m.Dir()), "shared:") {
		t.Errorf("mount is shared: %s", line)
	}
	if _, err := os.Stat(filepath.Join(mp, "bin", "busybox")); err != nil {
		t.Error(err)
	}
	if m.Mounted() != 1 {
		t.Errorf("Mounted = %d", m.Mounted())
	}

	r1()
	r1() // a second call does nothing
	if got := mountsUnder(mp); len(got) != 1 {
		t.Fatalf("after one release: mounts %v, want one", got)
	}
	r2()
	if got := mountsUnder(mp); len(got) != 0 {
		t.Errorf("after the last release: mounts %v", got)
	}
	if got := loopsBacking(store.Dir()); len(got) != 0 {
		t.Errorf("after the last release: loop devices %v", got)
	}
	if _, err := os.Stat(mp); !os.IsNotExist(err) {
		t.Errorf("mount point left: %v", err)
	}
	if m.Mounted() != 0 {
		t.Errorf("Mounted = %d", m.Mounted())
	}
	// And it mounts again.
	_, r3, err := m.Acquire(img)
	if err != nil {
		t.Fatal(err)
	}
	r3()
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestAcquireConcurrent(t *testing.T) {
	store, img := rootfstest.BusyboxImage(t)
	m := rootfstest.Mounter(t)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				lower, release, err := m.Acquire(img)
				if err != nil {
					errs <- err
					return
				}
				if _, err := os.Stat(filepath.Join(lower[0], "bin", "sh")); err != nil {
					errs <- err
				}
				release()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if m.Mounted() != 0 || len(loopsBacking(store.Dir())) != 0 || len(mountsUnder(filepath.Join(m.Dir(), "layers"))) != 0 {
		t.Errorf("left: %d layers, loops %v, mounts %v", m.Mounted(), loopsBacking(store.Dir()), mountsUnder(filepath.Join(m.Dir(), "layers")))
	}
}

func TestLayerStack(t *testing.T) {
	store, _ := rootfstest.BusyboxImage(t)
	src := t.TempDir()
	os.MkdirAll(filepath.Join(src, "etc"), 0o755)
	os.WriteFile(filepath.Join(src, "etc", "hostname"), []byte("app\n"), 0o644)
	os.WriteFile(filepath.Join(src, "app.txt"), []byte("top\n"), 0o644)
	img, err := store.Build(context.Background(), "app", rootfs.BuildOptions{From: src, Base: "busybox"})
	if err != nil {
		t.Fatal(err)
	}
	if len(img.Layers) != 2 || img.Base != "busybox" {
		t.Fatalf("image = %+v", img)
	}
	base, _ := store.Get("busybox")
	if img.Layers[0] != base.Layers[0] {
		t.Errorf("bottom layer %v, want busybox's %v", img.Layers[0], base.Layers[0])
	}
	m := rootfstest.Mounter(t)
	lower, release, err := m.Acquire(img)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(release)
	if len(lower) != 2 {
		t.Fatalf("lower = %v", lower)
	}
	// Top first.
	if _, err := os.Stat(filepath.Join(lower[0], "app.txt")); err != nil {
		t.Errorf("top layer first: %v", err)
	}
	if _, err := os.Stat(filepath.Join(lower[1], "bin", "busybox")); err != nil {
		t.Errorf("base layer second: %v", err)
	}
	// As overlayfs lowers: the top layer's files win.
	merged := filepath.Join(t.TempDir(), "merged")
	os.Mkdir(merged, 0o755)
	if err := unix.Mount("overlay", merged, "overlay", unix.MS_RDONLY, "lowerdir="+strings.Join(lower, ":")); err != nil {
		t.Fatalf("overlay: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(merged, unix.MNT_DETACH) })
	b, err := os.ReadFile(filepath.Join(merged, "etc", "hostname"))
	if err != nil || string(b) != "app\n" {
		t.Errorf("merged etc/hostname = %q, %v", b, err)
	}
	for _, p := range []string{"app.txt", "bin/busybox", "etc/passwd"} {
		if _, err := os.Stat(filepath.Join(merged, p)); err != nil {
			t.Errorf("merged: %v", err)
		}
	}
}

// corruptCopies writes damaged copies of a good layer into dir.
func corruptCopies(t *testing.T, good, dir string) map[string]string {
	b, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{
		"empty":     nil,
		"garbage":   []byte(strings.Repeat("not squashfs at all ", 300)),
		"short":     b[:50],
		"truncated": b[:len(b)/2],
	}
	// A whole file whose superblock names an unknown compressor: it passes
	// the checks made before the loop device, and the mount refuses it.
	badComp := append([]byte(nil), b...)
	badComp[20], badComp[21] = 99, 0
	files["bad-compressor"] = badComp
	// The superblock intact, everything after it zeroed.
	zeroed := make([]byte, len(b))
	copy(zeroed, b[:96])
	files["zeroed-tables"] = zeroed
	out := map[string]string{}
	for name, data := range files {
		p := filepath.Join(dir, name+".sqfs")
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		out[name] = p
	}
	return out
}

func digestOf(t *testing.T, path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

func TestCorruptLayer(t *testing.T) {
	_, good := rootfstest.BusyboxImage(t)
	m := rootfstest.Mounter(t)
	dir := t.TempDir()
	for name, path := range corruptCopies(t, good.Layers[0].Path, dir) {
		t.Run(name, func(t *testing.T) {
			bad := rootfs.Layer{Digest: digestOf(t, path), Path: path}
			for _, img := range []*rootfs.Image{
				{Name: "bad", Layers: []rootfs.Layer{bad}},
				// A good base under a bad top: the base is released too.
				{Name: "bad-on-good", Layers: []rootfs.Layer{good.Layers[0], bad}},
			} {
				lower, release, err := m.Acquire(img)
				if err == nil {
					release()
					t.Fatalf("%s: Acquire = %v, want an error", img.Name, lower)
				}
				t.Logf("%s: %v", img.Name, err)
				if !errors.Is(err, rootfs.ErrCorruptImage) || !strings.Contains(err.Error(), path) {
					t.Errorf("%s: Acquire = %v, want ErrCorruptImage naming %s", img.Name, err, path)
				}
				if got := mountsUnder(m.Dir()); len(got) != 1 { // the run dir's own bind
					t.Errorf("%s: mounts left: %v", img.Name, got)
				}
				if got := loopsBacking(dir); len(got) != 0 {
					t.Errorf("%s: loop devices left: %v", img.Name, got)
				}
				if got := loopsBacking(filepath.Dir(good.Layers[0].Path)); len(got) != 0 {
					t.Errorf("%s: loop devices left: %v", img.Name, got)
				}
				if m.Mounted() != 0 {
					t.Errorf("%s: Mounted = %d", img.Name, m.Mounted())
				}
				if ents, _ := os.ReadDir(filepath.Join(m.Dir(), "layers")); len(ents) != 0 {
					t.Errorf("%s: mount points left: %v", img.Name, ents)
				}
			}
		})
	}
	// Digests that are not digests never become paths.
	img := &rootfs.Image{Name: "x", Layers: []rootfs.Layer{{Digest: "sha256:../../etc", Path: good.Layers[0].Path}}}
	if _, _, err := m.Acquire(img); !errors.Is(err, rootfs.ErrCorruptImage) {
		t.Errorf("bad digest: %v", err)
	}
}

func TestMounterClose(t *testing.T) {
	store, img := rootfstest.BusyboxImage(t)
	runDir := filepath.Join(t.TempDir(), "run")
	m, err := rootfs.NewMounter(runDir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	if _, err := rootfs.NewMounter(runDir); err == nil || !strings.Contains(err.Error(), "already a mount point") {
		t.Errorf("second NewMounter on the same dir = %v", err)
	}
	_, release, err := m.Acquire(img)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if got := mountsUnder(runDir); len(got) != 0 {
		t.Errorf("mounts after Close: %v", got)
	}
	if got := loopsBacking(store.Dir()); len(got) != 0 {
		t.Errorf("loop devices after Close: %v", got)
	}
	if _, err := os.Stat(runDir); !os.IsNotExist(err) {
		t.Errorf("run dir left: %v", err)
	}
	release() // after Close: nothing to do, no panic
	if err := m.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
	if _, _, err := m.Acquire(img); err == nil {
		t.Error("Acquire after Close succeeded")
	}
}

func TestCleanStale(t *testing.T) {
	store, img := rootfstest.BusyboxImage(t)
	data := store.Dir()

	// A process that mounts the image, then dies without cleaning up.
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+data, childImageEnv+"="+img.Name)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		cmd.Process.Kill()
		cmd.Wait()
		rootfs.CleanStale(data) // whatever happened above
	})
	line, _ := bufio.NewReader(stdout).ReadString('\n')
	if line != "ready\n" {
		t.Fatalf("child: %q", line)
	}
	childPid := cmd.Process.Pid
	childRun := filepath.Join(data, "run", strconv.Itoa(childPid))
	if got := mountsUnder(childRun); len(got) != 2 {
		t.Fatalf("child's mounts: %v, want its run dir and a layer", got)
	}
	cmd.Process.Kill()
	cmd.Wait()

	// This process's run dir is alive and must stay.
	m, err := rootfs.NewMounter(rootfs.RunDir(data))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	lower, release, err := m.Acquire(img)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(release)
	// A live pid (1) whose run dir records another start time: a reused pid.
	reused := filepath.Join(data, "run", "1")
	os.MkdirAll(reused, 0o755)
	os.WriteFile(filepath.Join(reused, "owner"), []byte("1 987654321\n"), 0o644)
	// Scratch dirs of a dead build and of a live one.
	deadBuild := filepath.Join(data, "tmp", fmt.Sprintf("build-%d-123", childPid))
	liveBuild := filepath.Join(data, "tmp", fmt.Sprintf("build-%d-123", os.Getpid()))
	os.MkdirAll(filepath.Join(deadBuild, "root"), 0o755)
	os.MkdirAll(liveBuild, 0o755)

	if err := rootfs.CleanStale(data); err != nil {
		t.Fatal(err)
	}
	if got := mountsUnder(childRun); len(got) != 0 {
		t.Errorf("child's mounts left: %v", got)
	}
	for _, p := range []string{childRun, reused, deadBuild} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s left: %v", p, err)
		}
	}
	for _, p := range []string{liveBuild, filepath.Join(lower[0], "bin", "busybox")} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("live %s removed: %v", p, err)
		}
	}
	if got := loopsBacking(data); len(got) != 1 {
		t.Errorf("loop devices: %v, want only this process's", got)
	}
	if err := rootfs.CleanStale(filepath.Join(t.TempDir(), "none")); err != nil {
		t.Errorf("CleanStale of an empty data dir = %v", err)
	}
}

func TestBusyboxTree(t *testing.T) {
	tree := buildTree(t)
	fi, err := os.Stat(filepath.Join(tree, "tmp"))
	if err != nil || fi.Mode().Perm() != 0o777 || fi.Mode()&fs.ModeSticky == 0 {
		t.Errorf("tmp: %v, %v", fi.Mode(), err)
	}
	if target, err := os.Readlink(filepath.Join(tree, "bin", "sh")); err != nil || target != "busybox" {
		t.Errorf("bin/sh -> %q, %v", target, err)
	}
	for _, d := range []string{"etc", "work", "proc", "dev", "usr/bin"} {
		if fi, err := os.Stat(filepath.Join(tree, d)); err != nil || !fi.IsDir() {
			t.Errorf("%s: %v", d, err)
		}
	}
	out, err := exec.Command("chroot", "--userspec=1000:1000", tree, "/bin/sh", "-c", "whoami; id -g; cat /etc/hostname; cd /work && touch x && ls").CombinedOutput()
	if err != nil || string(out) != "corral\n1000\ncorral\nx\n" {
		t.Errorf("in the tree: %q, %v", out, err)
	}
	if err := rootfs.BusyboxTree(tree); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Errorf("BusyboxTree on a full dir = %v", err)
	}
}

func TestDefaultTreePython(t *testing.T) {
	rootfstest.Requirements(t)
	real, err := filepath.EvalSymlinks("/usr/bin/python3")
	if err != nil {
		t.Skip("needs the host's python3 at /usr/bin/python3: apt-get install python3-minimal")
	}
	tree := filepath.Join(t.TempDir(), "tree")
	if err := rootfs.DefaultTree(tree, true); err != nil {
		t.Fatal(err)
	}
	stdlib := filepath.Join(tree, "usr", "lib", filepath.Base(real))
	const script = "import sys, json, hashlib, sqlite3, ssl, decimal, ctypes, zlib\n" +
		"print(json.dumps([1, hashlib.sha256(b'').hexdigest()[:8], sys.flags.isolated]))"
	out, err := exec.Command("chroot", "--userspec=1000:1000", tree, "/usr/bin/python3", "-c", script).CombinedOutput()
	if err != nil || string(out) != "[1, \"e3b0c442\", 0]\n" {
		t.Fatalf("python3 in the tree: %q, %v", out, err)
	}
	// Byte-compiled: importing writes nothing (the job user could not
	// write there anyway; in a sandbox it would go to its tmpfs).
	if _, err := os.Stat(filepath.Join(stdlib, "__pycache__", "os.cpython-"+strings.ReplaceAll(strings.TrimPrefix(filepath.Base(real), "python"), ".", "")+".pyc")); err != nil {
		t.Errorf("stdlib not byte-compiled: %v", err)
	}
	// As root python would write a stale or missing .pyc: it finds none to write.
	before := countFiles(t, stdlib)
	out, err = exec.Command("chroot", tree, "/usr/bin/python3", "-c", "import json, email.parser, http.client, asyncio").CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if after := countFiles(t, stdlib); after != before {
		t.Errorf("importing wrote %d files into the standard library", after-before)
	}
	if _, err := os.Stat(filepath.Join(stdlib, "test")); !os.IsNotExist(err) {
		t.Errorf("test/ copied: %v", err)
	}
	// Without python.
	bare := filepath.Join(t.TempDir(), "bare")
	if err := rootfs.DefaultTree(bare, false); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Join(bare, "usr", "bin", "python3")); !os.IsNotExist(err) {
		t.Errorf("python in the tree without python: %v", err)
	}
}

func countFiles(t *testing.T, dir string) int {
	n := 0
	err := filepath.WalkDir(dir, func(string, fs.DirEntry, error) error { n++; return nil })
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestRunDirPrivate: on a shared mount (as / is under systemd), layer
// mounts must not propagate to other mount namespaces, and Close must leave
// nothing there either.
func TestRunDirPrivate(t *testing.T) {
	_, img := rootfstest.BusyboxImage(t)
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Skip("needs unshare(1) from util-linux")
	}
	shared := filepath.Join(t.TempDir(), "shared")
	os.Mkdir(shared, 0o755)
	if err := unix.Mount("corral-test", shared, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(shared, unix.MNT_DETACH) })
	if err := unix.Mount("", shared, "", unix.MS_SHARED, ""); err != nil {
		t.Fatal(err)
	}
	// Another mount namespace receiving our mounts, like a systemd service's.
	cmd := exec.Command("unshare", "--mount", "--propagation", "slave", "sh", "-c", "echo ready; exec cat")
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdin.Close(); cmd.Process.Kill(); cmd.Wait() })
	if line, _ := bufio.NewReader(stdout).ReadString('\n'); line != "ready\n" {
		t.Fatalf("unshare: %q", line)
	}
	theirs := func() []string {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", cmd.Process.Pid))
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(unescape(f[4]), shared+"/") {
				out = append(out, unescape(f[4]))
			}
		}
		return out
	}
	if got := theirs(); len(got) != 0 {
		t.Fatalf("their mounts before: %v", got)
	}

	runDir := filepath.Join(shared, "run")
	m, err := rootfs.NewMounter(runDir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	lower, release, err := m.Acquire(img)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	for _, mp := range theirs() {
		if mp != runDir { // the run dir's own (empty) bind is copied; nothing below it
			t.Errorf("layer mount propagated to another namespace: %s", mp)
		}
	}
	if len(mountsUnder(lower[0])) != 1 {
		t.Fatalf("layer not mounted here")
	}
	release()
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if got := theirs(); len(got) != 0 {
		t.Errorf("their mounts after Close: %v", got)
	}
}

// An image's root is always enterable and its layer the same for the same
// tree, whatever the source looked like: a tar made from a private
// directory (mode 0700) and extracted at a different time, a symlink
// naming the directory (mksquashfs took the link itself as the tree's only
// entry: an image holding nothing usable).
func TestBuildSourceQuirks(t *testing.T) {
	tree, dir, store, m := buildSetup(t)
	if err := os.Chmod(tree, 0o700); err != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(dir, "private.tar")
	if out, err := exec.Command("tar", "-C", tree, "-cf", archive, ".").CombinedOutput(); err != nil {
		t.Fatalf("tar: %v: %s", err, out)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(tree, link); err != nil {
		t.Fatal(err)
	}
	var digests []string
	for _, src := range []string{archive, archive, link} {
		img, err := store.Build(context.Background(), "quirk", rootfs.BuildOptions{From: src})
		if err != nil {
			t.Fatalf("%s: %v", src, err)
		}
		digests = append(digests, img.Layers[0].Digest)
		lower, release, err := m.Acquire(img)
		if err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(lower[0])
		if err != nil || fi.Mode().Perm() != 0o755 {
			t.Errorf("%s: image root %v %v, want 0755", src, fi.Mode(), err)
		}
		if _, err := os.Stat(filepath.Join(lower[0], "bin", "busybox")); err != nil {
			t.Errorf("%s: no bin/busybox in the image: %v", src, err)
		}
		release()
		time.Sleep(1100 * time.Millisecond) // a later extraction, a later root time
	}
	if digests[0] != digests[1] {
		t.Errorf("the same tar built twice gave layers %s and %s", digests[0], digests[1])
	}
}

// An image read before it was rebuilt (or removed) names a layer file that
// is gone: Acquire says so (ErrImageChanged, read the image again), not
// that the image is corrupt, and leaves nothing mounted.
func TestAcquireAfterRebuild(t *testing.T) {
	tree := buildTree(t)
	store, err := rootfs.OpenStore(filepath.Join(t.TempDir(), "data"))
	if err != nil {
		t.Fatal(err)
	}
	old, err := store.Build(context.Background(), "img", rootfs.BuildOptions{From: tree})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tree, "new.txt"), []byte("new\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Build(context.Background(), "img", rootfs.BuildOptions{From: tree}); err != nil {
		t.Fatal(err)
	}
	m := rootfstest.Mounter(t)
	if _, _, err := m.Acquire(old); !errors.Is(err, rootfs.ErrImageChanged) || errors.Is(err, rootfs.ErrCorruptImage) {
		t.Errorf("Acquire of the image as it was: %v, want ErrImageChanged", err)
	}
	if n := m.Mounted(); n != 0 {
		t.Errorf("%d layers left mounted", n)
	}
	fresh, err := store.Get("img")
	if err != nil {
		t.Fatal(err)
	}
	_, release, err := m.Acquire(fresh)
	if err != nil {
		t.Fatalf("Acquire of the image read again: %v", err)
	}
	release()
}
