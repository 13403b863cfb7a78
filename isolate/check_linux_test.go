package isolate

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestCheck(t *testing.T) {
	fs := Check()
	want := []string{"root", "userns", "pidns", "mntns", "utsns", "ipcns", "netns", "cgroupns",
		"cgroup", "cgroup-swap", "overlay", "squashfs", "tmpfs", "loop", "landlock", "seccomp",
		"mksquashfs", "busybox-static"}
	seen := map[string]bool{}
	for _, f := range fs {
		t.Logf("%-8v %-14s %s %s", f.OK, f.Name, f.Detail, f.Fix)
		if seen[f.Name] {
			t.Errorf("feature %s reported twice", f.Name)
		}
		seen[f.Name] = true
		if f.Detail == "" {
			t.Errorf("%s: no detail", f.Name)
		}
		if !f.OK && f.Fix == "" {
			t.Errorf("%s missing without a fix", f.Name)
		}
		if f.OK && f.Fix != "" {
			t.Errorf("%s ok with a fix %q", f.Name, f.Fix)
		}
	}
	for _, n := range want {
		if !seen[n] {
			t.Errorf("no %s feature", n)
		}
	}
	if os.Geteuid() != 0 {
		t.Skip("the rest needs root: every required feature is expected present on a root test host")
	}
	if cgroupVersion() == 2 && !seen["cgroup-peak"] {
		t.Error("no cgroup-peak feature on cgroup v2")
	}
	for _, f := range Missing(fs) {
		t.Errorf("required feature missing: %s: %s (fix: %s)", f.Name, f.Detail, f.Fix)
	}
	// The cgroup probe leaves nothing behind.
	for _, p := range cgParents(t) {
		if m, _ := filepath.Glob(filepath.Join(p, "check-*")); len(m) > 0 {
			t.Errorf("probe cgroups left: %v", m)
		}
	}
}

func TestMissing(t *testing.T) {
	fs := []Feature{
		{Name: "a", OK: true, Required: true},
		{Name: "b", OK: false, Required: true},
		{Name: "c", OK: false, Required: false},
	}
	m := Missing(fs)
	if len(m) != 1 || m[0].Name != "b" {
		t.Errorf("Missing() = %+v, want only b", m)
	}
}

func TestFilesystemRegistered(t *testing.T) {
	const procFilesystems = "nodev\tsysfs\nnodev\ttmpfs\n\text4\n\tsquashfs\nnodev\toverlay\nnodev\tcgroup2\n"
	for _, tc := range []struct {
		name string
		want bool
	}{
		{"tmpfs", true}, {"squashfs", true}, {"overlay", true}, {"ext4", true},
		{"nodev", false}, {"cgroup", false}, {"over", false}, {"", false},
	} {
		if got := filesystemRegistered([]byte(procFilesystems), tc.name); got != tc.want {
			t.Errorf("filesystemRegistered(%q) = %v, want %v", tc.name, got, tc.want)
		}
	}
	f := checkFilesystem("overlay", []byte("nodev\ttmpfs\n"), nil)
	if f.OK || !strings.Contains(f.Fix, "modprobe overlay") {
		t.Errorf("overlay absent: %+v", f)
	}
	f = checkFilesystem("tmpfs", nil, errors.New("open /proc/filesystems: no such file"))
	if f.OK || f.Fix == "" {
		t.Errorf("unreadable /proc/filesystems: %+v", f)
	}
}

func TestLandlockABI(t *testing.T) {
	abi, err := landlockABI()
	if errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EOPNOTSUPP) {
		t.Skipf("no Landlock here: %v", err)
	}
	if err != nil || abi < 1 {
		t.Fatalf("landlockABI() = %d, %v", abi, err)
	}
	f := checkLandlock()
	if !f.OK || f.Detail != "ABI "+strconv.Itoa(abi) {
		t.Errorf("checkLandlock() = %+v, want ABI %d", f, abi)
	}
}
