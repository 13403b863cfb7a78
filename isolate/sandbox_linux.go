package isolate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/corralhq/corral/jobs"
)

// Sandbox is one running sandbox: an init inside its namespaces, ready to
// run processes one at a time. It is not safe for concurrent Run calls.
type Sandbox struct {
	cfg   Config
	cg    *cgroup
	cmd   *exec.Cmd
	conn  *net.UnixConn
	stage string
	disk  int64

	mu   sync.Mutex // serialises use of the control socket's request side
	rbuf []byte     // receive buffer of recv
	// lastCounters are the job cgroup's counters the next process counts
	// from: read after the last run or reset, before the init prepared
	// that process (nil: read them afresh).
	lastCounters *cgroupCounters
	// lastProfile is the seccomp profile of the last process, which the
	// process prepared after a reset is for ("": default).
	lastProfile SeccompProfile
	// resetting: the last process was Last, and the init resets the
	// sandbox on its own; Reset waits for its reply.
	resetting bool
	// emptyStdin is the stdin of every process given none: a sealed,
	// empty, read-only memfd made once (-1: not yet).
	emptyStdin int
	// pipes are the next process's output pipes, made after a reset
	// (nil: Run makes them); spent, the read ends of those used since,
	// closed at the next reset.
	pipes *outputPipes
	spent []*os.File
	// broken is set when the init is gone or out of step (fail), also
	// from a run's reply reader while the run's loop may kill: its own
	// lock.
	brokenMu sync.Mutex
	broken   error
	resets   ResetStats
	done     chan struct{}
	closed   bool
	// netns is the init's network namespace, opened as soon as the init
	// started (its pid cannot have been reused yet): NetNSPath names it
	// through this fd, not through a pid.
	netns *os.File
}

// New starts a sandbox: its cgroup, its init and the init's mounts. The cost
// of New is the cold start that a pool pays ahead of jobs.
func New(ctx context.Context, cfg Config) (_ *Sandbox, err error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	for _, p := range append([]string{cfg.RunDir}, cfg.Lower...) {
		if err := checkReachable(p); err != nil {
			return nil, err
		}
	}
	exe, err := initExecutable()
	if err != nil {
		return nil, err
	}
	s := &Sandbox{cfg: cfg, disk: cfg.DiskBytes, done: make(chan struct{}), emptyStdin: -1}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	s.stage = filepath.Join(cfg.RunDir, cfg.ID)
	if err := os.Mkdir(s.stage, 0o755); err != nil {
		return nil, fmt.Errorf("isolate: stage directory: %w", err)
	}
	s.cg, err = newCgroup(cfg.CgroupParent+"/"+cfg.ID, cgroupResources{
		MemoryBytes: jobs.DefaultLimits().MemoryBytes,
		Pids:        jobs.DefaultLimits().Pids,
		CPUPeriodUs: cpuPeriodUs,
		CPUQuotaUs:  cpuQuotaUs(cfg.CPUs),
	})
	if err != nil {
		return nil, fmt.Errorf("isolate: cgroup: %w", err)
	}
	procs, err := s.cg.procsFiles()
	if err != nil {
		return nil, fmt.Errorf("isolate: cgroup: %w", err)
	}
	defer func() {
		for _, f := range procs {
			f.Close()
		}
	}()
	// On v2, job processes are cloned straight into the job cgroup
	// (CLONE_INTO_CGROUP); the procs file stays for kernels without it.
	cgDir, err := s.cg.dirFile()
	if err != nil {
		return nil, fmt.Errorf("isolate: cgroup: %w", err)
	}
	if cgDir != nil {
		defer cgDir.Close()
	}
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("isolate: socketpair: %w", err)
	}
	// Both ends send messages up to maxMessage (the init's collect reply
	// may be large): a SEQPACKET message must fit the send buffer whole.
	_ = unix.SetsockoptInt(pair[0], unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, maxMessage)
	_ = unix.SetsockoptInt(pair[1], unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, maxMessage)
	parentEnd := os.NewFile(uintptr(pair[0]), "control")
	initEnd := os.NewFile(uintptr(pair[1]), "control-init")
	defer initEnd.Close()
	c, err := net.FileConn(parentEnd)
	parentEnd.Close()
	if err != nil {
		return nil, fmt.Errorf("isolate: control socket: %w", err)
	}
	s.conn = c.(*net.UnixConn)

	extra := append([]*os.File{exe, initEnd}, procs...)
	if cgDir != nil {
		extra = append(extra, cgDir) // right after the procs files
	}
	// The memory usage file lets the init read the baseline of the process
	// it prepares after a reset itself (see Reset).
	if s.cg.usage != nil {
		extra = append(extra, s.cg.usage)
	}
	// The counter files let the init read the counters of each process
	// in its exited reply (see Run).
	ctrFiles, ctrSpecs := s.cg.counterFiles()
	extra = append(extra, ctrFiles...)
	s.cmd = &exec.Cmd{
		// The memfd is fd 3 in the child when it execs.
		Path:       fmt.Sprintf("/proc/self/fd/%d", initExeFd),
		Args:       []string{initArg0},
		Env:        []string{"GOMAXPROCS=1", "GODEBUG=madvdontneed=1"},
		ExtraFiles: extra,
		Stderr:     cfg.Log,
		SysProcAttr: &syscall.SysProcAttr{
			// Each job process also gets its own mount, IPC and (rooted at
			// the job cgroup) cgroup namespace from the init.
			Cloneflags: unix.CLONE_NEWUSER | unix.CLONE_NEWPID | unix.CLONE_NEWNS |
				unix.CLONE_NEWUTS | unix.CLONE_NEWIPC | unix.CLONE_NEWNET | unix.CLONE_NEWCGROUP,
			UidMappings:                []syscall.SysProcIDMap{{ContainerID: 0, HostID: int(cfg.HostUID), Size: IDsPerSandbox}},
			GidMappings:                []syscall.SysProcIDMap{{ContainerID: 0, HostID: int(cfg.HostUID), Size: IDsPerSandbox}},
			GidMappingsEnableSetgroups: true,
			// Become uid 0 of the new user namespace (host uid HostUID)
			// before exec, so the init keeps its capabilities there.
			Credential: &syscall.Credential{Uid: 0, Gid: 0},
			Pdeathsig:  unix.SIGKILL,
		},
	}
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("isolate: start init: %w", err)
	}
	go func() {
		_ = s.cmd.Wait()
		close(s.done)
	}()
	if s.netns, err = os.Open(fmt.Sprintf("/proc/%d/ns/net", s.cmd.Process.Pid)); err != nil {
		return nil, fmt.Errorf("isolate: the init's network namespace: %w", err)
	}
	progs := make(map[SeccompProfile][]unix.SockFilter)
	var sysv, inet []SeccompProfile
	for _, p := range []SeccompProfile{SeccompDefault, SeccompStrict} {
		if progs[p], err = seccompProgram(p); err != nil {
			return nil, err
		}
		allows, err := seccompAllowsSysV(p)
		if err != nil {
			return nil, err
		}
		if allows {
			sysv = append(sysv, p)
		}
		if allows, err = seccompAllowsInet(p); err != nil {
			return nil, err
		} else if allows {
			inet = append(inet, p)
		}
	}
	// The zygote's listener answers with SECCOMP_USER_NOTIF_FLAG_CONTINUE
	// (Linux 5.5). It hears of System V calls unless every reset makes a
	// new IPC namespace anyway (FreshLayers), and of sockets unless the
	// jobs keep the init's network namespace.
	var zygoteProg []unix.SockFilter
	if kernelAtLeast(5, 5) {
		if zygoteProg, err = seccompZygoteProgram(!cfg.FreshLayers, !cfg.KeepNetwork); err != nil {
			return nil, err
		}
	}
	err = s.send(&message{Kind: msgConfig, Config: &initConfig{
		Seccomp:       progs,
		Lower:         cfg.Lower,
		Stage:         s.stage,
		DiskBytes:     cfg.DiskBytes,
		Hostname:      cfg.Hostname,
		ProcsFiles:    len(procs),
		CgroupDir:     cgDir != nil,
		UsageFile:     s.cg.usage != nil,
		Counters:      ctrSpecs,
		CounterFiles:  len(ctrFiles),
		UID:           JobUID,
		GID:           JobGID,
		EtcFiles:      cfg.EtcFiles,
		FreshLayers:   cfg.FreshLayers,
		SeccompZygote: zygoteProg,
		SysV:          sysv,
		Inet:          inet,
		OwnNetwork:    !cfg.KeepNetwork,
	}}, nil)
	if err != nil {
		return nil, err
	}
	if _, err := s.expect(ctx, msgReady); err != nil {
		return nil, err
	}
	base, err := s.cg.counters()
	if err != nil {
		return nil, fmt.Errorf("isolate: cgroup counters: %w", err)
	}
	if err := s.prepare(base); err != nil {
		return nil, err
	}
	s.preparePipes()
	return s, nil
}

// prepare asks the init to prepare the next process, for the last
// process's profile; base are the job cgroup's counters that process
// counts from, read before the request, so that the prepared process's
// setup is charged to it, as if it were made on request.
func (s *Sandbox) prepare(base cgroupCounters) error {
	s.lastCounters = &base
	return s.sendPacket(msgPark, append(append([]byte{pktPark}, s.nextProfile()...), 0), nil)
}

// nextProfile is the seccomp profile a process prepared now is for: the
// last process's, default before the first.
func (s *Sandbox) nextProfile() SeccompProfile {
	if s.lastProfile == "" {
		return SeccompDefault
	}
	return s.lastProfile
}

// cpuPeriodUs is the CFS period: short, so that one job's quota debt
// delays the next one by little (KERNEL-NOTES).
const cpuPeriodUs = 10000

// cpuQuotaUs is the CFS quota per period for cpus CPUs, rounded up to a
// whole microsecond, the same wherever it is set.
func cpuQuotaUs(cpus float64) int64 { return int64(math.Ceil(cpus * cpuPeriodUs)) }

// ID returns the sandbox's id.
func (s *Sandbox) ID() string { return s.cfg.ID }

// NetNSPath is the host path of the sandbox's network namespace (its init's),
// for wiring a network into it from the host: an fd of this process kept
// from New, so it names that namespace however long the sandbox lives. It
// has only loopback until someone does.
func (s *Sandbox) NetNSPath() string {
	return fmt.Sprintf("/proc/self/fd/%d", s.netns.Fd())
}

// Alive reports whether the sandbox's init still runs and nothing broke
// it: an idle sandbox whose init died is told apart before a job gets it.
func (s *Sandbox) Alive() bool {
	select {
	case <-s.done:
		return false
	default:
	}
	return s.brokenErr() == nil
}

func (s *Sandbox) send(m *message, fds []int) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	if _, _, err := s.conn.WriteMsgUnix(b, oob, nil); err != nil {
		return s.fail(fmt.Errorf("isolate: send %s: %w", m.Kind, err))
	}
	return nil
}

// sendPacket sends a binary packet (see encodeSpawn) with fds attached.
func (s *Sandbox) sendPacket(what string, b []byte, fds []int) error {
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	if _, _, err := s.conn.WriteMsgUnix(b, oob, nil); err != nil {
		return s.fail(fmt.Errorf("isolate: send %s: %w", what, err))
	}
	return nil
}

func (s *Sandbox) fail(err error) error {
	s.brokenMu.Lock()
	defer s.brokenMu.Unlock()
	if s.broken == nil {
		s.broken = err
	}
	return err
}

// brokenErr is what made the sandbox unusable, or nil.
func (s *Sandbox) brokenErr() error {
	s.brokenMu.Lock()
	defer s.brokenMu.Unlock()
	return s.broken
}

// recvFds reads the init's next message and the fds it carries.
func (s *Sandbox) recvFds() (*message, []int, error) {
	buf := make([]byte, 1<<20)
	oob := make([]byte, unix.CmsgSpace(4*maxCollectFds))
	n, oobn, flags, _, err := s.conn.ReadMsgUnix(buf, oob)
	if err != nil || n == 0 {
		if err == nil {
			err = ErrClosed
		}
		return nil, nil, s.fail(fmt.Errorf("isolate: init gone: %w", err))
	}
	var fds []int
	if oobn > 0 {
		scms, err := unix.ParseSocketControlMessage(oob[:oobn])
		if err != nil {
			return nil, nil, s.fail(err)
		}
		for _, scm := range scms {
			got, err := unix.ParseUnixRights(&scm)
			if err != nil {
				closeAll(fds)
				return nil, nil, s.fail(err)
			}
			fds = append(fds, got...)
		}
	}
	if flags&(unix.MSG_TRUNC|unix.MSG_CTRUNC) != 0 {
		closeAll(fds)
		return nil, nil, s.fail(fmt.Errorf("isolate: message from init cut (flags %#x)", flags))
	}
	m := new(message)
	if err := json.Unmarshal(buf[:n], m); err != nil {
		closeAll(fds)
		return nil, nil, s.fail(fmt.Errorf("isolate: bad message from init: %w", err))
	}
	return m, fds, nil
}

// recv reads the init's next message.
func (s *Sandbox) recv() (*message, error) {
	// One reader at a time (requests are serialised), so one buffer.
	if s.rbuf == nil {
		s.rbuf = make([]byte, 64<<10)
	}
	buf := s.rbuf
	n, err := s.conn.Read(buf)
	if err != nil || n == 0 {
		if err == nil {
			err = ErrClosed
		}
		return nil, s.fail(fmt.Errorf("isolate: init gone: %w", err))
	}
	if m, ok := decodeReply(buf[:n]); ok {
		return m, nil
	}
	m := new(message)
	if err := json.Unmarshal(buf[:n], m); err != nil {
		return nil, s.fail(fmt.Errorf("isolate: bad message from init: %w", err))
	}
	return m, nil
}

// expect reads one message, turning an error message into an error.
func (s *Sandbox) expect(ctx context.Context, kind string) (*message, error) {
	if dl, ok := ctx.Deadline(); ok {
		_ = s.conn.SetReadDeadline(dl)
		defer s.conn.SetReadDeadline(time.Time{})
	}
	m, err := s.recv()
	if err != nil {
		return nil, err
	}
	if m.Kind == msgError && m.Err != nil {
		return nil, m.Err
	}
	if m.Kind != kind {
		return nil, s.fail(fmt.Errorf("isolate: init sent %q, want %q", m.Kind, kind))
	}
	return m, nil
}

// Reset makes the sandbox as new for the next job: every process is gone
// already (each Run ends with the sandbox empty); the writable layer, /tmp,
// /work and /dev/shm are replaced by empty ones of diskBytes (0: the
// sandbox's default).
func (s *Sandbox) Reset(ctx context.Context, diskBytes int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.brokenErr(); err != nil {
		return err
	}
	if diskBytes <= 0 {
		diskBytes = s.cfg.DiskBytes
	}
	// After a Last process the init has reset the sandbox on its own, to
	// Config.DiskBytes: wait for it, and reset again only for another size.
	auto := s.resetting
	var ready *message
	if auto {
		s.resetting = false
		m, err := s.expect(ctx, msgReady)
		if err != nil {
			return s.fail(err)
		}
		ready = m
	}
	if !auto || diskBytes != s.cfg.DiskBytes {
		if err := s.sendPacket(msgReset, encodeReset(diskBytes, s.nextProfile()), nil); err != nil {
			return err
		}
		m, err := s.expect(ctx, msgReady)
		if err != nil {
			return s.fail(err)
		}
		ready = m
	}
	s.disk = diskBytes
	s.resets.Resets++
	if r := ready.Ready; r != nil && r.Kept {
		s.resets.Kept++
	}
	// The next process counts from the last one's closing counters, but
	// with the memory the reset freed: read again, by the init before it
	// prepared that process (the ready reply says so), else here, before
	// asking for it.
	var base cgroupCounters
	var err error
	if last := s.lastCounters; last != nil {
		base = *last
	} else if base, err = s.cg.counters(); err != nil {
		return s.fail(fmt.Errorf("isolate: cgroup counters: %w", err))
	}
	if r := ready.Ready; r != nil && r.Parked {
		base.MemoryUsage = r.MemoryUsage
		s.lastCounters = &base
		s.preparePipes()
		return nil
	}
	if base.MemoryUsage, err = s.cg.memoryUsage(); err != nil {
		s.lastCounters = nil
		return s.fail(fmt.Errorf("isolate: cgroup counters: %w", err))
	}
	if err := s.prepare(base); err != nil {
		return err
	}
	s.preparePipes()
	return nil
}

// ResetStats returns the sandbox's reset counts.
func (s *Sandbox) ResetStats() ResetStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.resets
}

// Close kills everything in the sandbox and removes its cgroup and stage
// directory. It is idempotent.
func (s *Sandbox) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	s.fail(ErrClosed)
	var errs []error
	if s.conn != nil {
		s.conn.Close() // the init exits; the kernel kills its pid namespace
	}
	if s.emptyStdin >= 0 {
		unix.Close(s.emptyStdin)
		s.emptyStdin = -1
	}
	if s.pipes != nil {
		s.pipes.close()
		s.pipes = nil
	}
	s.closeSpent()
	if s.cmd != nil && s.cmd.Process != nil {
		select {
		case <-s.done:
		case <-time.After(2 * time.Second):
			_ = s.cmd.Process.Kill()
			<-s.done
		}
	}
	if s.cg != nil {
		if err := s.cg.destroy(); err != nil {
			errs = append(errs, err)
		} else {
			// The last sandbox out removes the empty corral parents.
			removeCgroupParent(s.cfg.CgroupParent + "/" + s.cfg.ID)
		}
	}
	if s.stage != "" {
		if err := os.Remove(s.stage); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if s.netns != nil {
		s.netns.Close()
	}
	return errors.Join(errs...)
}

// numCPU bounds how fast cpu time can grow per wall second.
var numCPU = runtime.NumCPU()

// kernelAtLeast reports whether the running kernel's release is at least
// major.minor.
func kernelAtLeast(major, minor int) bool {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return false
	}
	var ma, mi int
	if _, err := fmt.Sscanf(unix.ByteSliceToString(u.Release[:]), "%d.%d", &ma, &mi); err != nil {
		return false
	}
	return ma > major || ma == major && mi >= minor
}
