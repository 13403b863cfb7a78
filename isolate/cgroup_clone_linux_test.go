package isolate

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// cgroup2Mount returns where a cgroup v2 hierarchy is mounted ("" if none):
// /sys/fs/cgroup on v2 hosts, /sys/fs/cgroup/unified on hybrid ones.
func cgroup2Mount(t *testing.T) string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		for i, v := range fields {
			if v == "-" && i+1 < len(fields) && fields[i+1] == "cgroup2" {
				return fields[4]
			}
		}
	}
	return ""
}

// TestCloneIntoCgroup clones a child the way job processes are cloned, into
// a cgroup v2 directory made for the test (on a v1 host, in the hybrid
// unified hierarchy, which needs no controllers for this): the child must be
// born there (CLONE_INTO_CGROUP), which is how job processes enter their
// cgroup on v2 hosts.
func TestCloneIntoCgroup(t *testing.T) {
	needRoot(t)
	mnt := cgroup2Mount(t)
	if mnt == "" {
		t.Skip("no cgroup v2 hierarchy mounted")
	}
	b := make([]byte, 4)
	rand.Read(b)
	name := "corral-test-" + hex.EncodeToString(b)
	dir := filepath.Join(mnt, name)
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Skipf("cannot make a cgroup in %s: %v", mnt, err)
	}
	t.Cleanup(func() {
		if err := os.Remove(dir); err != nil {
			t.Errorf("remove %s: %v", dir, err)
		}
	})
	// First a directory that is not a cgroup: the kernel refuses the flag,
	// the child is made the usual way, outside it, and the next clone
	// still tries the flag.
	tmp, err := unix.Open(t.TempDir(), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	tf := os.NewFile(uintptr(tmp), "tmp")
	defer tf.Close()
	if got, in, err := cloneIntoCgroup(tf); err != nil || in || strings.Contains(got, name) {
		t.Errorf("not a cgroup: in %v, %q, %v", in, got, err)
	}
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fd), dir)
	defer f.Close()
	got, in, err := cloneIntoCgroup(f)
	if err != nil {
		t.Fatal(err)
	}
	if !in {
		t.Fatalf("clone3 did not take CLONE_INTO_CGROUP on %s (kernel 5.7+ has it)", unameRelease())
	}
	if want := "0::/" + name + "\n"; !strings.Contains(got, want) {
		t.Errorf("the child's /proc/self/cgroup:\n%s\nwant a line %q", got, want)
	}
}

func unameRelease() string {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return "this kernel"
	}
	return unix.ByteSliceToString(u.Release[:])
}
