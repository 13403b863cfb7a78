package rootfs

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// ownerFile, in a run directory, holds "<pid> <start time>" of the process
// that made it, so CleanStale can tell a dead owner from a reused pid.
const ownerFile = "owner"

// errMounterClosed is returned by Acquire after Close.
var errMounterClosed = errors.New("rootfs: mounter closed")

// Mounter mounts image layers read-only for the sandboxes of one process.
// Each layer is mounted once, at <runDir>/layers/<hex>, and shared: it is
// reference counted and the last release unmounts it. Its methods are safe
// for concurrent use.
type Mounter struct {
	dir string

	mu     sync.Mutex
	layers map[string]*mountedLayer // by hex digest
	closed bool
}

type mountedLayer struct {
	path string // the mount point
	refs int
}

// NewMounter prepares runDir, a directory private to this process (see
// RunDir), to hold layer mount points. It bind-mounts runDir onto itself and
// makes it private, so that the layer mounts below it never propagate to
// other mount namespaces. It fails if runDir is already a mount point.
func NewMounter(runDir string) (*Mounter, error) {
	if err := os.MkdirAll(runDir, 0o755); err != nil {
		return nil, fmt.Errorf("run dir: %w", err)
	}
	dir, err := filepath.Abs(runDir)
	if err == nil {
		dir, err = filepath.EvalSymlinks(dir)
	}
	if err != nil {
		return nil, fmt.Errorf("run dir: %w", err)
	}
	mounts, err := mountPoints()
	if err != nil {
		return nil, err
	}
	for _, mp := range mounts {
		if mp == dir {
			return nil, fmt.Errorf("run dir %s is already a mount point: another Mounter uses it, or a dead process left it (CleanStale removes those)", dir)
		}
	}
	start, err := procStartTime(os.Getpid())
	if err != nil {
		return nil, err
	}
	owner := fmt.Sprintf("%d %d\n", os.Getpid(), start)
	if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte(owner), 0o644); err != nil {
		return nil, fmt.Errorf("run dir: %w", err)
	}
	if err := os.Mkdir(filepath.Join(dir, "layers"), 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("run dir: %w", err)
	}
	if err := unix.Mount(dir, dir, "", unix.MS_BIND, ""); err != nil {
		return nil, fmt.Errorf("bind-mount run dir %s: %w", dir, err)
	}
	if err := unix.Mount("", dir, "", unix.MS_PRIVATE, ""); err != nil {
		unmount(dir)
		return nil, fmt.Errorf("make run dir %s private: %w", dir, err)
	}
	return &Mounter{dir: dir, layers: map[string]*mountedLayer{}}, nil
}

// Dir returns the Mounter's run directory.
func (m *Mounter) Dir() string { return m.dir }

// Acquire mounts the layers of img that are not mounted yet and takes a
// reference on each. It returns their mount points top layer first, the
// order of overlayfs's lowerdir option (a layer that appears twice is given
// once, at its topmost place, which leaves the merged tree the same), and
// the function that drops the references; release may be called more than
// once. A layer that is not a whole squashfs file gives an error wrapping
// ErrCorruptImage, one whose file is gone ErrImageChanged; neither leaves a
// loop device or mount behind.
func (m *Mounter) Acquire(img *Image) (lower []string, release func(), err error) {
	if img == nil || len(img.Layers) == 0 {
		return nil, nil, fmt.Errorf("%w: image has no layers", ErrCorruptImage)
	}
	hexes := make([]string, len(img.Layers))
	for i, l := range img.Layers {
		if hexes[i], err = parseDigest(l.Digest); err != nil {
			return nil, nil, fmt.Errorf("%w: image %s: layer %d: %v", ErrCorruptImage, img.Name, i, err)
		}
		if l.Path == "" {
			return nil, nil, fmt.Errorf("%w: image %s: layer %s has no path", ErrCorruptImage, img.Name, l.Digest)
		}
	}

	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, nil, errMounterClosed
	}
	got := make([]string, 0, len(hexes))
	for i, h := range hexes {
		ml := m.layers[h]
		if ml == nil {
			p := filepath.Join(m.dir, "layers", h)
			if err := mountLayer(img.Layers[i].Path, p); err != nil {
				m.releaseLocked(got)
				return nil, nil, fmt.Errorf("image %s: %w", img.Name, err)
			}
			ml = &mountedLayer{path: p}
			m.layers[h] = ml
		}
		ml.refs++
		got = append(got, h)
	}
	seen := map[string]bool{}
	for i := len(got) - 1; i >= 0; i-- {
		if !seen[got[i]] {
			seen[got[i]] = true
			lower = append(lower, m.layers[got[i]].path)
		}
	}
	var once sync.Once
	release = func() {
		once.Do(func() {
			m.mu.Lock()
			defer m.mu.Unlock()
			m.releaseLocked(got)
		})
	}
	return lower, release, nil
}

// releaseLocked drops one reference on each layer, unmounting those left
// with none. The caller holds m.mu.
func (m *Mounter) releaseLocked(hexes []string) {
	for _, h := range hexes {
		ml := m.layers[h]
		if ml == nil { // unmounted by Close
			continue
		}
		if ml.refs--; ml.refs > 0 {
			continue
		}
		delete(m.layers, h)
		unmount(ml.path)
		os.Remove(ml.path)
	}
}

// Mounted returns how many layers are mounted now.
func (m *Mounter) Mounted() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.layers)
}

// Close unmounts every layer still mounted, whatever its references, then
// the run directory's bind mount, and removes the mount points (and the run
// directory when nothing else is left in it). Later calls do nothing.
func (m *Mounter) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil
	}
	m.closed = true
	var errs []error
	for h, ml := range m.layers {
		delete(m.layers, h)
		if err := unmount(ml.path); err != nil {
			errs = append(errs, err)
		}
		os.Remove(ml.path)
	}
	if err := unmount(m.dir); err != nil {
		errs = append(errs, err)
	}
	for _, p := range []string{filepath.Join(m.dir, "layers"), filepath.Join(m.dir, ownerFile), m.dir} {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, unix.ENOTEMPTY) && !errors.Is(err, unix.EEXIST) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// mountLayer attaches the squashfs file to a loop device and mounts it at
// target, read-only, nodev, nosuid and private. On failure nothing is left:
// no loop device, no mount, no target directory.
func mountLayer(file, target string) error {
	f, err := os.Open(file)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: layer %s is gone", ErrImageChanged, file)
	}
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrCorruptImage, file, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrCorruptImage, file, err)
	}
	// The superblock is checked on the very file given to the loop device.
	if err := checkSuperblock(f, fi.Size(), file); err != nil {
		return err
	}
	if err := os.Mkdir(target, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("mount point: %w", err)
	}
	loopFd, dev, err := attachLoop(int(f.Fd()), file)
	if err != nil {
		os.Remove(target)
		return fmt.Errorf("attach %s to a loop device: %w", file, err)
	}
	err = unix.Mount(dev, target, "squashfs", unix.MS_RDONLY|unix.MS_NODEV|unix.MS_NOSUID, "")
	if err != nil {
		// The device was never mounted: clear it now rather than rely on
		// autoclear at close.
		unix.IoctlSetInt(loopFd, unix.LOOP_CLR_FD, 0)
		unix.Close(loopFd)
		os.Remove(target)
		switch {
		case errors.Is(err, unix.EINVAL), errors.Is(err, unix.EIO), errors.Is(err, unix.EUCLEAN),
			errors.Is(err, unix.EBADMSG), errors.Is(err, unix.ENODATA), errors.Is(err, unix.EOVERFLOW),
			errors.Is(err, unix.EFBIG):
			return fmt.Errorf("%w: %s: mount squashfs: %v", ErrCorruptImage, file, err)
		}
		return fmt.Errorf("mount %s (%s) on %s: %w", file, dev, target, err)
	}
	// The mount holds the device now; autoclear frees it on unmount.
	unix.Close(loopFd)
	if err := unix.Mount("", target, "", unix.MS_PRIVATE, ""); err != nil {
		unmount(target)
		os.Remove(target)
		return fmt.Errorf("make %s private: %w", target, err)
	}
	return nil
}

// attachLoop binds the open file backingFd to a free loop device, read-only
// and autoclear, and returns the device's fd and path. Another process can
// take the device LOOP_CTL_GET_FREE returned before LOOP_CONFIGURE; then the
// configure fails with EBUSY and it tries the next free one.
func attachLoop(backingFd int, name string) (fd int, dev string, err error) {
	ctl, err := unix.Open("/dev/loop-control", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, "", fmt.Errorf("open /dev/loop-control: %w (is the loop driver available?)", err)
	}
	defer unix.Close(ctl)
	cfg := unix.LoopConfig{Fd: uint32(backingFd)}
	cfg.Info.Flags = unix.LO_FLAGS_READ_ONLY | unix.LO_FLAGS_AUTOCLEAR
	copy(cfg.Info.File_name[:len(cfg.Info.File_name)-1], name)
	for attempt := 0; attempt < 64; attempt++ {
		n, err := unix.IoctlRetInt(ctl, unix.LOOP_CTL_GET_FREE)
		if err != nil {
			return -1, "", fmt.Errorf("LOOP_CTL_GET_FREE: %w", err)
		}
		dev = "/dev/loop" + strconv.Itoa(n)
		fd, err = unix.Open(dev, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if errors.Is(err, unix.ENXIO) || errors.Is(err, unix.ENOENT) {
			continue // removed or not yet created: ask again
		}
		if err != nil {
			return -1, "", fmt.Errorf("open %s: %w", dev, err)
		}
		err = unix.IoctlLoopConfigure(fd, &cfg)
		if err == nil {
			return fd, dev, nil
		}
		unix.Close(fd)
		if !errors.Is(err, unix.EBUSY) {
			return -1, "", fmt.Errorf("LOOP_CONFIGURE %s: %w", dev, err)
		}
	}
	return -1, "", errors.New("no free loop device: every one was taken before it could be configured")
}

// unmount unmounts path, lazily if it is busy; not being mounted is no error.
func unmount(path string) error {
	err := unix.Unmount(path, unix.UMOUNT_NOFOLLOW)
	if errors.Is(err, unix.EBUSY) {
		err = unix.Unmount(path, unix.MNT_DETACH|unix.UMOUNT_NOFOLLOW)
	}
	if err == nil || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
		return nil
	}
	return fmt.Errorf("unmount %s: %w", path, err)
}

// CleanStale removes what dead processes left in dataDir (DefaultDataDir
// when empty): each <data>/run/<pid> whose process is gone (or whose pid
// now belongs to a process started later) has every mount below it
// detached, which frees the loop devices, and is then deleted; so are
// <data>/tmp/build-<pid>-* directories of dead builds. Run it at startup,
// before NewMounter.
func CleanStale(dataDir string) error {
	if dataDir == "" {
		dataDir = DefaultDataDir
	}
	var errs []error
	runRoot := filepath.Join(dataDir, "run")
	ents, err := os.ReadDir(runRoot)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("clean stale run dirs: %w", err)
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 0 || !e.IsDir() {
			continue
		}
		dir := filepath.Join(runRoot, e.Name())
		if !runDirStale(pid, dir) {
			continue
		}
		if err := cleanRunDir(dir); err != nil {
			errs = append(errs, err)
		}
	}
	tmp := filepath.Join(dataDir, "tmp")
	ents, err = os.ReadDir(tmp)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		errs = append(errs, fmt.Errorf("clean stale builds: %w", err))
	}
	for _, e := range ents {
		rest, ok := strings.CutPrefix(e.Name(), "build-")
		if !ok {
			continue
		}
		pidStr, _, _ := strings.Cut(rest, "-")
		if pid, err := strconv.Atoi(pidStr); err == nil && pid > 0 && !processAlive(pid) {
			if err := os.RemoveAll(filepath.Join(tmp, e.Name())); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// runDirStale reports whether the run directory of pid was left by a
// process that no longer exists.
func runDirStale(pid int, dir string) bool {
	if !processAlive(pid) {
		return true
	}
	b, err := os.ReadFile(filepath.Join(dir, ownerFile))
	if err != nil {
		return false // cannot tell: keep it
	}
	var opid int
	var ostart uint64
	if _, err := fmt.Sscanf(string(b), "%d %d", &opid, &ostart); err != nil || opid != pid {
		return false
	}
	start, err := procStartTime(pid)
	return err == nil && start != ostart
}

// processAlive reports whether a process with that pid exists.
func processAlive(pid int) bool {
	return unix.Kill(pid, 0) != unix.ESRCH
}

// procStartTime returns the start time of a process, in clock ticks since
// boot (field 22 of /proc/<pid>/stat).
func procStartTime(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	f := strings.Fields(s[i+1:]) // f[0] is field 3
	if len(f) < 20 {
		return 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	return strconv.ParseUint(f[19], 10, 64)
}

// cleanRunDir detaches every mount at or below dir, deepest first, and
// removes dir once nothing is mounted there.
func cleanRunDir(dir string) error {
	if real, err := filepath.EvalSymlinks(dir); err == nil {
		dir = real
	}
	under := func() ([]string, error) {
		mps, err := mountPoints()
		if err != nil {
			return nil, err
		}
		var out []string
		for _, mp := range mps {
			if mp == dir || strings.HasPrefix(mp, dir+"/") {
				out = append(out, mp)
			}
		}
		return out, nil
	}
	mps, err := under()
	if err != nil {
		return err
	}
	// Deepest first; among equals, the latest mount (the one on top) first.
	for i, j := 0, len(mps)-1; i < j; i, j = i+1, j-1 {
		mps[i], mps[j] = mps[j], mps[i]
	}
	sort.SliceStable(mps, func(i, j int) bool { return strings.Count(mps[i], "/") > strings.Count(mps[j], "/") })
	for _, mp := range mps {
		if err := unix.Unmount(mp, unix.MNT_DETACH|unix.UMOUNT_NOFOLLOW); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("clean %s: unmount %s: %w", dir, mp, err)
		}
	}
	if left, err := under(); err != nil {
		return err
	} else if len(left) > 0 {
		return fmt.Errorf("clean %s: still mounted: %s", dir, strings.Join(left, ", "))
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("clean %s: %w", dir, err)
	}
	return nil
}

// mountPoints returns the mount points of this process's mount namespace,
// in /proc/self/mountinfo order.
func mountPoints() ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		out = append(out, unescapeMountinfo(fields[4]))
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read /proc/self/mountinfo: %w", err)
	}
	return out, nil
}

// unescapeMountinfo undoes the octal escapes (\040 for a space, …) of a
// mountinfo path.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
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
