package isolate

// The job cgroup of one sandbox, on cgroup v1 (one directory per needed
// hierarchy: memory, cpu, cpuacct, pids) or v2 (one directory), created and
// limited through opencontainers/cgroups.
//
// Every cgroup corral creates lives under a corral parent
// (/sys/fs/cgroup/<controller>/corral/<name> on v1, /sys/fs/cgroup/corral/<name>
// on v2; a configured parent must have an element named corral*, such as
// system.slice/corral.service). Nothing here writes to a cgroup outside that
// parent, except that on v2 the memory, cpu and pids controllers are enabled in
// the cgroup.subtree_control of the ancestors when (and only when) they are not
// enabled there yet.
//
// Entering the cgroup: procsFiles opens cgroup.procs as host root, and the job
// child writes "0" into each fd. The kernel checks the credentials the file was
// opened with (since Linux 5.16, CVE-2021-4197), so an unprivileged child in a
// user namespace gets in. The same property makes such an fd dangerous: whoever
// holds it can move any process it can name by pid into the cgroup. It must be
// closed (O_CLOEXEC) before the job's exec.

import (
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/cgroups/fs"
	"github.com/opencontainers/cgroups/fs2"
	"github.com/opencontainers/cgroups/fscommon"
	"golang.org/x/sys/unix"
)

const (
	// cgroupParent is the default parent of the job cgroups, and the prefix of
	// the element every cgroup name must pass through (checkCgroupName).
	cgroupParent = "corral"
	// cgroupfsRoot is where the cgroup hierarchies are mounted.
	cgroupfsRoot = "/sys/fs/cgroup"
	// defaultCPUPeriodUs is the CFS period used when cgroupResources.CPUPeriodUs is 0.
	defaultCPUPeriodUs = 100000
	// userHZ is the unit of cpuacct.stat (USER_HZ, 100 on every Linux ABI).
	userHZ = 100
)

// cgroupV1Controllers are the v1 hierarchies a job cgroup is created in.
var cgroupV1Controllers = []string{"memory", "cpu", "cpuacct", "pids"}

// cgroupV2Controllers are the v2 controllers enabled for a job cgroup.
var cgroupV2Controllers = []string{"cpu", "memory", "pids"}

// cgroupResources are the limits of one job cgroup.
type cgroupResources struct {
	// MemoryBytes is the memory limit in bytes; 0 means no limit. Swap is off:
	// on v1 memory.memsw.limit_in_bytes is set equal to it when the file exists
	// and memory.swappiness to 0; on v2 memory.swap.max is 0.
	MemoryBytes int64
	// Pids is pids.max, counting processes and threads; 0 means no limit.
	Pids int64
	// CPUQuotaUs is the CFS quota in microseconds per period; 0 means no quota.
	CPUQuotaUs int64
	// CPUPeriodUs is the CFS period in microseconds; 0 means 100000.
	CPUPeriodUs int64
}

// validate reports limits the kernel would reject or misread.
func (r cgroupResources) validate() error {
	switch {
	case r.MemoryBytes < 0:
		return fmt.Errorf("cgroup: negative memory limit %d", r.MemoryBytes)
	case r.Pids < 0:
		return fmt.Errorf("cgroup: negative pids limit %d", r.Pids)
	case r.CPUQuotaUs < 0:
		return fmt.Errorf("cgroup: negative cpu quota %d", r.CPUQuotaUs)
	case r.CPUPeriodUs < 0:
		return fmt.Errorf("cgroup: negative cpu period %d", r.CPUPeriodUs)
	}
	return nil
}

// libResources converts r to the library's resources. A zero limit becomes
// "unlimited" (-1) explicitly, so that set can lift a limit a previous job had.
// swap tells whether the kernel accounts swap for this cgroup (v1 memsw files).
func (r cgroupResources) libResources(v2, swap bool) *cgroups.Resources {
	lr := &cgroups.Resources{SkipDevices: true}
	if r.MemoryBytes > 0 {
		lr.Memory = r.MemoryBytes
		if v2 || swap {
			// memory+swap == memory: no swap. On v2 the library turns this
			// into memory.swap.max 0.
			lr.MemorySwap = r.MemoryBytes
		}
	} else {
		lr.Memory = -1 // the library also lifts memsw (v1) or memory.swap.max (v2)
	}
	if !v2 {
		zero := uint64(0)
		lr.MemorySwappiness = &zero
	}
	pids := int64(-1)
	if r.Pids > 0 {
		pids = r.Pids
	}
	lr.PidsLimit = &pids
	lr.CpuQuota = -1
	if r.CPUQuotaUs > 0 {
		lr.CpuQuota = r.CPUQuotaUs
	}
	lr.CpuPeriod = defaultCPUPeriodUs
	if r.CPUPeriodUs > 0 {
		lr.CpuPeriod = uint64(r.CPUPeriodUs)
	}
	return lr
}

// cgroupCounters are the cumulative counters of one job cgroup.
type cgroupCounters struct {
	// CPUNs, UserNs and SysNs are cumulative CPU time in nanoseconds (v1:
	// cpuacct.usage, cpuacct.usage_user/usage_sys or else cpuacct.stat ticks;
	// v2: cpu.stat usage_usec/user_usec/system_usec).
	CPUNs, UserNs, SysNs int64
	// MemoryPeak is the highest memory usage in bytes since creation or the last
	// resetPeak (v1 memory.max_usage_in_bytes, v2 memory.peak).
	MemoryPeak int64
	// MemoryUsage is the memory charged to the cgroup now (v1
	// memory.usage_in_bytes, v2 memory.current): between processes, the
	// page cache and tmpfs pages earlier processes left charged.
	MemoryUsage int64
	// OOMKills counts processes the OOM killer killed in the cgroup (v1
	// memory.oom_control oom_kill, v2 memory.events oom_kill).
	OOMKills int64
	// PidsMax counts forks refused because of pids.max (pids.events max).
	PidsMax int64
}

// cgroup is the job cgroup of one sandbox.
type cgroup struct {
	name    string
	version int             // 1 or 2
	mgr     cgroups.Manager // fs.Manager (v1) or fs2.Manager (v2)
	dirs    []string        // distinct directories: one per v1 hierarchy, or the v2 one
	memDir  string          // directory holding the memory files (v1 memory hierarchy, or the v2 dir)
	swap    bool            // v1: memory.memsw.* exist; v2: memory.swap.max exists

	mu      sync.Mutex
	closed  bool
	applied *cgroupResources // limits last set successfully
	buf     []byte           // read buffer for counters, guarded by mu
	// Counter files, opened once. cpuUser and cpuSys are nil where
	// cpuacct.usage_user/usage_sys do not exist (v1 then reads cpuStat).
	cpuUsage, cpuUser, cpuSys *os.File // v1 only
	cpuStat                   *os.File // v1 cpuacct.stat, v2 cpu.stat
	peak                      *os.File // v1 memory.max_usage_in_bytes, v2 memory.peak; O_RDWR (reset through it)
	usage                     *os.File // v1 memory.usage_in_bytes, v2 memory.current
	oom                       *os.File // v1 memory.oom_control, v2 memory.events
	pidsEvents                *os.File
}

// cgroupVersion returns 2 on a unified (v2-only) host and 1 otherwise,
// including hybrid hosts whose controllers are on v1 hierarchies.
func cgroupVersion() int {
	if cgroups.IsCgroup2UnifiedMode() {
		return 2
	}
	return 1
}

// checkCgroupName makes sure name is a clean relative path below a corral
// parent: "corral/sb-3f2a", or with a configured parent such as
// "corral-ci/sb-1" or "system.slice/corral.service/sb-1" (some parent element
// is named corral*). It returns the index of the shallowest such element.
func checkCgroupName(name string) (int, error) {
	if name == "" || filepath.IsAbs(name) || filepath.Clean(name) != name {
		return 0, fmt.Errorf("cgroup: invalid name %q: want a clean relative path like %q", name, cgroupParent+"/sb-1")
	}
	parts := strings.Split(name, "/")
	if slices.Contains(parts, "..") {
		return 0, fmt.Errorf("cgroup: invalid name %q: contains ..", name)
	}
	for i, p := range parts[:len(parts)-1] {
		if strings.HasPrefix(p, cgroupParent) {
			return i, nil
		}
	}
	return 0, fmt.Errorf("cgroup: invalid name %q: must be below a parent named %s*", name, cgroupParent)
}

// newCgroup creates the job cgroup name (for example "corral/sb-3f2a") in every
// needed hierarchy of this host and sets its limits. An existing directory of
// that name is reused.
func newCgroup(name string, res cgroupResources) (*cgroup, error) {
	if cgroupVersion() == 2 {
		return newCgroupV2At(cgroupfsRoot, name, res)
	}
	return newCgroupV1(name, res)
}

func newCgroupV1(name string, res cgroupResources) (*cgroup, error) {
	if _, err := checkCgroupName(name); err != nil {
		return nil, err
	}
	if err := res.validate(); err != nil {
		return nil, err
	}
	paths := make(map[string]string, len(cgroupV1Controllers))
	for _, ctrl := range cgroupV1Controllers {
		mnt, err := cgroups.FindCgroupMountpoint("", ctrl)
		if err != nil {
			return nil, fmt.Errorf("cgroup v1: %s hierarchy: %w", ctrl, err)
		}
		paths[ctrl] = filepath.Join(mnt, name)
	}
	c := &cgroup{name: name, version: 1, memDir: paths["memory"]}
	for _, ctrl := range cgroupV1Controllers {
		if !slices.Contains(c.dirs, paths[ctrl]) { // cpu and cpuacct may be co-mounted
			c.dirs = append(c.dirs, paths[ctrl])
		}
	}
	// Only the paths given here are created: not the other v1 hierarchies, nor
	// the v2 one of a hybrid host. Resources are applied by set below.
	mgr, err := fs.NewManager(&cgroups.Cgroup{Resources: &cgroups.Resources{SkipDevices: true}}, paths)
	if err != nil {
		return nil, fmt.Errorf("cgroup v1 %s: %w", name, err)
	}
	c.mgr = mgr
	// Apply(-1) creates the directories without adding a process. Someone
	// may remove an empty corral parent between MkdirAll's mkdir of the
	// parent and that of the child: retry on ENOENT.
	for try := 0; ; try++ {
		err = mgr.Apply(-1)
		if err == nil || !errors.Is(err, os.ErrNotExist) || try == 3 {
			break
		}
	}
	if err != nil {
		_ = mgr.Destroy()
		return nil, fmt.Errorf("cgroup v1 %s: create: %w", name, err)
	}
	c.swap = cgroups.PathExists(filepath.Join(c.memDir, "memory.memsw.limit_in_bytes"))
	if err := c.set(res); err != nil {
		_ = mgr.Destroy()
		return nil, err
	}
	if err := c.openCountersV1(paths); err != nil {
		c.closeFiles()
		_ = mgr.Destroy()
		return nil, err
	}
	return c, nil
}

// newCgroupV2At creates the job cgroup name in the cgroup v2 hierarchy mounted
// at root (/sys/fs/cgroup on a real host; tests pass a directory laid out like
// one, with cgroups.TestMode set). The memory, cpu and pids controllers are
// enabled in the cgroup.subtree_control of root and of every parent on the way
// down, writing only those not enabled yet. An existing directory of that name
// is reused.
//
// The directories are made here rather than by fs2's Apply, which only accepts
// paths under /sys/fs/cgroup and enables every available controller in every
// parent; fs2.Manager does the limits (Set) and the removal (Destroy).
func newCgroupV2At(root, name string, res cgroupResources) (*cgroup, error) {
	if _, err := checkCgroupName(name); err != nil {
		return nil, err
	}
	if err := res.validate(); err != nil {
		return nil, err
	}
	avail, err := cgroups.ReadFile(root, "cgroup.controllers")
	if err != nil {
		return nil, fmt.Errorf("cgroup v2: %w", err)
	}
	for _, ctrl := range cgroupV2Controllers {
		if !slices.Contains(strings.Fields(avail), ctrl) {
			return nil, fmt.Errorf("cgroup v2: controller %q not available in %s (%q)",
				ctrl, filepath.Join(root, "cgroup.controllers"), strings.TrimSpace(avail))
		}
	}
	dir := filepath.Join(root, name)
	var created []string
	// Someone may remove an empty corral parent while we create the child:
	// start over on ENOENT.
	for try := 0; ; try++ {
		created, err = mkdirV2(root, strings.Split(name, "/"))
		if err == nil || !errors.Is(err, os.ErrNotExist) || try == 3 {
			break
		}
	}
	// undo removes the directories made here, deepest first. Plain rmdir: a
	// parent that meanwhile got another sandbox's cgroup stays.
	undo := func() {
		for _, d := range slices.Backward(created) {
			_ = unix.Rmdir(d)
		}
	}
	if err != nil {
		undo()
		return nil, err
	}
	mgr, err := fs2.NewManager(&cgroups.Cgroup{Resources: &cgroups.Resources{SkipDevices: true}}, dir)
	if err != nil {
		undo()
		return nil, fmt.Errorf("cgroup v2 %s: %w", name, err)
	}
	c := &cgroup{name: name, version: 2, mgr: mgr, dirs: []string{dir}, memDir: dir}
	c.swap = cgroups.PathExists(filepath.Join(dir, "memory.swap.max"))
	if err := c.set(res); err != nil {
		undo()
		return nil, err
	}
	if err := c.openCountersV2(dir); err != nil {
		c.closeFiles()
		undo()
		return nil, err
	}
	return c, nil
}

// mkdirV2 makes root/parts[0]/.../parts[n-1], enabling the controllers in each
// parent first, and returns the directories it made (shallowest first).
func mkdirV2(root string, parts []string) (created []string, err error) {
	cur := root
	for _, p := range parts {
		if err := enableV2Controllers(cur); err != nil {
			return created, err
		}
		cur = filepath.Join(cur, p)
		made, err := mkdirCgroup(cur)
		if err != nil {
			return created, fmt.Errorf("cgroup v2: %w", err)
		}
		if made {
			created = append(created, cur)
		}
	}
	return created, nil
}

// mkdirCgroup makes dir, reporting whether it did (false: it existed).
func mkdirCgroup(dir string) (bool, error) {
	err := os.Mkdir(dir, 0o755)
	if err == nil {
		return true, nil
	}
	if errors.Is(err, os.ErrExist) {
		return false, nil
	}
	return false, err
}

// enableV2Controllers enables those of cgroupV2Controllers that dir's
// cgroup.subtree_control lacks, leaving the others (and the file) untouched.
func enableV2Controllers(dir string) error {
	cur, err := cgroups.ReadFile(dir, "cgroup.subtree_control")
	if err != nil && !(cgroups.TestMode && errors.Is(err, os.ErrNotExist)) {
		return fmt.Errorf("cgroup v2: %w", err)
	}
	have := strings.Fields(cur)
	var add []string
	for _, ctrl := range cgroupV2Controllers {
		if !slices.Contains(have, ctrl) {
			add = append(add, "+"+ctrl)
		}
	}
	if len(add) == 0 {
		return nil
	}
	if err := cgroups.WriteFile(dir, "cgroup.subtree_control", strings.Join(add, " ")); err != nil {
		return fmt.Errorf("cgroup v2: enable %s in %s: %w", strings.Join(add, " "), dir, err)
	}
	return nil
}

// set changes the limits (between jobs, or at creation). Limits equal to the
// ones last set are not written again.
func (c *cgroup) set(res cgroupResources) error {
	if err := res.validate(); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return errCgroupDestroyed
	}
	if c.applied != nil && *c.applied == res {
		return nil
	}
	c.applied = nil
	lr := res.libResources(c.version == 2, c.swap)
	if err := c.mgr.Set(lr); err != nil {
		return fmt.Errorf("cgroup %s: set limits: %w", c.name, err)
	}
	if c.version == 2 && res.MemoryBytes == 0 && c.swap {
		// Without a memory limit the library writes memory.swap.max max; swap
		// stays off regardless.
		if err := cgroups.WriteFile(c.memDir, "memory.swap.max", "0"); err != nil {
			return fmt.Errorf("cgroup %s: set limits: %w", c.name, err)
		}
	}
	c.applied = &res
	return nil
}

// openCountersV1 opens the files counters and resetPeak read and write.
func (c *cgroup) openCountersV1(paths map[string]string) (err error) {
	acct, mem, pids := paths["cpuacct"], paths["memory"], paths["pids"]
	if c.cpuUsage, err = cgroups.OpenFile(acct, "cpuacct.usage", unix.O_RDONLY); err != nil {
		return fmt.Errorf("cgroup %s: %w", c.name, err)
	}
	if c.cpuUser, err = cgroups.OpenFile(acct, "cpuacct.usage_user", unix.O_RDONLY); err == nil {
		c.cpuSys, err = cgroups.OpenFile(acct, "cpuacct.usage_sys", unix.O_RDONLY)
	}
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("cgroup %s: %w", c.name, err)
		}
		if c.cpuUser != nil {
			c.cpuUser.Close()
			c.cpuUser = nil
		}
		if c.cpuStat, err = cgroups.OpenFile(acct, "cpuacct.stat", unix.O_RDONLY); err != nil {
			return fmt.Errorf("cgroup %s: %w", c.name, err)
		}
	}
	if c.peak, err = cgroups.OpenFile(mem, "memory.max_usage_in_bytes", unix.O_RDWR); err != nil {
		return fmt.Errorf("cgroup %s: %w", c.name, err)
	}
	if c.usage, err = cgroups.OpenFile(mem, "memory.usage_in_bytes", unix.O_RDONLY); err != nil {
		return fmt.Errorf("cgroup %s: %w", c.name, err)
	}
	if c.oom, err = cgroups.OpenFile(mem, "memory.oom_control", unix.O_RDONLY); err != nil {
		return fmt.Errorf("cgroup %s: %w", c.name, err)
	}
	if c.pidsEvents, err = cgroups.OpenFile(pids, "pids.events", unix.O_RDONLY); err != nil {
		return fmt.Errorf("cgroup %s: %w", c.name, err)
	}
	c.buf = make([]byte, 4096)
	return nil
}

// openCountersV2 opens the files counters and resetPeak read and write.
// memory.peak stays open for the life of the cgroup: since Linux 6.12 a write
// resets the peak seen through that one file descriptor.
func (c *cgroup) openCountersV2(dir string) (err error) {
	if c.cpuStat, err = cgroups.OpenFile(dir, "cpu.stat", unix.O_RDONLY); err != nil {
		return fmt.Errorf("cgroup %s: %w", c.name, err)
	}
	if c.peak, err = cgroups.OpenFile(dir, "memory.peak", unix.O_RDWR); err != nil {
		if !errors.Is(err, os.ErrNotExist) { // memory.peak appeared in Linux 5.19
			return fmt.Errorf("cgroup %s: %w", c.name, err)
		}
		c.peak = nil
	}
	if c.usage, err = cgroups.OpenFile(dir, "memory.current", unix.O_RDONLY); err != nil {
		return fmt.Errorf("cgroup %s: %w", c.name, err)
	}
	if c.oom, err = cgroups.OpenFile(dir, "memory.events", unix.O_RDONLY); err != nil {
		return fmt.Errorf("cgroup %s: %w", c.name, err)
	}
	if c.pidsEvents, err = cgroups.OpenFile(dir, "pids.events", unix.O_RDONLY); err != nil {
		return fmt.Errorf("cgroup %s: %w", c.name, err)
	}
	c.buf = make([]byte, 4096)
	return nil
}

// closeFiles closes the counter files; the caller holds mu or owns c alone.
func (c *cgroup) closeFiles() {
	for _, f := range []**os.File{&c.cpuUsage, &c.cpuUser, &c.cpuSys, &c.cpuStat, &c.peak, &c.usage, &c.oom, &c.pidsEvents} {
		if *f != nil {
			(*f).Close()
			*f = nil
		}
	}
}

// errCgroupDestroyed is returned by the methods of a destroyed cgroup.
var errCgroupDestroyed = errors.New("cgroup: destroyed")

// procsFiles opens the cgroup.procs file of every hierarchy of the job cgroup
// (one per distinct v1 hierarchy, one on v2), write-only and close-on-exec.
// A process that writes "0" into each joins the cgroup, whatever its
// credentials: the kernel checks those of the opener (root). The caller closes
// them.
func (c *cgroup) procsFiles() ([]*os.File, error) {
	files := make([]*os.File, 0, len(c.dirs))
	for _, dir := range c.dirs {
		f, err := cgroups.OpenFile(dir, cgroups.CgroupProcesses, unix.O_WRONLY|unix.O_CLOEXEC)
		if err != nil {
			for _, f := range files {
				f.Close()
			}
			return nil, fmt.Errorf("cgroup %s: %w", c.name, err)
		}
		files = append(files, f)
	}
	return files, nil
}

// dirFile opens the v2 cgroup directory as O_PATH, for clone3's
// CLONE_INTO_CGROUP. On v1 it returns (nil, nil). The caller closes it.
func (c *cgroup) dirFile() (*os.File, error) {
	if c.version != 2 {
		return nil, nil
	}
	fd, err := unix.Open(c.dirs[0], unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("cgroup %s: open %s: %w", c.name, c.dirs[0], err)
	}
	return os.NewFile(uintptr(fd), c.dirs[0]), nil
}

// counters reads the cumulative counters straight from the pre-opened files.
func (c *cgroup) counters() (cgroupCounters, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var n cgroupCounters
	if c.closed {
		return n, errCgroupDestroyed
	}
	var err error
	if c.version == 1 {
		err = c.countersV1(&n)
	} else {
		err = c.countersV2(&n)
	}
	if err != nil {
		return cgroupCounters{}, fmt.Errorf("cgroup %s: counters: %w", c.name, err)
	}
	return n, nil
}

// counterFiles returns the counter files and what the init reads from each
// (counterSpec), so that it reads counters() itself when a process ends:
// the same files, parsed the same way.
func (c *cgroup) counterFiles() ([]*os.File, []counterSpec) {
	var files []*os.File
	var specs []counterSpec
	add := func(f *os.File, field int, key string, scale int64) {
		if f == nil {
			return
		}
		i := slices.Index(files, f)
		if i < 0 {
			i = len(files)
			files = append(files, f)
		}
		specs = append(specs, counterSpec{Field: field, File: i, Key: key, Scale: scale})
	}
	if c.version == 1 {
		add(c.cpuUsage, ctrCPU, "", 1)
		if c.cpuUser != nil {
			add(c.cpuUser, ctrUser, "", 1)
			add(c.cpuSys, ctrSys, "", 1)
		} else {
			add(c.cpuStat, ctrUser, "user", 1e9/userHZ)
			add(c.cpuStat, ctrSys, "system", 1e9/userHZ)
		}
	} else {
		add(c.cpuStat, ctrCPU, "usage_usec", 1000)
		add(c.cpuStat, ctrUser, "user_usec", 1000)
		add(c.cpuStat, ctrSys, "system_usec", 1000)
	}
	add(c.peak, ctrMemoryPeak, "", 1)
	add(c.usage, ctrMemoryUsage, "", 1)
	add(c.oom, ctrOOMKills, "oom_kill", 1)
	add(c.pidsEvents, ctrPidsMax, "max", 1)
	return files, specs
}

// memoryUsage reads only the memory charged to the cgroup now.
func (c *cgroup) memoryUsage() (int64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return 0, errCgroupDestroyed
	}
	n, err := c.readInt(c.usage)
	if err != nil {
		return 0, fmt.Errorf("cgroup %s: memory usage: %w", c.name, err)
	}
	return n, nil
}

func (c *cgroup) countersV1(n *cgroupCounters) error {
	var err error
	if n.CPUNs, err = c.readInt(c.cpuUsage); err != nil {
		return err
	}
	if c.cpuUser != nil {
		if n.UserNs, err = c.readInt(c.cpuUser); err != nil {
			return err
		}
		if n.SysNs, err = c.readInt(c.cpuSys); err != nil {
			return err
		}
	} else {
		var user, sys int64
		err = c.readKeys(c.cpuStat, func(k string, v int64) {
			switch k {
			case "user":
				user = v
			case "system":
				sys = v
			}
		})
		if err != nil {
			return err
		}
		n.UserNs, n.SysNs = user*(1e9/userHZ), sys*(1e9/userHZ)
	}
	if n.MemoryPeak, err = c.readInt(c.peak); err != nil {
		return err
	}
	if n.MemoryUsage, err = c.readInt(c.usage); err != nil {
		return err
	}
	if n.OOMKills, err = c.readKey(c.oom, "oom_kill"); err != nil {
		return err
	}
	n.PidsMax, err = c.readKey(c.pidsEvents, "max")
	return err
}

func (c *cgroup) countersV2(n *cgroupCounters) error {
	err := c.readKeys(c.cpuStat, func(k string, v int64) {
		switch k {
		case "usage_usec":
			n.CPUNs = v * 1000
		case "user_usec":
			n.UserNs = v * 1000
		case "system_usec":
			n.SysNs = v * 1000
		}
	})
	if err != nil {
		return err
	}
	if c.peak != nil {
		if n.MemoryPeak, err = c.readInt(c.peak); err != nil {
			return err
		}
	}
	if n.MemoryUsage, err = c.readInt(c.usage); err != nil {
		return err
	}
	if n.OOMKills, err = c.readKey(c.oom, "oom_kill"); err != nil {
		return err
	}
	n.PidsMax, err = c.readKey(c.pidsEvents, "max")
	return err
}

// read reads f from offset 0 into c.buf (a cgroup file regenerates its content
// on a read at offset 0) and returns the bytes read.
func (c *cgroup) read(f *os.File) ([]byte, error) {
	n, err := f.ReadAt(c.buf, 0)
	if err != nil && err != io.EOF {
		return nil, err
	}
	if n == len(c.buf) {
		return nil, fmt.Errorf("read %s: longer than %d bytes", f.Name(), len(c.buf))
	}
	return c.buf[:n], nil
}

// readInt reads a file holding one number ("max" reads as MaxInt64).
func (c *cgroup) readInt(f *os.File) (int64, error) {
	b, err := c.read(f)
	if err != nil {
		return 0, err
	}
	s := strings.TrimSpace(string(b))
	if s == "max" {
		return math.MaxInt64, nil
	}
	v, err := fscommon.ParseUint(s, 10, 64)
	if err != nil {
		return 0, &fscommon.ParseError{Path: filepath.Dir(f.Name()), File: filepath.Base(f.Name()), Err: err}
	}
	return clampInt64(v), nil
}

// readKeys reads a file of "key value" lines, calling fn for each.
func (c *cgroup) readKeys(f *os.File, fn func(key string, v int64)) error {
	b, err := c.read(f)
	if err != nil {
		return err
	}
	return parseKeyValues(b, fn, f.Name())
}

// readKey returns the value of key in a "key value" file, 0 if absent.
func (c *cgroup) readKey(f *os.File, key string) (int64, error) {
	var v int64
	err := c.readKeys(f, func(k string, val int64) {
		if k == key {
			v = val
		}
	})
	return v, err
}

// parseKeyValues calls fn for each "key value" line of b (name is for errors).
func parseKeyValues(b []byte, fn func(key string, v int64), name string) error {
	for line := range strings.SplitSeq(string(b), "\n") {
		if line == "" {
			continue
		}
		k, v, err := fscommon.ParseKeyValue(line)
		if err != nil {
			return &fscommon.ParseError{Path: filepath.Dir(name), File: filepath.Base(name), Err: err}
		}
		fn(k, clampInt64(v))
	}
	return nil
}

func clampInt64(v uint64) int64 {
	if v > math.MaxInt64 {
		return math.MaxInt64
	}
	return int64(v)
}

// resetPeak restarts the memory peak at the current usage: v1 writes 0 to
// memory.max_usage_in_bytes; v2 writes to memory.peak through the fd that
// counters reads (per-fd reset, Linux 6.12 and later).
func (c *cgroup) resetPeak() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return errCgroupDestroyed
	}
	if c.peak == nil {
		return fmt.Errorf("cgroup %s: reset peak: memory.peak: %w", c.name, errors.ErrUnsupported)
	}
	val := "0"
	if c.version == 2 {
		val = "reset\n"
	}
	if _, err := c.peak.WriteAt([]byte(val), 0); err != nil {
		if c.version == 2 && (errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM)) {
			// Before Linux 6.12 memory.peak is read-only.
			err = fmt.Errorf("%w (memory.peak is resettable from Linux 6.12): %w", errors.ErrUnsupported, err)
		}
		return fmt.Errorf("cgroup %s: reset peak: %w", c.name, err)
	}
	return nil
}

// pids lists the processes in the cgroup and its descendants, across every
// hierarchy, sorted.
func (c *cgroup) pids() ([]int, error) {
	var all []int
	for _, dir := range c.dirs {
		p, err := cgroups.GetAllPids(dir)
		if err != nil {
			return nil, fmt.Errorf("cgroup %s: pids: %w", c.name, err)
		}
		all = append(all, p...)
	}
	slices.Sort(all)
	return slices.Compact(all), nil
}

// destroy removes the cgroup's directories, retrying briefly while the last
// processes exit (EBUSY). It kills nothing: a cgroup that still has processes
// stays, and destroy returns an error. It is idempotent. The corral parent
// stays (see removeCgroupParent).
func (c *cgroup) destroy() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.closed {
		c.closeFiles()
		c.closed = true
	}
	if err := c.mgr.Destroy(); err != nil {
		return fmt.Errorf("cgroup %s: destroy: %w", c.name, err)
	}
	return nil
}

// removeCgroupParent removes the empty parents of the cgroup name in every
// hierarchy, deepest first, up to and including the corral* one (for
// "corral/sb-1": /sys/fs/cgroup/<controller>/corral). A parent still holding a
// cgroup stays (EBUSY/ENOTEMPTY are ignored), so it is safe to call while other
// sandboxes exist; newCgroup tolerates a parent removed under its feet. Meant
// for tests and shutdown.
func removeCgroupParent(name string) error {
	top, err := checkCgroupName(name)
	if err != nil {
		return err
	}
	var roots []string
	if cgroupVersion() == 2 {
		roots = []string{cgroupfsRoot}
	} else {
		for _, ctrl := range cgroupV1Controllers {
			mnt, err := cgroups.FindCgroupMountpoint("", ctrl)
			if err == nil && !slices.Contains(roots, mnt) {
				roots = append(roots, mnt)
			}
		}
	}
	parts := strings.Split(name, "/")
	var errs []error
	for _, root := range roots {
		for i := len(parts) - 1; i > top; i-- {
			dir := filepath.Join(root, filepath.Join(parts[:i]...))
			err := unix.Rmdir(dir)
			if err != nil && err != unix.ENOENT && err != unix.EBUSY && err != unix.ENOTEMPTY && err != unix.EEXIST {
				errs = append(errs, &os.PathError{Op: "rmdir", Path: dir, Err: err})
			}
		}
	}
	return errors.Join(errs...)
}

// String names the cgroup for logs and errors.
func (c *cgroup) String() string { return c.name + " (cgroup v" + strconv.Itoa(c.version) + ")" }
