package rootfs

import (
	"bufio"
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// JobUID and JobGID are the uid and gid of the "corral" user that the trees
// made here declare in /etc/passwd and /etc/group, and that own /work.
const (
	JobUID = 1000
	JobGID = 1000
)

// busyboxPaths are where busybox-static installs busybox.
var busyboxPaths = []string{"/bin/busybox", "/usr/bin/busybox"}

// findBusybox returns the path of the host's statically linked busybox.
func findBusybox() (string, error) {
	paths := busyboxPaths
	if p, err := exec.LookPath("busybox"); err == nil {
		paths = append([]string{p}, paths...)
	}
	for _, p := range paths {
		f, err := elf.Open(p)
		if err != nil {
			continue
		}
		dynamic := false
		for _, prog := range f.Progs {
			if prog.Type == elf.PT_INTERP {
				dynamic = true
			}
		}
		f.Close()
		if dynamic {
			return "", fmt.Errorf("%s is dynamically linked and would not run in an image: install busybox-static (apt-get install busybox-static)", p)
		}
		return p, nil
	}
	return "", errors.New("busybox not found: install busybox-static (apt-get install busybox-static)")
}

// BusyboxTree lays out at dst, which must be missing or empty, a minimal
// root file system made from the host's static busybox (busybox-static):
//
//	bin/busybox and a symlink to it in bin/ for every applet; usr/bin/env
//	etc/passwd, etc/group  root (0) and the job user "corral" (1000), nobody (65534)
//	etc/hostname, etc/hosts
//	tmp (1777), work (owned by 1000:1000 when run as root), proc, dev, root, usr/bin
func BusyboxTree(dst string) error {
	bb, err := findBusybox()
	if err != nil {
		return err
	}
	if err := emptyDir(dst); err != nil {
		return err
	}
	out, err := exec.Command(bb, "--list").Output()
	if err != nil {
		return fmt.Errorf("%s --list: %w", bb, err)
	}
	for _, d := range []struct {
		path string
		mode fs.FileMode
	}{
		{"bin", 0o755}, {"dev", 0o755}, {"etc", 0o755}, {"proc", 0o555}, {"root", 0o700},
		{"tmp", 0o777 | fs.ModeSticky}, {"usr", 0o755}, {"usr/bin", 0o755}, {"work", 0o755},
	} {
		p := filepath.Join(dst, d.path)
		if err := os.Mkdir(p, d.mode.Perm()); err != nil {
			return err
		}
		if err := os.Chmod(p, d.mode); err != nil { // past the umask
			return err
		}
	}
	if os.Geteuid() == 0 {
		if err := os.Lchown(filepath.Join(dst, "work"), JobUID, JobGID); err != nil {
			return err
		}
	}
	fi, err := os.Stat(bb)
	if err != nil {
		return err
	}
	if err := copyFile(bb, filepath.Join(dst, "bin", "busybox"), fi); err != nil {
		return err
	}
	n := 0
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		name := strings.TrimSpace(sc.Text())
		if name == "" || name == "busybox" || name == "." || name == ".." || strings.ContainsRune(name, '/') {
			continue
		}
		if err := os.Symlink("busybox", filepath.Join(dst, "bin", name)); err != nil {
			return err
		}
		n++
	}
	if n == 0 {
		return fmt.Errorf("%s --list printed no applets", bb)
	}
	// For "#!/usr/bin/env python3" and the like.
	if err := os.Symlink("/bin/busybox", filepath.Join(dst, "usr", "bin", "env")); err != nil {
		return err
	}
	files := []struct{ path, text string }{
		{"etc/passwd", fmt.Sprintf("root:x:0:0:root:/root:/bin/sh\ncorral:x:%d:%d:corral job:/work:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n", JobUID, JobGID)},
		{"etc/group", fmt.Sprintf("root:x:0:\ncorral:x:%d:\nnogroup:x:65534:\n", JobGID)},
		{"etc/hostname", "corral\n"},
		{"etc/hosts", "127.0.0.1\tlocalhost corral\n::1\tlocalhost ip6-localhost ip6-loopback\n"},
	}
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(dst, f.path), []byte(f.text), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// emptyDir makes sure dir exists and is empty.
func emptyDir(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	if len(ents) > 0 {
		return fmt.Errorf("%s is not empty", dir)
	}
	return os.Chmod(dir, 0o755)
}

// hostPython is the interpreter DefaultTree copies; Debian links it to
// python3.N.
const hostPython = "/usr/bin/python3"

// DefaultTree lays out at dst, which must be missing or empty, the tree of
// the default image: BusyboxTree, and with withPython the host's Debian
// python3 as well: /usr/bin/python3 and the python3.N it links to, the
// shared libraries that ldd finds for it and for its extension modules
// (the dynamic loader included, every symlink on the way recreated), and
// its standard library /usr/lib/python3.N without tests, __pycache__ and
// the config-* directory (static library and build files). The standard
// library is then byte-compiled with that same interpreter, so a job's
// "import" reads ready .pyc files instead of compiling and writing them
// into its own writable layer every time. Only Debian packages are used:
// nothing is downloaded.
func DefaultTree(dst string, withPython bool) error {
	if err := BusyboxTree(dst); err != nil {
		return err
	}
	if !withPython {
		return nil
	}
	return installPython(dst)
}

// installPython copies the host's python3 into the tree at root.
func installPython(root string) error {
	real, err := filepath.EvalSymlinks(hostPython)
	if err != nil {
		return fmt.Errorf("python3 not found at %s: install it (apt-get install python3-minimal), or build the image without python", hostPython)
	}
	ver, ok := strings.CutPrefix(filepath.Base(real), "python")
	if !ok || !strings.HasPrefix(ver, "3.") {
		return fmt.Errorf("%s is %s, not a Debian python3.N", hostPython, real)
	}
	stdlib := filepath.Join("/usr/lib", "python"+ver)
	if _, err := os.Stat(filepath.Join(stdlib, "os.py")); err != nil {
		return fmt.Errorf("python standard library not found at %s: install python%s-minimal (apt-get install python%s-minimal)", stdlib, ver, ver)
	}
	c := &hostCopier{root: root}
	if err := c.install(hostPython, nil); err != nil {
		return fmt.Errorf("copy python: %w", err)
	}
	libs, missing, err := lddDeps(real)
	if err != nil {
		return err
	}
	if len(missing) > 0 {
		return fmt.Errorf("%s needs libraries ldd cannot find: %s", real, strings.Join(missing, ", "))
	}
	mods, _ := filepath.Glob(filepath.Join(stdlib, "lib-dynload", "*.so"))
	for _, m := range mods {
		// An extension module whose library is missing on the host does
		// not import there either; it is left as it is.
		deps, _, err := lddDeps(m)
		if err != nil {
			return err
		}
		libs = append(libs, deps...)
	}
	for _, l := range libs {
		if err := c.install(l, nil); err != nil {
			return fmt.Errorf("copy library: %w", err)
		}
	}
	skip := func(rel string, d fs.DirEntry) bool {
		if !d.IsDir() {
			return false
		}
		switch d.Name() {
		case "__pycache__", "test", "tests", "idle_test":
			return true
		}
		return !strings.Contains(rel, "/") && strings.HasPrefix(d.Name(), "config-")
	}
	if err := c.install(stdlib, skip); err != nil {
		return fmt.Errorf("copy python standard library: %w", err)
	}
	// The interpreter that will run it compiles it: same bytecode magic.
	// -I ignores the environment and user site; the invalidation mode is
	// fixed, as SOURCE_DATE_EPOCH would otherwise switch it to hashes.
	cmd := exec.Command(real, "-I", "-m", "compileall", "-q", "-j", "0",
		"--invalidation-mode", "timestamp", "-s", root, "-p", "/", filepath.Join(root, stdlib))
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("byte-compile the python standard library: %v: %s", err, bytes.TrimSpace(out))
	}
	return nil
}

// lddDeps returns the absolute paths of the shared libraries ldd lists for
// a binary, the dynamic loader included, and the names it could not find.
// A statically linked binary has none.
func lddDeps(bin string) (paths, missing []string, err error) {
	ldd, err := exec.LookPath("ldd")
	if err != nil {
		return nil, nil, errors.New("ldd not found in PATH (apt-get install libc-bin)")
	}
	out, err := exec.Command(ldd, bin).CombinedOutput()
	if err != nil {
		if bytes.Contains(out, []byte("not a dynamic executable")) || bytes.Contains(out, []byte("statically linked")) {
			return nil, nil, nil
		}
		return nil, nil, fmt.Errorf("ldd %s: %v: %s", bin, err, bytes.TrimSpace(out))
	}
	for _, line := range strings.Split(string(out), "\n") {
		line = strings.TrimSpace(line)
		// "libm.so.6 => /lib/x86_64-linux-gnu/libm.so.6 (0x…)"
		// "/lib64/ld-linux-x86-64.so.2 (0x…)"
		// "linux-vdso.so.1 (0x…)", "libfoo.so.1 => not found"
		name, target, arrow := strings.Cut(line, "=>")
		if !arrow {
			target = name
		}
		target = strings.TrimSpace(target)
		if strings.HasPrefix(target, "not found") {
			missing = append(missing, strings.TrimSpace(name))
			continue
		}
		if i := strings.Index(target, " ("); i >= 0 {
			target = target[:i]
		}
		if strings.HasPrefix(target, "/") {
			paths = append(paths, target)
		}
	}
	return paths, missing, nil
}

// hostCopier copies host files into a tree at root, keeping their paths.
type hostCopier struct{ root string }

// install copies the host path p (a file, or a directory with everything
// below it but what skip rejects) into the tree at the same path, creating
// its parent directories. Every symlink met on the way, in p's parents too,
// is recreated in the tree as it is on the host and followed on the host,
// so /lib64/ld-linux-x86-64.so.2 arrives as lib64 -> usr/lib64 and a link to
// /lib/x86_64-linux-gnu/ld-linux-x86-64.so.2, which arrives in turn. The
// tree is only ever written through directories this checked are real
// directories, never through a symlink inside it.
func (c *hostCopier) install(p string, skip func(rel string, d fs.DirEntry) bool) error {
	return c.installDepth(p, skip, 0)
}

func (c *hostCopier) installDepth(p string, skip func(string, fs.DirEntry) bool, depth int) error {
	if depth > 40 {
		return fmt.Errorf("%s: too many levels of symbolic links", p)
	}
	if !filepath.IsAbs(p) {
		return fmt.Errorf("%s: not an absolute path", p)
	}
	p = filepath.Clean(p)
	if p == "/" {
		return nil
	}
	parts := strings.Split(p[1:], "/")
	cur := "/"
	for i, part := range parts {
		hp := filepath.Join(cur, part)
		tp := filepath.Join(c.root, hp)
		fi, err := os.Lstat(hp)
		if err != nil {
			return err
		}
		last := i == len(parts)-1
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(hp)
			if err != nil {
				return err
			}
			if err := c.symlink(target, tp); err != nil {
				return err
			}
			next := target
			if !filepath.IsAbs(next) {
				next = filepath.Join(cur, target)
			}
			return c.installDepth(filepath.Join(append([]string{next}, parts[i+1:]...)...), skip, depth+1)
		case fi.IsDir() && last:
			return c.copyTree(hp, tp, skip)
		case fi.IsDir():
			if err := c.mkdir(tp, fi); err != nil {
				return err
			}
		case fi.Mode().IsRegular() && last:
			if ti, err := os.Lstat(tp); err == nil && ti.Mode().IsRegular() {
				return nil // already copied
			}
			return copyFile(hp, tp, fi)
		default:
			return fmt.Errorf("%s: cannot copy a %v", hp, fi.Mode().Type())
		}
		cur = hp
	}
	return nil
}

// mkdir makes the directory tp in the tree like the host's fi, or checks
// that it is a real directory already.
func (c *hostCopier) mkdir(tp string, fi fs.FileInfo) error {
	ti, err := os.Lstat(tp)
	if err == nil {
		if !ti.IsDir() {
			return fmt.Errorf("%s: is a %v in the tree, a directory on the host", tp, ti.Mode().Type())
		}
		return nil
	}
	if err := os.Mkdir(tp, fi.Mode().Perm()); err != nil {
		return err
	}
	return os.Chmod(tp, fi.Mode()&(fs.ModePerm|fs.ModeSticky|fs.ModeSetgid))
}

// symlink makes tp a symlink to target in the tree, or checks that it is
// one already.
func (c *hostCopier) symlink(target, tp string) error {
	if old, err := os.Readlink(tp); err == nil {
		if old != target {
			return fmt.Errorf("%s: links to %s in the tree, %s on the host", tp, old, target)
		}
		return nil
	}
	if _, err := os.Lstat(tp); err == nil {
		return fmt.Errorf("%s: exists in the tree and is not a symlink", tp)
	}
	return os.Symlink(target, tp)
}

// copyTree copies the host directory src to tp in the tree. A symlink that
// leads out of src is recreated and its target installed too.
func (c *hostCopier) copyTree(src, tp string, skip func(string, fs.DirEntry) bool) error {
	return filepath.WalkDir(src, func(hp string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, hp)
		if err != nil {
			return err
		}
		if rel != "." && skip != nil && skip(rel, d) {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		dst := filepath.Join(tp, rel)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return c.mkdir(dst, fi)
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(hp)
			if err != nil {
				return err
			}
			if err := c.symlink(target, dst); err != nil {
				return err
			}
			abs := target
			if !filepath.IsAbs(abs) {
				abs = filepath.Join(filepath.Dir(hp), target)
			}
			if abs != src && !strings.HasPrefix(abs, src+"/") {
				if _, err := os.Stat(abs); err == nil {
					return c.install(abs, nil)
				}
			}
			return nil
		case fi.Mode().IsRegular():
			return copyFile(hp, dst, fi)
		}
		return fmt.Errorf("%s: cannot copy a %v", hp, fi.Mode().Type())
	})
}

// copyFile copies the regular file src to dst, which must not exist, with
// src's mode and modification time.
func copyFile(src, dst string, fi fs.FileInfo) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, fi.Mode().Perm())
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Chmod(fi.Mode() & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky)); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Chtimes(dst, fi.ModTime(), fi.ModTime())
}
