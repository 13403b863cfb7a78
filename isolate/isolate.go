package isolate

import (
	"errors"
	"os"
)

// initArg0 is the argv[0] the init is started with.
const initArg0 = "corral-init"

// Ids inside the sandbox.
const (
	// JobUID and JobGID are the credentials jobs run with inside the
	// sandbox's user namespace (never 0).
	JobUID = 1000
	JobGID = 1000
	// IDsPerSandbox is the size of each sandbox's uid and gid range on the
	// host: sandbox uid N is host uid HostUID+N.
	IDsPerSandbox = 65536
	// DefaultUIDBase is the first host uid of slot 0's range. Slot k uses
	// DefaultUIDBase + k*IDsPerSandbox. It is far above the ranges that
	// /etc/subuid and distributions hand out.
	DefaultUIDBase = 0x40000000
)

var (
	// ErrUnsupported is returned where sandboxes cannot run (not Linux).
	ErrUnsupported = errors.New("isolate: sandboxes need Linux")
	// ErrClosed is returned by a sandbox that was closed or whose init died.
	ErrClosed = errors.New("isolate: sandbox closed")
	// ErrBusy is returned when a process is started while another runs.
	ErrBusy = errors.New("isolate: sandbox busy")
)

// IsInit reports whether this process was started as a sandbox init. main
// calls it first and then RunInit, which never returns.
func IsInit() bool {
	return len(os.Args) > 0 && os.Args[0] == initArg0
}

// ResetStats counts a sandbox's resets since New.
type ResetStats struct {
	Resets uint64 // Reset calls that succeeded
	Kept   uint64 // of those, the ones that kept the layer (Config.FreshLayers)
}
