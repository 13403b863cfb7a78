// Package rootfstest gives tests a small real image to run sandboxes on.
package rootfstest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/corralhq/corral/rootfs"
)

// Requirements skips the test, with the reason, unless it runs as root with
// busybox-static and mksquashfs installed: what building and mounting a
// busybox image needs.
func Requirements(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: images are loop-mounted and their files owned by root")
	}
	if _, err := exec.LookPath("mksquashfs"); err != nil {
		t.Skip("needs mksquashfs: apt-get install squashfs-tools")
	}
	found := false
	for _, p := range []string{"/bin/busybox", "/usr/bin/busybox"} {
		if _, err := os.Stat(p); err == nil {
			found = true
		}
	}
	if !found {
		t.Skip("needs a static busybox: apt-get install busybox-static")
	}
}

// BusyboxImage builds an image named "busybox" from rootfs.BusyboxTree in a
// store in a fresh t.TempDir(), and returns both. It skips the test when
// Requirements are not met. The image holds /bin/sh and the busybox applets
// in /bin, /etc/passwd with root and the job user corral (1000), /tmp
// (1777), /work (owned by 1000), and empty /proc and /dev.
func BusyboxImage(t testing.TB) (store *rootfs.Store, img *rootfs.Image) {
	t.Helper()
	Requirements(t)
	dir := t.TempDir()
	tree := filepath.Join(dir, "tree")
	if err := rootfs.BusyboxTree(tree); err != nil {
		t.Fatalf("busybox tree: %v", err)
	}
	store, err := rootfs.OpenStore(filepath.Join(dir, "data"))
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	img, err = store.Build(context.Background(), "busybox", rootfs.BuildOptions{From: tree})
	if err != nil {
		t.Fatalf("build busybox image: %v", err)
	}
	if err := os.RemoveAll(tree); err != nil {
		t.Fatalf("remove tree: %v", err)
	}
	return store, img
}

// Mounter returns a rootfs.Mounter whose run directory is in a fresh
// t.TempDir(), closed when the test ends. The temp dir and its parent are
// made searchable by everyone (0755), as sandboxes running as unprivileged
// host uids must reach the layers' mount points. It skips the test unless it
// runs as root.
func Mounter(t testing.TB) *rootfs.Mounter {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: layers are loop-mounted")
	}
	dir := t.TempDir()
	for _, d := range []string{dir, filepath.Dir(dir)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	m, err := rootfs.NewMounter(filepath.Join(dir, "run"))
	if err != nil {
		t.Fatalf("new mounter: %v", err)
	}
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Errorf("close mounter: %v", err)
		}
	})
	return m
}
