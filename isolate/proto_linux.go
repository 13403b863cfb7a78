package isolate

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Message kinds of the parent↔init protocol (see the package doc).
const (
	msgConfig  = "config"
	msgReady   = "ready"
	msgError   = "error"
	msgSpawn   = "spawn"
	msgKill    = "kill"
	msgPark    = "park"
	msgExited  = "exited"
	msgReset   = "reset" // a binary reset packet
	msgPut     = "put"
	msgCollect = "collect"
	msgFiles   = "files"
)

// message is one packet of the parent↔init protocol.
type message struct {
	Kind   string       `json:"kind"`
	Config *initConfig  `json:"config,omitempty"`
	Put    *putReq      `json:"put,omitempty"`
	Coll   *collectReq  `json:"collect,omitempty"`
	Files  []fileEntry  `json:"files,omitempty"`
	Exit   *exitReport  `json:"exit,omitempty"`
	Ready  *readyReport `json:"-"`
	Err    *InitError   `json:"err,omitempty"`
}

// initConfig is what the init needs to build the sandbox.
type initConfig struct {
	Lower      []string `json:"lower"`       // host paths of the image layers, top first
	Stage      string   `json:"stage"`       // host directory to mount the stage on
	DiskBytes  int64    `json:"disk_bytes"`  // size of the writable layer
	Hostname   string   `json:"hostname"`    // the sandbox's hostname
	ProcsFiles int      `json:"procs_files"` // number of cgroup.procs fds from fd 5 on
	CgroupDir  bool     `json:"cgroup_dir"`  // the job cgroup's v2 directory follows them (CLONE_INTO_CGROUP)
	UsageFile  bool     `json:"usage_file"`  // then the job cgroup's memory usage file (read-only)
	// Counters are read by the init for each exited reply, from
	// CounterFiles files that follow the usage file.
	Counters     []counterSpec `json:"counters,omitempty"`
	CounterFiles int           `json:"counter_files,omitempty"`
	UID          uint32        `json:"uid"` // the job's uid inside the sandbox
	GID          uint32        `json:"gid"` // the job's gid inside the sandbox
	// EtcFiles are written into /etc of every writable layer.
	EtcFiles map[string][]byte `json:"etc_files,omitempty"`
	// FreshLayers: no reset keeps a layer (Config.FreshLayers).
	FreshLayers bool `json:"fresh_layers,omitempty"`
	// SeccompZygote is the default profile as the zygote loads it, with a
	// listener that hears of System V calls (seccompZygoteProgram); SysV
	// names the profiles that allow those calls at all.
	SeccompZygote []unix.SockFilter `json:"seccomp_zygote,omitempty"`
	SysV          []SeccompProfile  `json:"sysv,omitempty"`
	// Inet names the profiles that allow AF_INET or AF_INET6 sockets;
	// OwnNetwork lets the layers have network namespaces of their own
	// (not Config.KeepNetwork), and the zygote's listener then hears of
	// those sockets too.
	Inet       []SeccompProfile `json:"inet,omitempty"`
	OwnNetwork bool             `json:"own_network,omitempty"`
	// Seccomp holds each profile's BPF program, compiled once by the
	// parent: the init never links libseccomp's work into a job's path.
	Seccomp map[SeccompProfile][]unix.SockFilter `json:"seccomp"`
}

// spawnReq asks the init to start a job process. It travels as a binary
// spawn packet (encodeSpawn) carrying the stdin, stdout and stderr fds.
type spawnReq struct {
	Argv    []string
	Env     []string
	Cwd     string
	Rlimits []rlimit
	Seccomp SeccompProfile
	Last    bool // the init resets the sandbox once the process is done
}

// errResetting is a request between a Last process and the Reset that
// follows it.
var errResetting = errors.New("isolate: the sandbox is resetting after its Last process: call Reset first")

type rlimit struct {
	Resource int
	Cur, Max uint64
}

// putReq writes one file below /work from the memfd the message carries.
type putReq struct {
	Path string `json:"path"` // relative to /work, clean, no ".."
	Mode uint32 `json:"mode"` // permission bits
}

// collectReq asks for the regular files below /work matching patterns.
type collectReq struct {
	Patterns []string `json:"patterns"`
	MaxFiles int      `json:"max_files"`
}

// fileEntry is one collected file; the reply carries an fd for each entry
// without Skipped, in order.
type fileEntry struct {
	Path    string `json:"path"`
	Size    int64  `json:"size"`
	Skipped string `json:"skipped,omitempty"` // why it was not collected
}

// readyReport is what a binary ready reply (after a reset) says: whether
// the reset kept the layer, and whether the init prepared the next
// process, after reading the job cgroup's memory usage, which that process
// counts from.
type readyReport struct {
	Kept        bool
	Parked      bool
	MemoryUsage int64
}

// exitReport is how a job process ended.
type exitReport struct {
	WaitStatus uint32 `json:"wait_status"` // syscall.WaitStatus of the main process
	WallNs     int64  `json:"wall_ns"`     // clone to exit of the main process
	// Counters are the job cgroup's counters once everything of the
	// process was reaped, read by the init (nil: it could not).
	Counters *cgroupCounters `json:"-"`
}

// counterSpec is a counter the init reads for the exited reply (struct
// corral_counter): the number in file File (an index among the counter
// files), or the value of its line "Key N", times Scale, for field Field
// of cgroupCounters (counterFields order).
type counterSpec struct {
	Field int    `json:"field"`
	File  int    `json:"file"`
	Key   string `json:"key,omitempty"`
	Scale int64  `json:"scale"`
}

// The fields of cgroupCounters in an exited reply, in order.
const (
	ctrCPU = iota
	ctrUser
	ctrSys
	ctrMemoryPeak
	ctrMemoryUsage
	ctrOOMKills
	ctrPidsMax
	nCounters
)

// countersOf returns the counters v holds in the exited reply's order.
func countersOf(v [nCounters]int64) cgroupCounters {
	return cgroupCounters{
		CPUNs: v[ctrCPU], UserNs: v[ctrUser], SysNs: v[ctrSys],
		MemoryPeak: v[ctrMemoryPeak], MemoryUsage: v[ctrMemoryUsage],
		OOMKills: v[ctrOOMKills], PidsMax: v[ctrPidsMax],
	}
}

// exitedReplySize is sizeof(struct corral_exited_reply).
const exitedReplySize = 16 + nCounters*8

// exitedCounters, in an exited reply's flags: the counters are there.
const exitedCounters = 1

// InitError is a failure inside the sandbox init or in a job's child before
// exec, naming the step that failed.
type InitError struct {
	Step  string        `json:"step"`
	Errno syscall.Errno `json:"errno,omitempty"`
	Msg   string        `json:"msg,omitempty"`
}

func (e *InitError) Error() string {
	switch {
	case e.Errno != 0 && e.Msg != "":
		return fmt.Sprintf("sandbox init: %s: %s: %v", e.Step, e.Msg, e.Errno)
	case e.Errno != 0:
		return fmt.Sprintf("sandbox init: %s: %v", e.Step, e.Errno)
	default:
		return fmt.Sprintf("sandbox init: %s: %s", e.Step, e.Msg)
	}
}

func (e *InitError) Unwrap() error {
	if e.Errno == 0 {
		return nil
	}
	return e.Errno
}

// Binary packets (struct corral_spawn_pkt in spawn_linux.h): the requests
// on every job's path skip JSON, and the init answers them without leaving
// C (loop_linux.c).
const (
	pktSpawn = 1
	pktKill  = 2
	pktPark  = 3
	// spawnResetAfter, in a spawn packet's flags byte: once the process
	// is done (exited, or failed to start), the init resets the sandbox to
	// its configured size and answers with a ready reply or an error.
	spawnResetAfter = 1
	// pktReset asks for a fresh writable layer: struct corral_reset_pkt,
	// the tag then the layer's size in bytes at offset 8, then the seccomp
	// profile to prepare the next process for, NUL-terminated.
	pktReset     = 4
	resetPktSize = 16
	// readyParked, in a ready reply's flags: the next process is prepared;
	// readyKept: the reset kept the layer.
	readyParked = 1
	readyKept   = 2
	// spawnPktHeader is sizeof(struct corral_spawn_pkt).
	spawnPktHeader = 16 + maxRlimits*24
	maxRlimits     = 8
)

// The binary replies of the C loop (struct corral_exited_reply and
// struct corral_ready_reply in spawn_linux.h).
const (
	replyExited = 0x82
	replyReady  = 0x83
)

// decodeReply decodes a binary reply; ok is false for anything else
// (JSON messages start with '{').
func decodeReply(b []byte) (m *message, ok bool) {
	ne := binary.NativeEndian
	switch {
	case len(b) == exitedReplySize && b[0] == replyExited:
		rep := &exitReport{
			WaitStatus: ne.Uint32(b[4:]),
			WallNs:     int64(ne.Uint64(b[8:])),
		}
		if b[1]&exitedCounters != 0 {
			var v [nCounters]int64
			for i := range v {
				v[i] = int64(ne.Uint64(b[16+8*i:]))
			}
			c := countersOf(v)
			rep.Counters = &c
		}
		return &message{Kind: msgExited, Exit: rep}, true
	case len(b) == 16 && b[0] == replyReady:
		return &message{Kind: msgReady, Ready: &readyReport{
			Kept:        b[1]&readyKept != 0,
			Parked:      b[1]&readyParked != 0,
			MemoryUsage: int64(ne.Uint64(b[8:])),
		}}, true
	}
	return nil, false
}

// encodeReset encodes a reset packet for a writable layer of diskBytes,
// after which the init prepares the next process for profile.
func encodeReset(diskBytes int64, profile SeccompProfile) []byte {
	b := make([]byte, resetPktSize, resetPktSize+len(profile)+1)
	b[0] = pktReset
	binary.NativeEndian.PutUint64(b[8:], uint64(diskBytes))
	return append(append(b, profile...), 0)
}

// encodeSpawn encodes a spawn request as a spawn packet.
func encodeSpawn(req *spawnReq) ([]byte, error) {
	if len(req.Rlimits) > maxRlimits {
		return nil, fmt.Errorf("isolate: %d rlimits, at most %d", len(req.Rlimits), maxRlimits)
	}
	if len(req.Argv) == 0 {
		return nil, errors.New("isolate: empty argv")
	}
	size := spawnPktHeader + len(req.Seccomp) + len(req.Cwd) + 2
	for _, v := range req.Argv {
		size += len(v) + 1
	}
	for _, v := range req.Env {
		size += len(v) + 1
	}
	if size > maxMessage {
		return nil, fmt.Errorf("isolate: command and environment take %d bytes, at most %d", size, maxMessage-spawnPktHeader)
	}
	b := make([]byte, spawnPktHeader, size)
	b[0] = pktSpawn
	if req.Last {
		b[1] = spawnResetAfter
	}
	ne := binary.NativeEndian
	ne.PutUint32(b[4:], uint32(len(req.Rlimits)))
	ne.PutUint32(b[8:], uint32(len(req.Argv)))
	ne.PutUint32(b[12:], uint32(len(req.Env)))
	for i, r := range req.Rlimits {
		off := 16 + i*24
		ne.PutUint32(b[off:], uint32(int32(r.Resource)))
		ne.PutUint64(b[off+8:], r.Cur)
		ne.PutUint64(b[off+16:], r.Max)
	}
	add := func(what, v string) error {
		if strings.IndexByte(v, 0) >= 0 {
			return fmt.Errorf("isolate: %s %q contains a NUL byte", what, v)
		}
		b = append(append(b, v...), 0)
		return nil
	}
	if err := add("seccomp profile", string(req.Seccomp)); err != nil {
		return nil, err
	}
	if err := add("working directory", req.Cwd); err != nil {
		return nil, err
	}
	for _, v := range req.Argv {
		if err := add("argument", v); err != nil {
			return nil, err
		}
	}
	for _, v := range req.Env {
		if err := add("environment entry", v); err != nil {
			return nil, err
		}
	}
	return b, nil
}
