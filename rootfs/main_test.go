package rootfs_test

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/corralhq/corral/rootfs"
)

// childEnv makes the test binary act as a process that mounts an image and
// waits to be killed (see TestCleanStale): its value is the data dir, and
// childImageEnv the image name.
const (
	childEnv      = "CORRAL_ROOTFS_TEST_CHILD_DATA"
	childImageEnv = "CORRAL_ROOTFS_TEST_CHILD_IMAGE"
)

// testRoot holds every test's temporary files (TMPDIR points there), so the
// leak check finds what these tests left and nothing else.
var testRoot string

func TestMain(m *testing.M) {
	if data := os.Getenv(childEnv); data != "" {
		os.Exit(child(data, os.Getenv(childImageEnv)))
	}
	var err error
	testRoot, err = os.MkdirTemp("", "corral-rootfs-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if testRoot, err = filepath.EvalSymlinks(testRoot); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Chmod(testRoot, 0o755) // like /tmp: sandboxes' uids may search it
	os.Setenv("TMPDIR", testRoot)
	code := m.Run()
	if leaks := leaked(testRoot); len(leaks) > 0 {
		fmt.Fprintf(os.Stderr, "LEAKED after the tests:\n  %s\n", strings.Join(leaks, "\n  "))
		code = 1
	} else {
		os.RemoveAll(testRoot)
	}
	os.Exit(code)
}

// child mounts the image called name from the store in data, prints
// "ready" and blocks until killed (reading stdin, which stays open).
func child(data, name string) int {
	store, err := rootfs.OpenStore(data)
	if err != nil {
		fmt.Println(err)
		return 1
	}
	img, err := store.Get(name)
	if err != nil {
		fmt.Println(err)
		return 1
	}
	m, err := rootfs.NewMounter(rootfs.RunDir(data))
	if err != nil {
		fmt.Println(err)
		return 1
	}
	if _, _, err := m.Acquire(img); err != nil {
		fmt.Println(err)
		return 1
	}
	fmt.Println("ready")
	io.Copy(io.Discard, os.Stdin)
	return 0
}

// leaked lists the mounts and loop devices whose path is under prefix.
func leaked(prefix string) []string {
	var out []string
	for _, mp := range mountsUnder(prefix) {
		out = append(out, "mount "+mp)
	}
	for dev, file := range loopsBacking(prefix) {
		out = append(out, "loop device "+dev+" -> "+file)
	}
	return out
}

// mountsUnder returns the mount points at or under prefix, from
// /proc/self/mountinfo.
func mountsUnder(prefix string) []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescape(fields[4])
		if mp == prefix || strings.HasPrefix(mp, prefix+"/") {
			out = append(out, mp)
		}
	}
	return out
}

func unescape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// loopsBacking returns the loop devices whose backing file is under prefix,
// like `losetup -a` reads them from /sys/block/loop*/loop/backing_file.
func loopsBacking(prefix string) map[string]string {
	out := map[string]string{}
	files, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue // detached meanwhile
		}
		file := strings.TrimSuffix(strings.TrimSpace(string(b)), " (deleted)")
		if file == prefix || strings.HasPrefix(file, prefix+"/") {
			out[strings.Split(f, "/")[3]] = file
		}
	}
	return out
}
