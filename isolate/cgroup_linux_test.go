package isolate

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io/fs"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/cgroups"
	"golang.org/x/sys/unix"
)

// ---- cgroup v2 against a directory laid out like cgroupfs (no root needed) ----

// cgWriteTree creates files (path relative to root → content) under root.
func cgWriteTree(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func cgReadFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// cgTestMode makes opencontainers/cgroups accept files outside cgroupfs
// (writes then create and truncate them) for the duration of the test.
func cgTestMode(t *testing.T) {
	prev := cgroups.TestMode
	cgroups.TestMode = true
	t.Cleanup(func() { cgroups.TestMode = prev })
}

// cgFakeV2 lays out a fake v2 hierarchy with a job cgroup corral/sb-test, as
// the kernel would once the directories exist, and returns its root.
func cgFakeV2(t *testing.T, rootSubtree string) string {
	root := t.TempDir()
	cgWriteTree(t, root, map[string]string{
		"cgroup.controllers":                    "cpuset cpu io memory hugetlb pids rdma misc\n",
		"cgroup.subtree_control":                rootSubtree,
		"corral/cgroup.controllers":             "cpu memory pids\n",
		"corral/cgroup.subtree_control":         "",
		"corral/sb-test/cgroup.controllers":     "cpu memory pids\n",
		"corral/sb-test/cgroup.subtree_control": "",
		"corral/sb-test/cgroup.procs":           "",
		"corral/sb-test/memory.swap.max":        "max\n",
		"corral/sb-test/cpu.stat": "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n" +
			"core_sched.force_idle_usec 0\nnr_periods 4\nnr_throttled 1\nthrottled_usec 300\nnr_bursts 0\nburst_usec 0\n",
		"corral/sb-test/memory.peak":    "1048576\n",
		"corral/sb-test/memory.current": "524288\n",
		"corral/sb-test/memory.events":  "low 0\nhigh 0\nmax 3\noom 2\noom_kill 1\noom_group_kill 0\n",
		"corral/sb-test/pids.events":    "max 7\nmax.imposed 9\n",
	})
	return root
}

func TestCgroupV2Fake(t *testing.T) {
	cgTestMode(t)
	root := cgFakeV2(t, "cpu\n")
	job := filepath.Join(root, "corral/sb-test")

	c, err := newCgroupV2At(root, "corral/sb-test", cgroupResources{MemoryBytes: 64 << 20, Pids: 32, CPUQuotaUs: 50000})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.destroy() }) // closes the files; rmdir of a plain directory with files fails

	for _, tc := range []struct{ file, want string }{
		// Only the controllers missing from the root are enabled there.
		{"cgroup.subtree_control", "+memory +pids"},
		{"corral/cgroup.subtree_control", "+cpu +memory +pids"},
		{"corral/sb-test/cgroup.subtree_control", ""},
		{"corral/sb-test/memory.max", "67108864"},
		{"corral/sb-test/memory.swap.max", "0"},
		{"corral/sb-test/pids.max", "32"},
		{"corral/sb-test/cpu.max", "50000 100000"},
	} {
		if got := cgReadFile(t, filepath.Join(root, tc.file)); got != tc.want {
			t.Errorf("%s = %q, want %q", tc.file, got, tc.want)
		}
	}

	n, err := c.counters()
	if err != nil {
		t.Fatal(err)
	}
	want := cgroupCounters{CPUNs: 1500000, UserNs: 1000000, SysNs: 500000, MemoryPeak: 1 << 20, MemoryUsage: 1 << 19, OOMKills: 1, PidsMax: 7}
	if n != want {
		t.Errorf("counters() = %+v, want %+v", n, want)
	}
	// The init reads the same counters from the same files (C).
	if got, err := readCounters(c.counterFiles()); err != nil || got != want {
		t.Errorf("the init's read = %+v, %v; want %+v", got, err, want)
	}

	// Lifting every limit writes the "unlimited" values; swap stays off.
	if err := c.set(cgroupResources{CPUPeriodUs: 20000}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ file, want string }{
		{"memory.max", "max"},
		{"memory.swap.max", "0"},
		{"pids.max", "max"},
		{"cpu.max", "max 20000"},
	} {
		if got := cgReadFile(t, filepath.Join(job, tc.file)); got != tc.want {
			t.Errorf("after set: %s = %q, want %q", tc.file, got, tc.want)
		}
	}

	if err := c.resetPeak(); err != nil {
		t.Fatal(err)
	}
	if got := cgReadFile(t, filepath.Join(job, "memory.peak")); !strings.HasPrefix(got, "reset\n") {
		t.Errorf("memory.peak after resetPeak = %q, want a write at offset 0", got)
	}

	files, err := c.procsFiles()
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 1 || files[0].Name() != filepath.Join(job, "cgroup.procs") {
		t.Errorf("procsFiles() = %v, want one file %s", files, filepath.Join(job, "cgroup.procs"))
	}
	for _, f := range files {
		if fl, _ := unix.FcntlInt(f.Fd(), unix.F_GETFD, 0); fl&unix.FD_CLOEXEC == 0 {
			t.Errorf("%s: not close-on-exec", f.Name())
		}
		f.Close()
	}
	d, err := c.dirFile()
	if err != nil || d == nil {
		t.Fatalf("dirFile() = %v, %v", d, err)
	}
	if fl, _ := unix.FcntlInt(d.Fd(), unix.F_GETFL, 0); fl&unix.O_PATH == 0 {
		t.Errorf("dirFile() flags %#x: not O_PATH", fl)
	}
	d.Close()

	_ = c.destroy()
	if _, err := c.counters(); !errors.Is(err, errCgroupDestroyed) {
		t.Errorf("counters() after destroy: %v, want errCgroupDestroyed", err)
	}
}

func TestCgroupV2FakeLeavesEnabledControllers(t *testing.T) {
	cgTestMode(t)
	root := cgFakeV2(t, "cpu io memory pids\n")
	cgWriteTree(t, root, map[string]string{"corral/cgroup.subtree_control": "cpu memory pids\n"})
	c, err := newCgroupV2At(root, "corral/sb-test", cgroupResources{MemoryBytes: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	defer c.destroy()
	// TestMode truncates on write: unchanged content means untouched.
	if got := cgReadFile(t, filepath.Join(root, "cgroup.subtree_control")); got != "cpu io memory pids\n" {
		t.Errorf("root cgroup.subtree_control = %q: was written", got)
	}
	if got := cgReadFile(t, filepath.Join(root, "corral/cgroup.subtree_control")); got != "cpu memory pids\n" {
		t.Errorf("corral/cgroup.subtree_control = %q: was written", got)
	}
}

func TestCgroupV2FakeErrors(t *testing.T) {
	cgTestMode(t)
	t.Run("controller missing", func(t *testing.T) {
		root := cgFakeV2(t, "")
		cgWriteTree(t, root, map[string]string{"cgroup.controllers": "cpu memory io\n"})
		_, err := newCgroupV2At(root, "corral/sb-test", cgroupResources{})
		if err == nil || !strings.Contains(err.Error(), `"pids" not available`) {
			t.Errorf("err = %v, want pids not available", err)
		}
	})
	t.Run("new directory removed on failure", func(t *testing.T) {
		root := cgFakeV2(t, "")
		// A fresh directory of a fake hierarchy lacks cgroup.controllers:
		// setting the limits fails after the directory was made.
		_, err := newCgroupV2At(root, "corral/sb-other", cgroupResources{})
		if err == nil {
			t.Fatal("no error")
		}
		if _, err := os.Stat(filepath.Join(root, "corral/sb-other")); err == nil {
			t.Error("corral/sb-other left behind")
		}
	})
	for _, tc := range []struct {
		name, file, content, want string
	}{
		{"cpu.stat malformed", "cpu.stat", "usage_usec\n", "not in \"key value\" format"},
		{"cpu.stat bad number", "cpu.stat", "usage_usec x\n", "invalid syntax"},
		{"memory.peak bad", "memory.peak", "lots\n", "invalid syntax"},
		{"memory.events malformed", "memory.events", "oom_kill\n", "not in \"key value\" format"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := cgFakeV2(t, "")
			cgWriteTree(t, root, map[string]string{"corral/sb-test/" + tc.file: tc.content})
			c, err := newCgroupV2At(root, "corral/sb-test", cgroupResources{})
			if err != nil {
				t.Fatal(err)
			}
			defer c.destroy()
			if _, err := c.counters(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("counters() err = %v, want %q", err, tc.want)
			}
		})
	}
	t.Run("peak max and negative", func(t *testing.T) {
		root := cgFakeV2(t, "")
		// A peak of "max" never happens, but a counter must not overflow.
		cgWriteTree(t, root, map[string]string{"corral/sb-test/memory.peak": "max\n", "corral/sb-test/pids.events": "max -1\n"})
		c, err := newCgroupV2At(root, "corral/sb-test", cgroupResources{})
		if err != nil {
			t.Fatal(err)
		}
		defer c.destroy()
		n, err := c.counters()
		if err != nil {
			t.Fatal(err)
		}
		if n.MemoryPeak <= 0 || n.PidsMax != 0 {
			t.Errorf("counters() = %+v", n)
		}
	})
}

func TestCgroupName(t *testing.T) {
	for _, tc := range []struct {
		name string
		top  int // index of the corral* parent; -1: invalid
	}{
		{"corral/sb-3f2a", 0},
		{"corral/slot-1/job", 0},
		{"corral-ci/sb-1", 0},
		{"system.slice/corral.service/sb-1", 1},
		{"corral", -1},
		{"sb-3f2a", -1},
		{"other/sb", -1},
		{"other/corral", -1},
		{"/corral/sb", -1},
		{"corral/../memory", -1},
		{"../corral/sb", -1},
		{"corral/sb/", -1},
		{"corral//sb", -1},
		{"corral/./sb", -1},
		{"", -1},
	} {
		top, err := checkCgroupName(tc.name)
		if (err == nil) != (tc.top >= 0) || (err == nil && top != tc.top) {
			t.Errorf("checkCgroupName(%q) = %d, %v; want %d", tc.name, top, err, tc.top)
		}
	}
	if _, err := newCgroupV2At(t.TempDir(), "corral/sb", cgroupResources{Pids: -1}); err == nil {
		t.Error("negative pids accepted")
	}
}

// ---- the real cgroupfs of this host (root) ----

// cgRequireRoot skips unless the test runs as root on a host with cgroups.
func cgRequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create cgroups")
	}
	if _, err := os.Stat("/sys/fs/cgroup"); err != nil {
		t.Skipf("no cgroupfs: %v", err)
	}
}

// cgParents lists the corral parent directories of this host's hierarchies.
func cgParents(t testing.TB) []string {
	t.Helper()
	if cgroupVersion() == 2 {
		return []string{filepath.Join(cgroupfsRoot, testCgroupParent)}
	}
	var out []string
	for _, ctrl := range cgroupV1Controllers {
		mnt, err := cgroups.FindCgroupMountpoint("", ctrl)
		if err != nil {
			t.Fatalf("%s hierarchy: %v", ctrl, err)
		}
		out = append(out, filepath.Join(mnt, testCgroupParent))
	}
	return out
}

// cgNew creates a uniquely named job cgroup on the real cgroupfs. Cleanup
// kills whatever is left in it, removes it and the corral parents (if empty
// and absent before), and fails the test if anything remains.
func cgNew(t testing.TB, res cgroupResources) *cgroup {
	t.Helper()
	cgRequireRoot(t)
	var existed []string
	for _, p := range cgParents(t) {
		if _, err := os.Stat(p); err == nil {
			existed = append(existed, p)
		}
	}
	b := make([]byte, 4)
	rand.Read(b)
	name := testCgroupParent + "/test-" + hex.EncodeToString(b)
	c, err := newCgroup(name, res)
	if err != nil {
		if errors.Is(err, fs.ErrPermission) || errors.Is(err, unix.EROFS) {
			t.Skipf("cannot create cgroups here: %v", err)
		}
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cgKillAll(t, c)
		if err := c.destroy(); err != nil {
			t.Errorf("destroy: %v", err)
		}
		if err := c.destroy(); err != nil {
			t.Errorf("second destroy: %v", err)
		}
		if err := removeCgroupParent(name); err != nil {
			t.Errorf("removeCgroupParent: %v", err)
		}
		for _, d := range c.dirs {
			if _, err := os.Stat(d); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("%s left behind (stat: %v)", d, err)
			}
		}
		for _, p := range cgParents(t) {
			if _, err := os.Stat(p); err == nil && !slices.Contains(existed, p) {
				t.Errorf("%s left behind", p)
			}
		}
	})
	return c
}

// cgKillAll SIGKILLs every process in c until it is empty. The kernel gives no
// event for an emptied v1 cgroup short of a release agent, so this polls.
func cgKillAll(t testing.TB, c *cgroup) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		pids, err := c.pids()
		if err != nil || len(pids) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("processes %v still in %s", pids, c)
			return
		}
		for _, p := range pids {
			_ = unix.Kill(p, unix.SIGKILL)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// cgRun runs script with sh after the shell joined c by writing "0" into the
// fds procsFiles returned (and closed them), with the given process
// attributes (credentials, namespaces). It returns the combined output.
func cgRun(t testing.TB, c *cgroup, attr *syscall.SysProcAttr, script string) (string, error) {
	t.Helper()
	files, err := c.procsFiles()
	if err != nil {
		t.Fatal(err)
	}
	var enter, closeFds strings.Builder
	for i := range files {
		fd := strconv.Itoa(3 + i)
		enter.WriteString("echo 0 >&" + fd + " && ")
		closeFds.WriteString(" " + fd + ">&-")
	}
	cmd := exec.Command("/bin/sh", "-c", enter.String()+"exec"+closeFds.String()+" && "+script)
	cmd.ExtraFiles = files
	cmd.SysProcAttr = attr
	cmd.Dir = "/"
	out, err := cmd.CombinedOutput()
	for _, f := range files {
		f.Close()
	}
	return string(out), err
}

// cgRelPath is the path of c inside each hierarchy, as /proc/PID/cgroup shows it.
func cgRelPath(c *cgroup) string { return "/" + c.name }

func TestCgroupCreateDestroy(t *testing.T) {
	c := cgNew(t, cgroupResources{MemoryBytes: 64 << 20, Pids: 16})
	want := 4 // memory, cpu, cpuacct, pids
	if cgroupVersion() == 2 {
		want = 1
	} else if mnt, _ := cgroups.FindCgroupMountpoint("", "cpu"); strings.Contains(mnt, "cpuacct") {
		want = 3 // cpu,cpuacct co-mounted
	}
	if len(c.dirs) != want {
		t.Errorf("dirs = %v, want %d", c.dirs, want)
	}
	for _, d := range c.dirs {
		if st, err := os.Stat(d); err != nil || !st.IsDir() {
			t.Errorf("%s: %v", d, err)
		}
	}
	if p, err := c.pids(); err != nil || len(p) != 0 {
		t.Errorf("pids() = %v, %v; want none", p, err)
	}
	d, err := c.dirFile()
	if err != nil {
		t.Fatal(err)
	}
	if (d != nil) != (cgroupVersion() == 2) {
		t.Errorf("dirFile() = %v on cgroup v%d", d, cgroupVersion())
	}
	if d != nil {
		d.Close()
	}
	// Creating the same name again reuses the directories.
	c2, err := newCgroup(c.name, cgroupResources{MemoryBytes: 32 << 20})
	if err != nil {
		t.Fatal(err)
	}
	c2.closeFiles()
}

func TestCgroupLimits(t *testing.T) {
	c := cgNew(t, cgroupResources{MemoryBytes: 48 << 20, Pids: 7, CPUQuotaUs: 20000, CPUPeriodUs: 50000})
	check := func(want map[string]string) {
		t.Helper()
		for file, v := range want {
			got, err := os.ReadFile(c.fileV(file))
			if err != nil {
				t.Errorf("%v", err)
				continue
			}
			if s := strings.TrimSpace(string(got)); s != v {
				t.Errorf("%s = %q, want %q", file, s, v)
			}
		}
	}
	const unlimitedV1 = "9223372036854771712" // PAGE_COUNTER_MAX pages, in bytes
	if cgroupVersion() == 1 {
		want := map[string]string{
			"memory.limit_in_bytes": "50331648",
			"memory.swappiness":     "0",
			"pids.max":              "7",
			"cpu.cfs_quota_us":      "20000",
			"cpu.cfs_period_us":     "50000",
		}
		if c.swap {
			want["memory.memsw.limit_in_bytes"] = "50331648"
		} else {
			t.Log("no swap accounting (memory.memsw.*): swap limited by swappiness 0 only")
		}
		check(want)
		if err := c.set(cgroupResources{}); err != nil {
			t.Fatal(err)
		}
		want = map[string]string{
			"memory.limit_in_bytes": unlimitedV1,
			"pids.max":              "max",
			"cpu.cfs_quota_us":      "-1",
			"cpu.cfs_period_us":     "100000",
		}
		if c.swap {
			want["memory.memsw.limit_in_bytes"] = unlimitedV1
		}
		check(want)
		// Lower again, from unlimited: memsw must follow memory down.
		if err := c.set(cgroupResources{MemoryBytes: 32 << 20, Pids: 3, CPUQuotaUs: 10000}); err != nil {
			t.Fatal(err)
		}
		want = map[string]string{"memory.limit_in_bytes": "33554432", "pids.max": "3", "cpu.cfs_quota_us": "10000", "cpu.cfs_period_us": "100000"}
		if c.swap {
			want["memory.memsw.limit_in_bytes"] = "33554432"
		}
		check(want)
		return
	}
	want := map[string]string{"memory.max": "50331648", "pids.max": "7", "cpu.max": "20000 50000"}
	if c.swap {
		want["memory.swap.max"] = "0"
	}
	check(want)
	if err := c.set(cgroupResources{}); err != nil {
		t.Fatal(err)
	}
	want = map[string]string{"memory.max": "max", "pids.max": "max", "cpu.max": "max 100000"}
	if c.swap {
		want["memory.swap.max"] = "0"
	}
	check(want)
}

// fileV returns the path of a cgroup file of c, in the hierarchy that holds it.
func (c *cgroup) fileV(file string) string {
	if c.version == 2 {
		return filepath.Join(c.dirs[0], file)
	}
	ctrl, _, _ := strings.Cut(file, ".")
	mnt, _ := cgroups.FindCgroupMountpoint("", ctrl)
	return filepath.Join(mnt, c.name, file)
}

func cgNeedPerl(t *testing.T) string {
	p, err := exec.LookPath("perl")
	if err != nil {
		t.Skip("perl not installed")
	}
	return p
}

// TestCgroupProcsFilesUnprivileged: a process without any privilege joins the
// cgroup by writing "0" into cgroup.procs fds opened by root, while opening
// cgroup.procs itself is denied to it.
func TestCgroupProcsFilesUnprivileged(t *testing.T) {
	c := cgNew(t, cgroupResources{MemoryBytes: 64 << 20, Pids: 16})
	for _, tc := range []struct {
		name string
		attr *syscall.SysProcAttr
	}{
		{"uid 65534", &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}},
		{"userns root mapped to 65534", &syscall.SysProcAttr{
			Cloneflags:  syscall.CLONE_NEWUSER | syscall.CLONE_NEWPID | syscall.CLONE_NEWNS,
			UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: 65534, Size: 1}},
			GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: 65534, Size: 1}},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := cgRun(t, c, tc.attr, "id -u; cat /proc/self/cgroup")
			if err != nil {
				t.Fatalf("%v: %s", err, out)
			}
			lines := strings.Split(strings.TrimSpace(out), "\n")
			if tc.attr.Credential != nil && lines[0] != "65534" {
				t.Errorf("ran as uid %s", lines[0])
			}
			for _, ctrl := range cgroupCtrlNames() {
				if !cgInCgroup(lines[1:], ctrl, cgRelPath(c)) {
					t.Errorf("%s: not in %s:\n%s", tc.name, ctrl, out)
				}
			}
		})
	}
	// Control: the same uid opening cgroup.procs by path is refused.
	procs := filepath.Join(c.dirs[0], "cgroup.procs")
	cmd := exec.Command("/bin/sh", "-c", "echo 0 > "+procs)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	if out, err := cmd.CombinedOutput(); err == nil {
		t.Errorf("uid 65534 opened %s itself: %s", procs, out)
	}
}

// cgroupCtrlNames are the names /proc/PID/cgroup shows for the job cgroup's
// hierarchies ("" for v2).
func cgroupCtrlNames() []string {
	if cgroupVersion() == 2 {
		return []string{""}
	}
	return cgroupV1Controllers
}

// cgInCgroup reports whether /proc/PID/cgroup lines put the process at path in
// the hierarchy holding ctrl ("" for v2).
func cgInCgroup(lines []string, ctrl, path string) bool {
	for _, l := range lines {
		parts := strings.SplitN(l, ":", 3)
		if len(parts) != 3 || parts[2] != path {
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			if c == ctrl {
				return true
			}
		}
	}
	return false
}

func TestCgroupCounters(t *testing.T) {
	perl := cgNeedPerl(t)
	c := cgNew(t, cgroupResources{MemoryBytes: 256 << 20, Pids: 16})
	n0, err := c.counters()
	if err != nil {
		t.Fatal(err)
	}
	if n0.CPUNs != 0 || n0.OOMKills != 0 || n0.PidsMax != 0 {
		t.Errorf("fresh cgroup counters = %+v", n0)
	}
	// 32 MiB of touched memory and some CPU, as an unprivileged user.
	out, err := cgRun(t, c, &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}},
		"exec "+perl+` -e '$x = "a" x (32<<20); $i = 0; $i++ while $i < 3_000_000; print length($x), "\n"'`)
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	n1, err := c.counters()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("after the job: %+v", n1)
	// The init's reader (C) on the same files agrees, cpuacct included.
	// The usage may still drift as the exited process's last pages go.
	got, err := readCounters(c.counterFiles())
	if err != nil || got.MemoryUsage <= 0 {
		t.Errorf("the init's read = %+v, %v", got, err)
	}
	got.MemoryUsage = n1.MemoryUsage
	if got != n1 {
		t.Errorf("the init's read = %+v, want %+v (usage aside)", got, n1)
	}
	if n1.CPUNs <= 0 {
		t.Errorf("CPUNs = %d, want > 0", n1.CPUNs)
	}
	if n1.UserNs+n1.SysNs <= 0 {
		t.Errorf("UserNs+SysNs = %d, want > 0", n1.UserNs+n1.SysNs)
	}
	if n1.MemoryPeak < 32<<20 {
		t.Errorf("MemoryPeak = %d, want >= 32 MiB", n1.MemoryPeak)
	}
	if n1.OOMKills != 0 || n1.PidsMax != 0 {
		t.Errorf("OOMKills = %d, PidsMax = %d, want 0", n1.OOMKills, n1.PidsMax)
	}
	if err := c.resetPeak(); err != nil {
		if errors.Is(err, errors.ErrUnsupported) {
			t.Skipf("resetPeak: %v", err)
		}
		t.Fatal(err)
	}
	n2, err := c.counters()
	if err != nil {
		t.Fatal(err)
	}
	if n2.MemoryPeak >= n1.MemoryPeak {
		t.Errorf("MemoryPeak after resetPeak = %d, want < %d", n2.MemoryPeak, n1.MemoryPeak)
	}
	if n2.CPUNs < n1.CPUNs {
		t.Errorf("CPUNs went back from %d to %d", n1.CPUNs, n2.CPUNs)
	}
}

func TestCgroupOOM(t *testing.T) {
	perl := cgNeedPerl(t)
	c := cgNew(t, cgroupResources{MemoryBytes: 32 << 20, Pids: 16})
	out, err := cgRun(t, c, nil, "exec "+perl+` -e '$x = "a" x (128<<20); print "survived\n"'`)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("want the job killed by SIGKILL, got %v: %s", err, out)
	}
	n, err := c.counters()
	if err != nil {
		t.Fatal(err)
	}
	if n.OOMKills < 1 {
		t.Errorf("OOMKills = %d, want >= 1 (counters %+v)", n.OOMKills, n)
	}
	if n.MemoryPeak > 33<<20 {
		t.Errorf("MemoryPeak = %d above the 32 MiB limit", n.MemoryPeak)
	}
}

func TestCgroupPidsMax(t *testing.T) {
	perl := cgNeedPerl(t)
	c := cgNew(t, cgroupResources{MemoryBytes: 128 << 20, Pids: 5})
	// Fork until refused, then kill and reap the children.
	out, err := cgRun(t, c, nil, "exec "+perl+` -e '
		my @k;
		for (1..20) {
			my $p = fork;
			if (!defined $p) { print "refused after ", scalar(@k), "\n"; last }
			if ($p == 0) { sleep 100; exit }
			push @k, $p;
		}
		kill 9, @k; waitpid($_, 0) for @k;'`)
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if !strings.Contains(out, "refused after 4") {
		t.Errorf("want 4 children then a refusal (pids.max 5 counts perl too), got %q", out)
	}
	n, err := c.counters()
	if err != nil {
		t.Fatal(err)
	}
	if n.PidsMax < 1 {
		t.Errorf("PidsMax = %d, want >= 1", n.PidsMax)
	}
}

func TestCgroupPids(t *testing.T) {
	c := cgNew(t, cgroupResources{Pids: 8})
	files, err := c.procsFiles()
	if err != nil {
		t.Fatal(err)
	}
	var enter strings.Builder
	for i := range files {
		enter.WriteString("echo 0 >&" + strconv.Itoa(3+i) + " && ")
	}
	// The shell joins, then waits on stdin, which the test holds open.
	cmd := exec.Command("/bin/sh", "-c", enter.String()+"echo in && read x; exit 0")
	cmd.ExtraFiles = files
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		f.Close()
	}
	buf := make([]byte, 3)
	if _, err := stdout.Read(buf); err != nil {
		t.Fatal(err)
	}
	pids, err := c.pids()
	if err != nil {
		t.Fatal(err)
	}
	if len(pids) != 1 || pids[0] != cmd.Process.Pid {
		t.Errorf("pids() = %v, want [%d]", pids, cmd.Process.Pid)
	}
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkCgroupCounters compares counters() with the library's GetStats.
func BenchmarkCgroupCounters(b *testing.B) {
	c := cgNew(b, cgroupResources{MemoryBytes: 64 << 20, Pids: 16})
	b.Run("counters", func(b *testing.B) {
		for b.Loop() {
			if _, err := c.counters(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("GetStats", func(b *testing.B) {
		for b.Loop() {
			if _, err := c.mgr.GetStats(); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkCgroupSet changes the limits between two sets, as between jobs
// with different limits (equal limits are not rewritten).
func BenchmarkCgroupSet(b *testing.B) {
	c := cgNew(b, cgroupResources{MemoryBytes: 64 << 20, Pids: 16})
	res := [2]cgroupResources{
		{MemoryBytes: 64 << 20, Pids: 16, CPUQuotaUs: 100000},
		{MemoryBytes: 128 << 20, Pids: 32, CPUQuotaUs: 50000},
	}
	i := 0
	for b.Loop() {
		if err := c.set(res[i%2]); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkCgroupCreateDestroy is the cost of a job cgroup off the job path.
func BenchmarkCgroupCreateDestroy(b *testing.B) {
	cgRequireRoot(b)
	for b.Loop() {
		c, err := newCgroup(testCgroupParent+"/bench-"+strconv.Itoa(os.Getpid()), cgroupResources{MemoryBytes: 64 << 20, Pids: 16, CPUQuotaUs: 100000})
		if err != nil {
			b.Fatal(err)
		}
		if err := c.destroy(); err != nil {
			b.Fatal(err)
		}
	}
	_ = removeCgroupParent(testCgroupParent + "/bench")
}

// TestReadCountersC covers the init's counter reader on files laid out like
// cgroup files: a plain number, "max", keys (one missing), a scale, and a
// file it cannot parse.
func TestReadCountersC(t *testing.T) {
	dir := t.TempDir()
	open := func(name, content string) *os.File {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		return f
	}
	files := []*os.File{
		open("cpuacct.usage", "123456789\n"),
		open("cpuacct.stat", "user 5\nsystem 7\n"),
		open("memory.max_usage_in_bytes", "max\n"),
		open("memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n"),
		open("pids.events", "max.imposed 9\n"),
	}
	specs := []counterSpec{
		{Field: ctrCPU, File: 0, Scale: 1},
		{Field: ctrUser, File: 1, Key: "user", Scale: 1e9 / userHZ},
		{Field: ctrSys, File: 1, Key: "system", Scale: 1e9 / userHZ},
		{Field: ctrMemoryPeak, File: 2, Scale: 1},
		{Field: ctrOOMKills, File: 3, Key: "oom_kill", Scale: 1},
		{Field: ctrPidsMax, File: 4, Key: "max", Scale: 1}, // only "max.imposed": absent
	}
	got, err := readCounters(files, specs)
	want := cgroupCounters{CPUNs: 123456789, UserNs: 5e7, SysNs: 7e7, MemoryPeak: math.MaxInt64, OOMKills: 2}
	if err != nil || got != want {
		t.Errorf("readCounters = %+v, %v; want %+v", got, err, want)
	}
	bad := []*os.File{open("bad", "x\n")}
	if _, err := readCounters(bad, []counterSpec{{Field: ctrCPU, File: 0, Scale: 1}}); err == nil {
		t.Error("a file without a number read without an error")
	}
	empty := []*os.File{open("empty", "")}
	if _, err := readCounters(empty, []counterSpec{{Field: ctrCPU, File: 0, Scale: 1}}); err == nil {
		t.Error("an empty file read without an error")
	}
}
