package rootfs_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/corralhq/corral/rootfs"
	"github.com/corralhq/corral/rootfs/rootfstest"
)

func TestValidateName(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"default", true},
		{"python3.11", true},
		{"a", true},
		{"0", true},
		{"gcc-12_x", true},
		{strings.Repeat("a", 64), true},
		{strings.Repeat("a", 65), false},
		{"", false},
		{".hidden", false},
		{"-x", false},
		{"_x", false},
		{"Upper", false},
		{"a/b", false},
		{"..", false},
		{"../etc/passwd", false},
		{"a b", false},
		{"a\x00", false},
		{"é", false},
	} {
		err := rootfs.ValidateName(tc.name)
		if (err == nil) != tc.ok {
			t.Errorf("ValidateName(%q) = %v, want ok=%v", tc.name, err, tc.ok)
		}
		if err != nil && !errors.Is(err, rootfs.ErrInvalidName) {
			t.Errorf("ValidateName(%q) = %v, does not wrap ErrInvalidName", tc.name, err)
		}
	}
}

// FuzzGet: image names come from jobs. Whatever the name, Get answers
// ErrInvalidName or ErrImageNotFound from an empty store, and reads nothing
// else.
func FuzzGet(f *testing.F) {
	for _, s := range []string{"default", "../images/x", "/etc/passwd", ".lock", "a.json", "x\x00y", "busybox"} {
		f.Add(s)
	}
	store, err := rootfs.OpenStore(f.TempDir())
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, name string) {
		_, err := store.Get(name)
		if !errors.Is(err, rootfs.ErrInvalidName) && !errors.Is(err, rootfs.ErrImageNotFound) {
			t.Fatalf("Get(%q) = %v", name, err)
		}
		if rootfs.ValidateName(name) == nil && strings.ContainsAny(name, "/\x00") {
			t.Fatalf("ValidateName accepted %q", name)
		}
	})
}

func TestBuildFromDir(t *testing.T) {
	store, img := rootfstest.BusyboxImage(t)
	if img.Name != "busybox" || len(img.Layers) != 1 || img.Compression != "zstd" {
		t.Fatalf("image = %+v", img)
	}
	l := img.Layers[0]
	b, err := os.ReadFile(l.Path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	if want := "sha256:" + hex.EncodeToString(sum[:]); l.Digest != want {
		t.Errorf("layer digest %s, file's sha256 is %s", l.Digest, want)
	}
	if l.Path != filepath.Join(store.Dir(), "layers", "sha256", strings.TrimPrefix(l.Digest, "sha256:")+".sqfs") {
		t.Errorf("layer path %s", l.Path)
	}
	if l.Size != int64(len(b)) || img.Size != l.Size {
		t.Errorf("sizes: layer %d, image %d, file %d", l.Size, img.Size, len(b))
	}
	if !bytes.HasPrefix(b, []byte("hsqs")) {
		t.Errorf("layer is not squashfs")
	}
	got, err := store.Get("busybox")
	if err != nil {
		t.Fatal(err)
	}
	if got.Digest != img.Digest || got.Layers[0] != l || !got.Created.Equal(img.Created) {
		t.Errorf("Get = %+v, Build returned %+v", got, img)
	}
	list, err := store.List()
	if err != nil || len(list) != 1 || list[0].Name != "busybox" {
		t.Errorf("List = %v, %v", list, err)
	}
	if err := store.Verify("busybox"); err != nil {
		t.Errorf("Verify: %v", err)
	}
	// Nothing left in the scratch directory.
	if ents, _ := os.ReadDir(filepath.Join(store.Dir(), "tmp")); len(ents) != 0 {
		t.Errorf("tmp not empty: %v", ents)
	}
}

// buildTree makes a busybox tree in a temp dir.
func buildTree(t *testing.T) string {
	t.Helper()
	rootfstest.Requirements(t)
	tree := filepath.Join(t.TempDir(), "tree")
	if err := rootfs.BusyboxTree(tree); err != nil {
		t.Fatal(err)
	}
	return tree
}

func TestRebuildReplaces(t *testing.T) {
	tree := buildTree(t)
	store, err := rootfs.OpenStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	first, err := store.Build(ctx, "img", rootfs.BuildOptions{From: tree})
	if err != nil {
		t.Fatal(err)
	}
	// Same tree: same layer (mkfs time fixed), stored once.
	var progress bytes.Buffer
	again, err := store.Build(ctx, "img", rootfs.BuildOptions{From: tree, Progress: &progress})
	if err != nil {
		t.Fatal(err)
	}
	if again.Layers[0].Digest != first.Layers[0].Digest {
		t.Errorf("same tree gave layers %s and %s", first.Layers[0].Digest, again.Layers[0].Digest)
	}
	if !strings.Contains(progress.String(), "replaced image img") {
		t.Errorf("progress does not say the image was replaced:\n%s", progress.String())
	}
	// A changed tree with another compressor: the old layer goes.
	if err := os.WriteFile(filepath.Join(tree, "etc", "motd"), []byte("hi\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	changed, err := store.Build(ctx, "img", rootfs.BuildOptions{From: tree, Compression: "lz4"})
	if err != nil {
		t.Fatal(err)
	}
	if changed.Digest == first.Digest || changed.Compression != "lz4" {
		t.Errorf("rebuilt image %+v", changed)
	}
	if _, err := os.Stat(first.Layers[0].Path); !os.IsNotExist(err) {
		t.Errorf("old layer still there: %v", err)
	}
	if got, err := store.Get("img"); err != nil || got.Digest != changed.Digest {
		t.Errorf("Get = %v, %v", got, err)
	}
}

func TestBuildErrors(t *testing.T) {
	dir := t.TempDir()
	store, err := rootfs.OpenStore(filepath.Join(dir, "data"))
	if err != nil {
		t.Fatal(err)
	}
	notTar := filepath.Join(dir, "file.txt")
	os.WriteFile(notTar, []byte("x"), 0o644)
	badTar := filepath.Join(dir, "bad.tar")
	os.WriteFile(badTar, []byte("this is not a tar file"), 0o644)
	src := filepath.Join(dir, "src")
	os.Mkdir(src, 0o755)
	ctx := context.Background()
	for _, tc := range []struct {
		what    string
		name    string
		opt     rootfs.BuildOptions
		want    string
		wantErr error
	}{
		{"bad name", "Bad/Name", rootfs.BuildOptions{From: src}, "invalid image name", rootfs.ErrInvalidName},
		{"no source", "x", rootfs.BuildOptions{}, "no source", nil},
		{"missing source", "x", rootfs.BuildOptions{From: filepath.Join(dir, "nope")}, "does not exist", nil},
		{"not a dir or tar", "x", rootfs.BuildOptions{From: notTar}, "neither a directory nor a .tar", nil},
		{"bad compression", "x", rootfs.BuildOptions{From: src, Compression: "brotli"}, "unknown compression", nil},
		{"missing base", "x", rootfs.BuildOptions{From: src, Base: "nope"}, "image not found: nope", rootfs.ErrImageNotFound},
		{"bad tar", "x", rootfs.BuildOptions{From: badTar}, "tar failed", nil},
	} {
		t.Run(tc.what, func(t *testing.T) {
			if tc.what == "bad tar" || tc.what == "missing base" {
				if _, err := exec.LookPath("mksquashfs"); err != nil {
					t.Skip("needs mksquashfs")
				}
			}
			_, err := store.Build(ctx, tc.name, tc.opt)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Build = %v, want an error containing %q", err, tc.want)
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Errorf("Build = %v, want it to wrap %v", err, tc.wantErr)
			}
		})
	}
	t.Run("no mksquashfs", func(t *testing.T) {
		t.Setenv("PATH", t.TempDir())
		_, err := store.Build(ctx, "x", rootfs.BuildOptions{From: src})
		if err == nil || !strings.Contains(err.Error(), "apt-get install squashfs-tools") {
			t.Fatalf("Build = %v", err)
		}
	})
	if list, _ := store.List(); len(list) != 0 {
		t.Errorf("failed builds left images: %v", list)
	}
	if ents, _ := os.ReadDir(filepath.Join(store.Dir(), "tmp")); len(ents) != 0 {
		t.Errorf("tmp not empty: %v", ents)
	}
	if ents, _ := os.ReadDir(filepath.Join(store.Dir(), "layers", "sha256")); len(ents) != 0 {
		t.Errorf("failed builds left layers: %v", ents)
	}
}

func TestGetErrors(t *testing.T) {
	store, img := rootfstest.BusyboxImage(t)
	if _, err := store.Get("nope"); !errors.Is(err, rootfs.ErrImageNotFound) || !strings.Contains(err.Error(), "nope") {
		t.Errorf("Get(nope) = %v", err)
	}
	if _, err := store.Get("../x"); !errors.Is(err, rootfs.ErrInvalidName) {
		t.Errorf("Get(../x) = %v", err)
	}
	if err := store.Remove("nope"); !errors.Is(err, rootfs.ErrImageNotFound) {
		t.Errorf("Remove(nope) = %v", err)
	}
	// A damaged manifest is ErrCorruptImage, and List still shows the rest.
	manifests := filepath.Join(store.Dir(), "images")
	os.WriteFile(filepath.Join(manifests, "broken.json"), []byte("{"), 0o644)
	if _, err := store.Get("broken"); !errors.Is(err, rootfs.ErrCorruptImage) {
		t.Errorf("Get(broken) = %v", err)
	}
	list, err := store.List()
	if len(list) != 1 || list[0].Name != "busybox" || !errors.Is(err, rootfs.ErrCorruptImage) {
		t.Errorf("List = %v, %v", list, err)
	}
	if err := store.Remove("broken"); err != nil {
		t.Errorf("Remove(broken) = %v", err)
	}
	// A truncated layer: Get sees the size, Verify the digest.
	if err := os.Truncate(img.Layers[0].Path, img.Layers[0].Size-1); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Get("busybox"); !errors.Is(err, rootfs.ErrCorruptImage) {
		t.Errorf("Get with a truncated layer = %v", err)
	}
	if err := store.Verify("busybox"); !errors.Is(err, rootfs.ErrCorruptImage) {
		t.Errorf("Verify with a truncated layer = %v", err)
	}
}

func TestRemove(t *testing.T) {
	store, base := rootfstest.BusyboxImage(t)
	ctx := context.Background()
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "app.txt"), []byte("app\n"), 0o644)
	app, err := store.Build(ctx, "app", rootfs.BuildOptions{From: src, Base: "busybox"})
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Remove("busybox"); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Get("busybox"); !errors.Is(err, rootfs.ErrImageNotFound) {
		t.Errorf("Get after Remove = %v", err)
	}
	// app still uses the busybox layer.
	if _, err := os.Stat(base.Layers[0].Path); err != nil {
		t.Errorf("shared layer removed: %v", err)
	}
	if _, err := store.Get("app"); err != nil {
		t.Errorf("Get(app) = %v", err)
	}
	if err := store.Remove("app"); err != nil {
		t.Fatal(err)
	}
	for _, l := range app.Layers {
		if _, err := os.Stat(l.Path); !os.IsNotExist(err) {
			t.Errorf("layer %s left: %v", l.Digest, err)
		}
	}
	if list, err := store.List(); len(list) != 0 || err != nil {
		t.Errorf("List = %v, %v", list, err)
	}
}

// An unreadable manifest keeps every unused layer (its own are unknown),
// and Remove says so instead of reporting a clean removal.
func TestRemoveWithUnreadableManifest(t *testing.T) {
	store, _ := rootfstest.BusyboxImage(t)
	ctx := context.Background()
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "app.txt"), []byte("app\n"), 0o644)
	app, err := store.Build(ctx, "app", rootfs.BuildOptions{From: src})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(store.Dir(), "images", "busybox.json"), []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := store.Remove("app"); !errors.Is(err, rootfs.ErrLayersKept) || !strings.Contains(err.Error(), "busybox") {
		t.Errorf("Remove = %v, want ErrLayersKept naming busybox", err)
	}
	if _, err := store.Get("app"); !errors.Is(err, rootfs.ErrImageNotFound) {
		t.Errorf("Get after Remove = %v", err)
	}
	if _, err := os.Stat(app.Layers[0].Path); err != nil {
		t.Errorf("app's layer is gone although unused layers were to be kept: %v", err)
	}
}

// Get caches manifests; a rebuild by another store (another process) and a
// manifest edited in place are still seen, and callers cannot change the
// cached copy.
func TestGetCacheFollowsTheManifest(t *testing.T) {
	tree := buildTree(t)
	dir := t.TempDir()
	worker, err := rootfs.OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	builder, err := rootfs.OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	first, err := builder.Build(ctx, "img", rootfs.BuildOptions{From: tree})
	if err != nil {
		t.Fatal(err)
	}
	got, err := worker.Get("img")
	if err != nil || got.Digest != first.Digest {
		t.Fatalf("Get = %v, %v", got, err)
	}
	got.Layers[0].Digest = "changed by the caller"
	if again, err := worker.Get("img"); err != nil || again.Layers[0].Digest != first.Layers[0].Digest {
		t.Fatalf("Get after the caller changed its copy = %v, %v", again, err)
	}
	if err := os.WriteFile(filepath.Join(tree, "etc", "motd"), []byte("rebuilt\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	second, err := builder.Build(ctx, "img", rootfs.BuildOptions{From: tree})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := worker.Get("img"); err != nil || got.Digest != second.Digest || got.Digest == first.Digest {
		t.Fatalf("Get after a rebuild elsewhere = %v, %v; want digest %s", got, err, second.Digest)
	}
	// Damaged in place (same inode, other size): seen as corrupt.
	manifest := filepath.Join(dir, "images", "img.json")
	f, err := os.OpenFile(manifest, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("{")
	f.Close()
	if _, err := worker.Get("img"); !errors.Is(err, rootfs.ErrCorruptImage) {
		t.Errorf("Get of a manifest damaged in place = %v", err)
	}
}
