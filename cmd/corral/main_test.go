package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/corralhq/corral/isolate"
)

// TestMain lets the test binary be corral: the sandbox init, or the CLI
// when CORRAL_TEST_CLI is set, so tests run the real command line.
func TestMain(m *testing.M) {
	if isolate.IsInit() {
		isolate.RunInit()
	}
	if os.Getenv("CORRAL_TEST_CLI") == "1" {
		os.Exit(run(os.Args[1:]))
	}
	os.Exit(m.Run())
}

// corral runs the CLI with args and returns stdout, stderr and the exit code.
func corral(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "CORRAL_TEST_CLI=1")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code = 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), errb.String(), code
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: loop mounts and sandboxes")
	}
	for _, tool := range []string{"busybox", "mksquashfs"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s (go tool task deps installs it)", tool)
		}
	}
}

// dataDir makes a data directory the sandbox's host uids can traverse.
func dataDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "corral-cli-test-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(d, 0o755)
	t.Cleanup(func() {
		assertNoMounts(t, d)
		os.RemoveAll(d)
	})
	return d
}

// assertNoMounts fails if a mount or loop device under dir is left.
func assertNoMounts(t *testing.T, dir string) {
	t.Helper()
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	if strings.Contains(string(mi), dir) {
		t.Errorf("mounts left under %s:\n%s", dir, mi)
	}
	files, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
	for _, f := range files {
		b, _ := os.ReadFile(f)
		if strings.Contains(string(b), dir) {
			t.Errorf("loop device left: %s -> %s", f, b)
		}
	}
}
