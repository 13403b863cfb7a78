package isolate

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/corralhq/corral/jobs"
)

// Config describes one sandbox.
type Config struct {
	// ID names the sandbox in cgroup paths and logs. Default: random.
	ID string
	// Lower are the host paths of the image's mounted layers, top layer
	// first (overlayfs lowerdir order). Required. Every directory on these
	// paths must be searchable by the sandbox's host uids.
	Lower []string
	// RunDir is a host directory, searchable by the sandbox's host uids,
	// in which the sandbox makes its (empty) stage mount point. Required.
	RunDir string
	// HostUID is the host uid (and gid) of uid 0 inside the sandbox;
	// IDsPerSandbox ids from it are mapped. Default: DefaultUIDBase. Give
	// each slot its own range.
	HostUID uint32
	// DiskBytes sizes the writable layer until a Reset says otherwise.
	// Default: the protocol's disk_bytes default (256 MiB).
	DiskBytes int64
	// CPUs is the CPU bandwidth a job may use, in CPUs (CFS quota).
	// Default 1; 0 < CPUs.
	CPUs float64
	// Hostname inside the sandbox. Default "corral".
	Hostname string
	// CgroupParent is the cgroup under which the sandbox's cgroup is made
	// in every hierarchy. Default "corral".
	CgroupParent string
	// EtcFiles are files placed in the job root's /etc in every writable
	// layer (name → content), such as "resolv.conf" and "hosts" for
	// sandboxes with a network. Owned by the sandbox's root, mode 0644:
	// jobs read them and cannot change them.
	EtcFiles map[string][]byte
	// FreshLayers makes every Reset build a new writable layer. By
	// default a layer that the job left exactly as it was built (no file
	// made, changed or removed, checked inode by inode with the kernel's
	// change times) serves the next job, and so does its IPC namespace
	// when no job process made a System V IPC call: see docs/sandbox.md,
	// "Keeping an unchanged layer". FreshLayers also
	// leaves the overlay's xino off, which such layers need and which
	// gives image files inode numbers above 2^32.
	FreshLayers bool
	// KeepNetwork keeps every job in the init's network namespace, the
	// one NetNSPath names, where the parent wires a network (netpool's
	// egress). By default a job that made an AF_INET or AF_INET6 socket
	// leaves its network namespace behind: the next job gets a new one,
	// with only its loopback, so no counter, socket or port of the last
	// job's traffic is there (docs/sandbox.md).
	KeepNetwork bool
	// Log receives the init's diagnostics. Default: discarded.
	Log io.Writer
}

var idPattern = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)

// WithDefaults returns the config with unset fields defaulted.
func (c Config) WithDefaults() Config {
	if c.ID == "" {
		c.ID = randomID()
	}
	if c.HostUID == 0 {
		c.HostUID = DefaultUIDBase
	}
	if c.DiskBytes == 0 {
		c.DiskBytes = jobs.DefaultLimits().DiskBytes
	}
	if c.CPUs == 0 {
		c.CPUs = 1
	}
	if c.Hostname == "" {
		c.Hostname = "corral"
	}
	if c.CgroupParent == "" {
		c.CgroupParent = "corral"
	}
	if c.Log == nil {
		c.Log = io.Discard
	}
	return c
}

// Validate reports the first invalid field.
func (c Config) Validate() error {
	switch {
	case !idPattern.MatchString(c.ID):
		return fmt.Errorf("isolate: sandbox id %q: want 1-64 of [A-Za-z0-9_.-]", c.ID)
	case len(c.Lower) == 0:
		return errors.New("isolate: no image layers (Lower is empty)")
	case len(c.Lower) > 64:
		return errors.New("isolate: more than 64 image layers")
	case c.RunDir == "" || !filepath.IsAbs(c.RunDir):
		return fmt.Errorf("isolate: RunDir %q must be an absolute path", c.RunDir)
	case c.HostUID < 1000 || uint64(c.HostUID)+IDsPerSandbox > 1<<32-2:
		return fmt.Errorf("isolate: HostUID %d: the range must lie between 1000 and 2^32-2", c.HostUID)
	case c.DiskBytes < 0:
		return errors.New("isolate: DiskBytes is negative")
	case c.CPUs <= 0:
		return errors.New("isolate: CPUs must be positive")
	case c.CPUs < minCPUs:
		return fmt.Errorf("isolate: CPUs %g is below %g: the kernel takes no CFS quota under 1 ms per 10 ms period", c.CPUs, minCPUs)
	}
	for name := range c.EtcFiles {
		if name == "" || strings.ContainsAny(name, "/\x00") || name == "." || name == ".." {
			return fmt.Errorf("isolate: EtcFiles name %q: want a plain file name", name)
		}
	}
	for _, l := range c.Lower {
		if !filepath.IsAbs(l) {
			return fmt.Errorf("isolate: layer path %q is not absolute", l)
		}
	}
	return nil
}

// minCPUs is the smallest CPU bandwidth the kernel takes: a CFS quota of at
// least 1 ms per period (the sandboxes' period is 10 ms).
const minCPUs = 0.1
