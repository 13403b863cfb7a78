package isolate

import (
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

// The rights of a job's two kinds of rule, as go-landlock's RODirs and
// RWDirs grant them: read and execute everywhere in the job root; write too
// in /tmp, /work and /dev (a read-only mount holding only the harmless
// device files and /dev/shm, so one rule gives what a rule for each would).
const (
	landlockRO = ll.AccessFSExecute | ll.AccessFSReadFile | ll.AccessFSReadDir
	landlockRW = landlockRO | ll.AccessFSWriteFile | ll.AccessFSRemoveDir | ll.AccessFSRemoveFile |
		ll.AccessFSMakeChar | ll.AccessFSMakeDir | ll.AccessFSMakeReg | ll.AccessFSMakeSock |
		ll.AccessFSMakeFifo | ll.AccessFSMakeBlock | ll.AccessFSMakeSym | ll.AccessFSTruncate
)

// landlockABIs are go-landlock's configurations of each ABI version, V1
// first: what a kernel of that version supports.
var landlockABIs = []landlock.Config{
	landlock.V1, landlock.V2, landlock.V3, landlock.V4, landlock.V5,
	landlock.V6, landlock.V7, landlock.V8, landlock.V9, landlock.V10,
}

// landlockLayer is what the init's C reset (reset_linux.c) needs to make
// each writable layer's ruleset: landlockConfig downgraded to the kernel's
// ABI abi (best effort, as go-landlock does it), and the rules' rights
// within it. Rules hold the inodes of the current layer, so the ruleset is
// made again at each reset, from these.
type landlockLayer struct {
	abi                       int // 0: no Landlock, no ruleset
	handledFS, scoped, ro, rw uint64
}

func newLandlockLayer(abi int) landlockLayer {
	if abi <= 0 {
		return landlockLayer{}
	}
	v := landlockABIs[min(abi, len(landlockABIs))-1]
	handled := uint64(landlockConfig.HandledAccessFS) & uint64(v.HandledAccessFS)
	return landlockLayer{
		abi:       abi,
		handledFS: handled,
		scoped:    uint64(landlockConfig.Scoped) & uint64(v.Scoped),
		ro:        landlockRO & handled,
		rw:        landlockRW & handled,
	}
}

// LandlockABI returns the kernel's Landlock ABI version, 0 without Landlock.
func LandlockABI() int {
	v, err := ll.LandlockGetABIVersion()
	if err != nil {
		return 0
	}
	return v
}
