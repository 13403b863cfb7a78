package isolate

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/opencontainers/cgroups"
	"golang.org/x/sys/unix"
)

// OwnerCgroupParent is the cgroup parent for the sandboxes of the process
// pid, below parent (default "corral"): "corral/w<pid>". Naming the owner
// lets CleanStaleCgroups remove what a crashed process left.
func OwnerCgroupParent(parent string, pid int) string {
	if parent == "" {
		parent = cgroupParent
	}
	return parent + "/w" + strconv.Itoa(pid)
}

// CleanStaleCgroups removes the sandbox cgroups that processes which no
// longer exist left below parent (made with OwnerCgroupParent), in every
// hierarchy. The kernel killed their processes with their inits; only the
// empty directories remain. Cgroups of live processes are not touched.
func CleanStaleCgroups(parent string) error {
	if parent == "" {
		parent = cgroupParent
	}
	if _, err := checkCgroupName(parent + "/x"); err != nil {
		return err
	}
	var roots []string
	if cgroupVersion() == 2 {
		roots = []string{filepath.Join(cgroupfsRoot, parent)}
	} else {
		for _, ctrl := range cgroupV1Controllers {
			mnt, err := cgroups.FindCgroupMountpoint("", ctrl)
			if err != nil {
				continue
			}
			roots = append(roots, filepath.Join(mnt, parent))
		}
	}
	var errs []error
	for _, root := range roots {
		entries, err := os.ReadDir(root)
		if err != nil {
			continue
		}
		for _, e := range entries {
			pid, err := strconv.Atoi(strings.TrimPrefix(e.Name(), "w"))
			if !e.IsDir() || !strings.HasPrefix(e.Name(), "w") || err != nil || pid <= 0 {
				continue
			}
			if unix.Kill(pid, 0) != unix.ESRCH {
				continue // alive (or not ours to judge)
			}
			dir := filepath.Join(root, e.Name())
			subs, _ := os.ReadDir(dir)
			for _, s := range subs {
				if s.IsDir() {
					if err := unix.Rmdir(filepath.Join(dir, s.Name())); err != nil && err != unix.ENOENT {
						errs = append(errs, fmt.Errorf("%s: %w", filepath.Join(dir, s.Name()), err))
					}
				}
			}
			if err := unix.Rmdir(dir); err != nil && err != unix.ENOENT {
				errs = append(errs, fmt.Errorf("%s: %w", dir, err))
			}
		}
	}
	return errors.Join(errs...)
}
