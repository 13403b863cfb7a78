package isolate

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"debug/elf"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"github.com/opencontainers/cgroups"
	"golang.org/x/sys/unix"
)

// Check reports, one Feature each, whether this host has what corral's
// sandboxes are made of. It probes rather than trusts configuration where a
// probe is cheap and harmless: it clones a /bin/true into new namespaces,
// creates and removes a cgroup (as root), and asks the kernel for its Landlock
// ABI and seccomp actions. It takes tens of milliseconds.
func Check() []Feature {
	root := os.Geteuid() == 0
	fs := []Feature{checkRoot(root)}
	fs = append(fs, checkNamespaces(root)...)
	fs = append(fs, checkCgroups(root)...)
	filesystems, fsErr := os.ReadFile("/proc/filesystems")
	for _, name := range []string{"overlay", "squashfs", "tmpfs"} {
		fs = append(fs, checkFilesystem(name, filesystems, fsErr))
	}
	fs = append(fs,
		checkLoop(root),
		checkLandlock(),
		checkSeccomp(),
		checkMksquashfs(),
		checkBusybox(),
	)
	return fs
}

func checkRoot(root bool) Feature {
	f := Feature{Name: "root", Required: true, OK: root}
	if root {
		f.Detail = "running as uid 0"
		return f
	}
	f.Detail = fmt.Sprintf("running as uid %d", os.Geteuid())
	f.Fix = "run corral as root (sudo corral ...): it creates namespaces with a host uid range, cgroups, loop devices and mounts"
	return f
}

// namespace is one kind of Linux namespace corral's sandboxes use.
type namespace struct {
	feature string  // Feature.Name
	file    string  // in /proc/self/ns, and in /proc/sys/user/max_<file>_namespaces
	flag    uintptr // CLONE_NEW*
	config  string  // the kernel option that provides it
}

var namespaces = []namespace{
	{"userns", "user", unix.CLONE_NEWUSER, "CONFIG_USER_NS"},
	{"pidns", "pid", unix.CLONE_NEWPID, "CONFIG_PID_NS"},
	{"mntns", "mnt", unix.CLONE_NEWNS, ""},
	{"utsns", "uts", unix.CLONE_NEWUTS, "CONFIG_UTS_NS"},
	{"ipcns", "ipc", unix.CLONE_NEWIPC, "CONFIG_IPC_NS"},
	{"netns", "net", unix.CLONE_NEWNET, "CONFIG_NET_NS"},
	{"cgroupns", "cgroup", unix.CLONE_NEWCGROUP, "CONFIG_CGROUPS"},
}

// checkNamespaces reports each namespace kind: present in /proc/self/ns, not
// disabled by its user.max_*_namespaces sysctl, and actually cloneable. One
// probe clones all of them at once; only if it fails is each tried alone.
func checkNamespaces(root bool) []Feature {
	var all uintptr
	for _, ns := range namespaces {
		all |= ns.flag
	}
	allErr := probeClone(all, root)
	out := make([]Feature, 0, len(namespaces))
	for _, ns := range namespaces {
		f := Feature{Name: ns.feature, Required: true}
		var details []string
		var fix string
		present := true
		if _, err := os.Lstat("/proc/self/ns/" + ns.file); err != nil {
			present = false
			details = append(details, "/proc/self/ns/"+ns.file+" missing")
			if ns.config != "" {
				fix = "use a kernel built with " + ns.config + "=y"
			} else {
				fix = "use a kernel with mount namespaces"
			}
		}
		max := "/proc/sys/user/max_" + ns.file + "_namespaces"
		if n, err := readIntFile(max); err == nil {
			details = append(details, fmt.Sprintf("user.max_%s_namespaces=%d", ns.file, n))
			if n == 0 && fix == "" {
				present = false
				fix = fmt.Sprintf("sysctl -w user.max_%s_namespaces=10000 (and set it in /etc/sysctl.d/ to keep it)", ns.file)
			}
		}
		if ns.flag == unix.CLONE_NEWUSER {
			// Debian's and Ubuntu's switches for unprivileged users: they do not
			// bind root, but a reader debugging a non-root run wants them.
			for _, p := range []string{"/proc/sys/kernel/unprivileged_userns_clone", "/proc/sys/kernel/apparmor_restrict_unprivileged_userns"} {
				if n, err := readIntFile(p); err == nil {
					details = append(details, fmt.Sprintf("%s=%d", strings.ReplaceAll(strings.TrimPrefix(p, "/proc/sys/"), "/", "."), n))
				}
			}
		}
		err := allErr
		if err != nil && !errors.Is(err, errNoTrue) {
			err = probeClone(ns.flag, root)
		}
		switch {
		case errors.Is(err, errNoTrue):
			details = append(details, "clone not probed: "+err.Error())
		case err != nil:
			present = false
			details = append(details, "clone failed: "+err.Error())
			if fix == "" {
				fix = cloneFix(ns, err, root)
			}
		default:
			details = append(details, "clone ok")
		}
		f.OK = present
		f.Detail = strings.Join(details, "; ")
		if !f.OK {
			f.Fix = fix
		}
		out = append(out, f)
	}
	return out
}

func cloneFix(ns namespace, err error, root bool) string {
	switch {
	case !root && errors.Is(err, unix.EPERM):
		return "run as root"
	case errors.Is(err, unix.ENOSPC):
		return fmt.Sprintf("raise user.max_%s_namespaces (sysctl -w user.max_%s_namespaces=10000)", ns.file, ns.file)
	case errors.Is(err, unix.EINVAL) && ns.config != "":
		return "use a kernel built with " + ns.config + "=y"
	case errors.Is(err, unix.EPERM):
		return "a seccomp filter or LSM (container runtime, AppArmor, SELinux) forbids it: run corral on the host or in a privileged container"
	}
	return "see clone(2) for " + err.Error()
}

// errNoTrue means there is no /bin/true to clone into namespaces.
var errNoTrue = errors.New("no /bin/true or /usr/bin/true")

// probeClone runs /bin/true in new namespaces (flags). Without root a user
// namespace is added so the others are allowed. Its uid and gid 0 map to
// nobody when run as root (as corral maps a sandbox to an unprivileged host
// uid), or to the caller.
func probeClone(flags uintptr, root bool) error {
	bin := ""
	for _, p := range []string{"/bin/true", "/usr/bin/true"} {
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			bin = p
			break
		}
	}
	if bin == "" {
		return errNoTrue
	}
	if !root {
		flags |= unix.CLONE_NEWUSER
	}
	attr := &syscall.SysProcAttr{Cloneflags: flags}
	if flags&unix.CLONE_NEWUSER != 0 {
		uid, gid := os.Geteuid(), os.Getegid()
		if root {
			uid, gid = 65534, 65534
		}
		attr.UidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: uid, Size: 1}}
		attr.GidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: gid, Size: 1}}
	}
	cmd := exec.Command(bin)
	cmd.SysProcAttr = attr
	cmd.Dir = "/"
	if err := cmd.Run(); err != nil {
		var errno syscall.Errno
		if errors.As(err, &errno) {
			return errno
		}
		return err
	}
	return nil
}

// checkCgroups reports the cgroup version and controllers, swap accounting,
// and on v2 the per-fd memory.peak reset. As root it also creates a cgroup
// with limits, reads its counters, resets its peak and removes it.
func checkCgroups(root bool) []Feature {
	f := Feature{Name: "cgroup", Required: true}
	swap := Feature{Name: "cgroup-swap", Required: false}
	swapActive := swapInUse()
	var details []string
	v := cgroupVersion()
	if v == 2 {
		avail, err := os.ReadFile(filepath.Join(cgroupfsRoot, "cgroup.controllers"))
		if err != nil {
			f.Detail = "v2: " + err.Error()
			f.Fix = "mount cgroup2 on /sys/fs/cgroup (mount -t cgroup2 none /sys/fs/cgroup)"
			return []Feature{f}
		}
		var missing []string
		for _, c := range cgroupV2Controllers {
			if !slices.Contains(strings.Fields(string(avail)), c) {
				missing = append(missing, c)
			}
		}
		details = append(details, "v2, controllers: "+strings.TrimSpace(string(avail)))
		if len(missing) > 0 {
			f.Detail = strings.Join(details, "; ") + "; missing " + strings.Join(missing, ", ")
			f.Fix = "make " + strings.Join(missing, ", ") + " available on cgroup v2: remove cgroup_disable=/cgroup_no_v1= options that hold them on the kernel command line, unmount any v1 hierarchy that binds them, or use a kernel with them (CONFIG_MEMCG, CONFIG_CGROUP_SCHED, CONFIG_CGROUP_PIDS)"
			return []Feature{f}
		}
	} else {
		var missing, found []string
		for _, c := range cgroupV1Controllers {
			mnt, err := cgroups.FindCgroupMountpoint("", c)
			if err != nil {
				missing = append(missing, c)
				continue
			}
			found = append(found, c+" at "+mnt)
		}
		mode := "v1"
		if cgroups.IsCgroup2HybridMode() {
			mode = "v1 (hybrid, v2 at /sys/fs/cgroup/unified without the controllers)"
		}
		details = append(details, mode+": "+strings.Join(found, ", "))
		if len(missing) > 0 {
			f.Detail = strings.Join(details, "; ") + "; missing " + strings.Join(missing, ", ")
			var mounts []string
			for _, c := range missing {
				mounts = append(mounts, fmt.Sprintf("mkdir -p /sys/fs/cgroup/%s && mount -t cgroup -o %s cgroup /sys/fs/cgroup/%s", c, c, c))
			}
			f.Fix = "mount the missing v1 hierarchies (" + strings.Join(mounts, "; ") + "), or boot with systemd.unified_cgroup_hierarchy=1 for cgroup v2"
			return []Feature{f}
		}
		memMnt, _ := cgroups.FindCgroupMountpoint("", "memory")
		swap.OK = cgroups.PathExists(filepath.Join(memMnt, "memory.memsw.limit_in_bytes"))
	}

	var peak *Feature
	if root {
		p, err := probeCgroup()
		if err != nil {
			f.Detail = strings.Join(append(details, "test cgroup: "+err.Error()), "; ")
			f.Fix = "make /sys/fs/cgroup writable for corral (not a read-only mount, not a container without cgroup delegation)"
			return []Feature{f}
		}
		details = append(details, "created, limited, measured and removed a test cgroup")
		if p.intoCgroup != "" {
			details = append(details, p.intoCgroup)
		}
		if v == 2 {
			swap.OK = p.swap
			pf := Feature{Name: "cgroup-peak", Required: true, OK: p.peakErr == nil}
			if pf.OK {
				pf.Detail = "memory.peak resets per file descriptor"
			} else {
				pf.Detail = p.peakErr.Error()
				pf.Fix = "use Linux 6.12 or newer, where writing memory.peak resets it: a sandbox measures each job's peak that way"
			}
			peak = &pf
		}
	} else if v == 2 {
		matches, _ := filepath.Glob(filepath.Join(cgroupfsRoot, "*", "memory.swap.max"))
		swap.OK = len(matches) > 0
		details = append(details, "not probed (needs root)")
	} else {
		details = append(details, "not probed (needs root)")
	}
	f.OK = true
	f.Detail = strings.Join(details, "; ")

	switch {
	case swap.OK:
		swap.Detail = "swap accounting present: job swap is limited to 0"
	case !swapActive:
		swap.OK = true
		swap.Detail = "no swap accounting, but no swap is active either"
	default:
		swap.Detail = "no swap accounting while swap is active: jobs may swap (v1 sets swappiness 0 to discourage it)"
		swap.Fix = "boot with swapaccount=1 (kernels before 6.1), or turn swap off (swapoff -a)"
	}
	if swapActive {
		swap.Detail += "; swap active"
	}
	out := []Feature{f, swap}
	if peak != nil {
		out = append(out, *peak)
	}
	return out
}

// cgroupProbe is what creating a test cgroup found.
type cgroupProbe struct {
	swap    bool  // memsw / memory.swap.max files exist
	peakErr error // resetPeak's error
	// intoCgroup says how a job process enters its cgroup on v2 ("" on
	// v1).
	intoCgroup string
}

// probeCgroup creates corral/check-<random>, sets limits, moves nothing in,
// reads its counters, resets its peak and removes it, with the corral parent
// when the probe made it.
func probeCgroup() (cgroupProbe, error) {
	var p cgroupProbe
	b := make([]byte, 4)
	rand.Read(b)
	name := cgroupParent + "/check-" + hex.EncodeToString(b)
	parentExisted := true
	if cgroupVersion() == 2 {
		_, err := os.Stat(filepath.Join(cgroupfsRoot, cgroupParent))
		parentExisted = err == nil
	} else if mnt, err := cgroups.FindCgroupMountpoint("", "memory"); err == nil {
		_, err := os.Stat(filepath.Join(mnt, cgroupParent))
		parentExisted = err == nil
	}
	c, err := newCgroup(name, cgroupResources{MemoryBytes: 64 << 20, Pids: 64, CPUQuotaUs: 100000})
	if err != nil {
		return p, err
	}
	defer func() {
		_ = c.destroy()
		if !parentExisted {
			_ = removeCgroupParent(name)
		}
	}()
	p.swap = c.swap
	if _, err := c.counters(); err != nil {
		return p, err
	}
	p.peakErr = c.resetPeak()
	if _, err := c.counters(); err != nil {
		return p, err
	}
	if d, err := c.dirFile(); err == nil && d != nil {
		got, in, err := cloneIntoCgroup(d)
		d.Close()
		switch {
		case err != nil:
			p.intoCgroup = "clone into the test cgroup: " + err.Error()
		case in && strings.Contains(got, "::/"+strings.TrimPrefix(c.dirs[0], cgroupfsRoot+"/")+"\n"):
			p.intoCgroup = "CLONE_INTO_CGROUP works for host root; a sandbox's init, root only in its user namespace, falls back to its job processes writing themselves into cgroup.procs when the kernel refuses it"
		default:
			p.intoCgroup = "no CLONE_INTO_CGROUP (Linux 5.7+): job processes write themselves into cgroup.procs"
		}
	}
	return p, c.destroy()
}

// swapInUse reports whether /proc/swaps lists an active swap area.
func swapInUse() bool {
	b, err := os.ReadFile("/proc/swaps")
	if err != nil {
		return false
	}
	return len(bytes.Split(bytes.TrimSpace(b), []byte("\n"))) > 1
}

// filesystemModules maps a filesystem to its kernel module.
var filesystemModules = map[string]string{"overlay": "overlay", "squashfs": "squashfs", "tmpfs": ""}

// checkFilesystem reports whether the kernel knows the filesystem name, from
// /proc/filesystems (its content or read error given).
func checkFilesystem(name string, procFilesystems []byte, readErr error) Feature {
	f := Feature{Name: name, Required: true}
	if readErr != nil {
		f.Detail = readErr.Error()
		f.Fix = "mount /proc"
		return f
	}
	if filesystemRegistered(procFilesystems, name) {
		f.OK = true
		f.Detail = "in /proc/filesystems"
		return f
	}
	f.Detail = "not in /proc/filesystems"
	mod := filesystemModules[name]
	switch {
	case mod == "":
		f.Fix = "use a kernel built with CONFIG_SHMEM and CONFIG_TMPFS"
	case kernelModuleAvailable(mod):
		f.Detail += "; module " + mod + " available"
		f.Fix = "load it: /sbin/modprobe " + mod + " (and list it in /etc/modules-load.d/ to keep it)"
	default:
		f.Fix = "/sbin/modprobe " + mod + " if the kernel has it as a module; otherwise use a kernel built with " +
			map[string]string{"overlay": "CONFIG_OVERLAY_FS", "squashfs": "CONFIG_SQUASHFS"}[name]
	}
	return f
}

// filesystemRegistered reports whether /proc/filesystems content lists name.
func filesystemRegistered(procFilesystems []byte, name string) bool {
	sc := bufio.NewScanner(bytes.NewReader(procFilesystems))
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 0 && fields[len(fields)-1] == name {
			return true
		}
	}
	return false
}

// kernelModuleAvailable reports whether the running kernel has module mod,
// per modules.dep.
func kernelModuleAvailable(mod string) bool {
	var uts unix.Utsname
	if unix.Uname(&uts) != nil {
		return false
	}
	dep, err := os.ReadFile(filepath.Join("/lib/modules", unix.ByteSliceToString(uts.Release[:]), "modules.dep"))
	if err != nil {
		return false
	}
	return bytes.Contains(dep, []byte("/"+mod+".ko"))
}

func checkLoop(root bool) Feature {
	f := Feature{Name: "loop", Required: true}
	const ctl = "/dev/loop-control"
	st, err := os.Stat(ctl)
	if err != nil || st.Mode()&os.ModeCharDevice == 0 {
		f.Detail = ctl + " missing"
		if kernelModuleAvailable("loop") {
			f.Fix = "/sbin/modprobe loop; in a container, pass /dev/loop-control and /dev/loop* in (--device)"
		} else {
			f.Fix = "/sbin/modprobe loop (kernel option CONFIG_BLK_DEV_LOOP); in a container, pass /dev/loop-control and /dev/loop* in (--device)"
		}
		return f
	}
	devs, _ := filepath.Glob("/dev/loop[0-9]*")
	if root {
		fd, err := unix.Open(ctl, unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			f.Detail = fmt.Sprintf("open %s: %v", ctl, err)
			f.Fix = "allow corral to open " + ctl + " (device cgroup, container --device /dev/loop-control)"
			return f
		}
		unix.Close(fd)
	}
	f.OK = true
	f.Detail = fmt.Sprintf("%s present, %d loop devices", ctl, len(devs))
	return f
}

// checkLandlock asks the kernel for its Landlock ABI version.
func checkLandlock() Feature {
	f := Feature{Name: "landlock", Required: true}
	abi, err := landlockABI()
	if err == nil {
		f.OK = true
		f.Detail = "ABI " + strconv.Itoa(abi)
		return f
	}
	lsm := "landlock,lockdown,yama,integrity,apparmor,bpf"
	if b, rerr := os.ReadFile("/sys/kernel/security/lsm"); rerr == nil {
		lsm = strings.TrimSpace(string(b)) + ",landlock"
	}
	switch {
	case errors.Is(err, unix.EOPNOTSUPP):
		f.Detail = "built into the kernel but not enabled at boot"
		f.Fix = "boot with lsm=" + lsm + " (the current LSMs plus landlock, on the kernel command line)"
	case errors.Is(err, unix.ENOSYS):
		f.Detail = "the kernel has no Landlock"
		f.Fix = "use Linux 5.13 or newer built with CONFIG_SECURITY_LANDLOCK=y, and boot with lsm=" + lsm
	default:
		f.Detail = "landlock_create_ruleset: " + err.Error()
		f.Fix = "use Linux 5.13 or newer with CONFIG_SECURITY_LANDLOCK=y, booted with lsm=" + lsm
	}
	return f
}

// landlockABI is landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION).
func landlockABI() (int, error) {
	r, _, errno := unix.Syscall(unix.SYS_LANDLOCK_CREATE_RULESET, 0, 0, unix.LANDLOCK_CREATE_RULESET_VERSION)
	if errno != 0 {
		return 0, errno
	}
	return int(r), nil
}

// seccompActions are the filter return actions corral's profiles use.
var seccompActions = []struct {
	name   string
	action uint32
}{
	{"kill_process", unix.SECCOMP_RET_KILL_PROCESS},
	{"errno", unix.SECCOMP_RET_ERRNO},
	{"allow", unix.SECCOMP_RET_ALLOW},
}

// checkSeccomp reports seccomp filter support: PR_GET_SECCOMP works and the
// kernel has the actions corral's profiles return, by
// /proc/sys/kernel/seccomp/actions_avail and SECCOMP_GET_ACTION_AVAIL.
func checkSeccomp() Feature {
	f := Feature{Name: "seccomp", Required: true}
	mode, err := unix.PrctlRetInt(unix.PR_GET_SECCOMP, 0, 0, 0, 0)
	if err != nil {
		f.Detail = "prctl(PR_GET_SECCOMP): " + err.Error()
		f.Fix = "use a kernel built with CONFIG_SECCOMP=y and CONFIG_SECCOMP_FILTER=y"
		return f
	}
	availFile, ferr := os.ReadFile("/proc/sys/kernel/seccomp/actions_avail")
	avail := strings.Fields(string(availFile))
	var missing []string
	for _, a := range seccompActions {
		act := a.action
		_, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_GET_ACTION_AVAIL, 0, uintptr(unsafe.Pointer(&act)))
		if (ferr == nil && !slices.Contains(avail, a.name)) || (errno != 0 && errno != unix.EINVAL) {
			missing = append(missing, a.name)
		}
	}
	if ferr != nil {
		f.Detail = "mode " + strconv.Itoa(mode) + "; " + ferr.Error()
		f.Fix = "use Linux 4.14 or newer built with CONFIG_SECCOMP_FILTER=y"
		return f
	}
	f.Detail = fmt.Sprintf("mode %d, actions: %s", mode, strings.Join(avail, " "))
	if mode == unix.SECCOMP_MODE_FILTER {
		f.Detail += " (corral itself runs under a filter: its own are stacked on it)"
	}
	if len(missing) > 0 {
		f.Detail += "; missing " + strings.Join(missing, ", ")
		f.Fix = "use Linux 4.14 or newer built with CONFIG_SECCOMP_FILTER=y"
		return f
	}
	f.OK = true
	return f
}

// lookTool finds a program in PATH or the sbin directories a root PATH has.
func lookTool(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"} {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found", name)
}

func checkMksquashfs() Feature {
	f := Feature{Name: "mksquashfs", Required: true}
	p, err := lookTool("mksquashfs")
	if err != nil {
		f.Detail = "not found in PATH"
		f.Fix = "apt-get install squashfs-tools (dnf/apk: squashfs-tools)"
		return f
	}
	f.OK = true
	f.Detail = p
	if out, err := exec.Command(p, "-version").Output(); err == nil {
		if line, _, _ := strings.Cut(string(out), "\n"); line != "" {
			f.Detail += " (" + strings.TrimSpace(line) + ")"
		}
	}
	return f
}

// checkBusybox looks for a statically linked busybox, which the busybox test
// image is built from.
func checkBusybox() Feature {
	f := Feature{Name: "busybox-static", Required: false}
	const fix = "apt-get install busybox-static (needed only to build the busybox test image)"
	var found []string
	cands := []string{"/bin/busybox", "/usr/bin/busybox"}
	if p, err := exec.LookPath("busybox"); err == nil {
		cands = append([]string{p}, cands...)
	}
	for _, p := range cands {
		if slices.Contains(found, p) {
			continue
		}
		static, err := isStaticELF(p)
		if err != nil {
			continue
		}
		if static {
			f.OK = true
			f.Detail = "static at " + p
			return f
		}
		found = append(found, p)
	}
	if len(found) > 0 {
		f.Detail = "only dynamically linked: " + strings.Join(found, ", ")
	} else {
		f.Detail = "not found"
	}
	f.Fix = fix
	return f
}

// isStaticELF reports whether the ELF file at path has no program interpreter.
func isStaticELF(path string) (bool, error) {
	ef, err := elf.Open(path)
	if err != nil {
		return false, err
	}
	defer ef.Close()
	for _, p := range ef.Progs {
		if p.Type == elf.PT_INTERP {
			return false, nil
		}
	}
	return true, nil
}

// readIntFile reads a file holding one integer, such as a sysctl.
func readIntFile(path string) (int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
}
