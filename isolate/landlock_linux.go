package isolate

import (
	"fmt"

	"github.com/landlock-lsm/go-landlock/landlock"
	ll "github.com/landlock-lsm/go-landlock/landlock/syscall"
)

// landlockConfig handles the filesystem rights and IPC scopes of the newest
// ABI corral knows, downgraded to what the kernel supports (best effort,
// reported by `corral check`). Network rights are left to the sandbox's
// network namespace: a job may use TCP on its own loopback, as the
// protocol promises.
var landlockConfig = landlock.Config{
	HandledAccessFS: landlock.V7.HandledAccessFS,
	Scoped:          landlock.V7.Scoped,
}.BestEffort()

// landlockRuleset makes the Landlock ruleset a job process restricts itself
// with, for the job root at root and the /dev it gets bound (as the init
// sees them): read and execute everywhere in the root, write only in /tmp,
// /work and /dev/shm and to the harmless device files. It returns -1 when
// the kernel has no Landlock. Rules hold the inodes of the current writable
// layer, so the ruleset is made again after each reset.
func landlockRuleset(root, dev string) (fd int, flags uint32, err error) {
	// /dev as a whole: it is a read-only mount holding only the harmless
	// device files and /dev/shm, so one rule gives what a rule for each
	// would, with fewer calls at every reset.
	fd, flags, err = landlockConfig.NewRulesetFD(
		landlock.RODirs(root),
		landlock.RWDirs(root+"/tmp", root+"/work", dev),
	)
	if err != nil {
		return -1, 0, fmt.Errorf("landlock ruleset: %w", err)
	}
	return fd, flags, nil
}

// LandlockABI returns the kernel's Landlock ABI version, 0 without Landlock.
func LandlockABI() int {
	v, err := ll.LandlockGetABIVersion()
	if err != nil {
		return 0
	}
	return v
}
