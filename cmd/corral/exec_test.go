package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/corralhq/corral/jobs"
	"github.com/corralhq/corral/rootfs"
)

func TestExec(t *testing.T) {
	needRoot(t)
	data := dataDir(t)
	// What a killed build left (pid above any pid_max): the next image
	// command removes it.
	stale := filepath.Join(data, "tmp", "build-99999999-x")
	if err := os.MkdirAll(stale, 0o700); err != nil {
		t.Fatal(err)
	}
	if _, stderr, code := corral(t, "image", "busybox", "bb", "--data", data); code != 0 {
		t.Fatalf("image busybox: %d %s", code, stderr)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("a dead build's directory is left: %v", err)
	}

	t.Run("output and exit code", func(t *testing.T) {
		out, errOut, code := corral(t, "exec", "--data", data, "--image", "bb", "--", "sh", "-c", "echo hi; echo err >&2; exit 7")
		if out != "hi\n" || errOut != "err\n" || code != 7 {
			t.Fatalf("got %q %q %d", out, errOut, code)
		}
	})
	t.Run("the command's own flags", func(t *testing.T) {
		// Everything after the command is its own: before, -v and
		// --json were read as exec's flags.
		out, errOut, code := corral(t, "exec", "--data", data, "--image", "bb", "echo", "hi", "-v", "--json")
		if out != "hi -v --json\n" || code != 0 {
			t.Fatalf("got %q %q %d", out, errOut, code)
		}
	})
	t.Run("relative data directory", func(t *testing.T) {
		wd, err := os.Getwd()
		if err != nil {
			t.Fatal(err)
		}
		rel, err := filepath.Rel(wd, data)
		if err != nil {
			t.Fatal(err)
		}
		out, errOut, code := corral(t, "exec", "--data", rel, "--image", "bb", "--", "echo", "hi")
		if out != "hi\n" || code != 0 {
			t.Fatalf("--data %s: got %q %q %d", rel, out, errOut, code)
		}
	})
	t.Run("json", func(t *testing.T) {
		out, _, code := corral(t, "exec", "--data", data, "--image", "bb", "--json", "--env", "A=b", "--", "sh", "-c", "echo $A")
		var r jobs.StepResult
		if err := json.Unmarshal([]byte(out), &r); err != nil || code != 0 {
			t.Fatalf("%v %d %s", err, code, out)
		}
		if r.Status != jobs.StatusOK || r.Stdout != "b\n" {
			t.Fatalf("%+v", r)
		}
		for _, key := range []string{`"usage"`, `"memory_peak_bytes"`, `"stdout_truncated"`, `"signal"`} {
			if !strings.Contains(out, key) {
				t.Errorf("result lacks %s:\n%s", key, out)
			}
		}
	})
	t.Run("wall limit", func(t *testing.T) {
		_, errOut, code := corral(t, "exec", "--data", data, "--image", "bb", "--wall", "200ms", "--", "sleep", "10")
		if code != 128+9 || !strings.Contains(errOut, "wall_time_limit") {
			t.Fatalf("got %d %q", code, errOut)
		}
	})
	t.Run("stdin", func(t *testing.T) {
		in := t.TempDir() + "/in"
		os.WriteFile(in, []byte("from a file\n"), 0o644)
		out, _, _ := corral(t, "exec", "--data", data, "--image", "bb", "--stdin", in, "--", "cat")
		if out != "from a file\n" {
			t.Fatalf("got %q", out)
		}
	})
	t.Run("limit above maximum", func(t *testing.T) {
		_, errOut, code := corral(t, "exec", "--data", data, "--image", "bb", "--memory", "100G", "--", "true")
		if code != 1 || !strings.Contains(errOut, "memory_bytes") {
			t.Fatalf("got %d %q", code, errOut)
		}
	})
	t.Run("missing image", func(t *testing.T) {
		_, errOut, code := corral(t, "exec", "--data", data, "--image", "nope", "--", "true")
		if code != 1 || !strings.Contains(errOut, "not found") || !strings.Contains(errOut, "corral image build") {
			t.Fatalf("got %d %q", code, errOut)
		}
	})
	t.Run("bad image name", func(t *testing.T) {
		_, errOut, code := corral(t, "exec", "--data", data, "--image", "../etc", "--", "true")
		if code != 1 || !strings.Contains(errOut, "name") {
			t.Fatalf("got %d %q", code, errOut)
		}
	})
	t.Run("no command", func(t *testing.T) {
		_, errOut, code := corral(t, "exec", "--data", data, "--image", "bb")
		if code != 1 || !strings.Contains(errOut, "no command") {
			t.Fatalf("got %d %q", code, errOut)
		}
	})
	t.Run("corrupt squashfs", func(t *testing.T) {
		if _, stderr, code := corral(t, "image", "busybox", "broken", "--data", data); code != 0 {
			t.Fatalf("image busybox: %d %s", code, stderr)
		}
		store, err := rootfs.OpenStore(data)
		if err != nil {
			t.Fatal(err)
		}
		img, err := store.Get("broken")
		if err != nil {
			t.Fatal(err)
		}
		// Keep the magic, ruin the rest: the mount must fail cleanly.
		layer := img.Layers[len(img.Layers)-1].Path
		b, _ := os.ReadFile(layer)
		for i := 96; i < len(b); i++ {
			b[i] ^= 0x5a
		}
		os.WriteFile(layer, b, 0o644)
		_, errOut, code := corral(t, "exec", "--data", data, "--image", "broken", "--", "true")
		if code != 1 || !strings.Contains(strings.ToLower(errOut), "corrupt") {
			t.Fatalf("got %d %q", code, errOut)
		}
		assertNoMounts(t, data)
	})
}
