package isolate

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/corralhq/corral/jobs"
)

func TestWriteFilesAndCollect(t *testing.T) {
	sb := newTestSandbox(t)
	ctx := context.Background()
	err := sb.WriteFiles(ctx, []File{
		{Path: "main.sh", Data: []byte("echo from main\n"), Mode: 0o755},
		{Path: "data/in.txt", Data: []byte("42\n")},
		{Path: "data/deep/x.bin", Data: []byte{0xff, 0x00}, Mode: os.ModeSetuid | 0o755},
	})
	if err != nil {
		t.Fatal(err)
	}
	r := run(t, sb, jobs.Limits{}, "sh", "-c", `./main.sh; cat data/in.txt; stat -c '%a %u' main.sh data/in.txt data/deep/x.bin data/deep; echo out > result.txt; mkdir logs; echo l > logs/a.log`)
	if r.Status != jobs.StatusOK {
		t.Fatalf("%+v", r)
	}
	if want := "from main\n42\n755 1000\n644 1000\n4755 1000\n755 1000\n"; r.Stdout != want {
		t.Fatalf("stdout %q, want %q (modes as asked, owner the job)", r.Stdout, want)
	}
	got := collect(t, sb, "result.txt", "logs", "data/*.txt")
	want := map[string]string{"result.txt": "out\n", "logs/a.log": "l\n", "data/in.txt": "42\n"}
	if len(got) != len(want) {
		t.Fatalf("collected %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %q, want %q", k, got[k], v)
		}
	}
}

// collect returns path -> content (or "SKIPPED: reason").
func collect(t *testing.T, sb *Sandbox, patterns ...string) map[string]string {
	t.Helper()
	files, err := sb.Collect(context.Background(), patterns)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, f := range files {
		if f.File == nil {
			out[f.Path] = "SKIPPED: " + f.Skipped
			continue
		}
		b, err := io.ReadAll(f.File)
		f.File.Close()
		if err != nil {
			t.Fatal(err)
		}
		if int64(len(b)) != f.Size {
			t.Errorf("%s: read %d bytes, size says %d", f.Path, len(b), f.Size)
		}
		out[f.Path] = string(b)
	}
	return out
}

func TestFileTricks(t *testing.T) {
	sb := newTestSandbox(t)
	ctx := context.Background()
	// A host file the symlinks will aim at; it must stay untouched.
	hostFile := filepath.Join(sb.cfg.RunDir, "host-secret")
	if err := os.WriteFile(hostFile, []byte("host secret\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"../escape", "/etc/passwd", "a/../../b", "", ".", "a//b"} {
		if err := sb.WriteFiles(ctx, []File{{Path: p, Data: []byte("x")}}); !errors.Is(err, ErrUnsafePath) {
			t.Errorf("WriteFiles(%q): %v, want ErrUnsafePath", p, err)
		}
		if _, err := sb.Collect(ctx, []string{p}); !errors.Is(err, ErrUnsafePath) {
			t.Errorf("Collect(%q): %v, want ErrUnsafePath", p, err)
		}
	}
	// A job plants symlinks to the sandbox's own files, to /proc, and to
	// the host path (which does not exist in the sandbox).
	r := run(t, sb, jobs.Limits{}, "sh", "-c", `
ln -s /etc etcdir && ln -s /etc/hostname host && ln -s /proc/1 init &&
ln -s `+hostFile+` hostfile && mkdir sub && ln -s .. sub/up && ln -s / root && echo planted`)
	if r.Stdout != "planted\n" {
		t.Fatalf("%+v", r)
	}
	for _, p := range []string{"etcdir/passwd", "host", "init/environ", "hostfile", "sub/up/x", "root/tmp/x"} {
		err := sb.WriteFiles(ctx, []File{{Path: p, Data: []byte("pwned\n")}})
		if !errors.Is(err, ErrUnsafePath) {
			t.Errorf("WriteFiles(%q) through a symlink: %v, want ErrUnsafePath", p, err)
		}
	}
	got := collect(t, sb, "*", "sub/up/*", "etcdir/*", "init/*")
	var names []string
	for k, v := range got {
		names = append(names, k)
		if !strings.HasPrefix(v, "SKIPPED: symlink") {
			t.Errorf("collected %s = %q: a symlink was followed", k, v)
		}
	}
	sort.Strings(names)
	if strings.Join(names, " ") != "etcdir host hostfile init root sub/up" {
		t.Errorf("collected entries %v", names)
	}
	if b, _ := os.ReadFile(hostFile); string(b) != "host secret\n" {
		t.Fatalf("host file changed: %q", b)
	}
	r = run(t, sb, jobs.Limits{}, "cat", "/etc/hostname")
	if r.Stdout != "image\n" {
		t.Fatalf("the sandbox's /etc/hostname changed: %q", r.Stdout)
	}
	// Nothing of this job is collected after a reset.
	if err := sb.Reset(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if got := collect(t, sb, "*"); len(got) != 0 {
		t.Fatalf("collected after reset: %v", got)
	}
	// A job's list that contradicts itself: the sandbox is fine, the
	// files are refused (the worker rejects the job).
	for _, files := range [][]string{{"d/f", "d"}, {"a", "a/b"}} {
		var fs []File
		for _, p := range files {
			fs = append(fs, File{Path: "clash/" + p, Data: []byte("x")})
		}
		if err := sb.WriteFiles(ctx, fs); !errors.Is(err, ErrBadFile) {
			t.Errorf("WriteFiles(%q): %v, want ErrBadFile", files, err)
		}
	}
	if r := run(t, sb, jobs.Limits{}, "true"); r.Status != jobs.StatusOK {
		t.Errorf("after refused files: %+v", r)
	}
}

func TestEtcFiles(t *testing.T) {
	needRoot(t)
	lower, runDir := testLower(t)
	sb, err := New(context.Background(), Config{Lower: []string{lower}, RunDir: runDir, CgroupParent: testCgroupParent,
		EtcFiles: map[string][]byte{"resolv.conf": []byte("nameserver 192.0.2.53\n"), "hosts": []byte("127.0.0.1 localhost\n")}})
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Close()
	for i := 0; i < 2; i++ { // in the first writable layer and after a reset
		r := run(t, sb, jobs.Limits{}, "sh", "-c", "cat /etc/resolv.conf /etc/hosts /etc/hostname; echo x > /etc/resolv.conf 2>/dev/null && echo WROTE")
		if r.Stdout != "nameserver 192.0.2.53\n127.0.0.1 localhost\nimage\n" {
			t.Fatalf("round %d: %q %q", i, r.Stdout, r.Stderr)
		}
		if err := sb.Reset(context.Background(), 0); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := New(context.Background(), Config{Lower: []string{lower}, RunDir: runDir, EtcFiles: map[string][]byte{"../x": nil}}); err == nil {
		t.Fatal("an EtcFiles name with a slash was accepted")
	}
}
