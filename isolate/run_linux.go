package isolate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/corralhq/corral/jobs"
)

// why the parent killed a process.
type killReason int

const (
	killNone killReason = iota
	killOutput
	killWall
	killCPU
	killCancel
)

// Run runs one process to completion and reports it as a step result: its
// status, exit code or signal, output and usage. A returned error means the
// sandbox itself failed (the caller should destroy it); everything the
// process did, limit breaches included, is in the result.
func (s *Sandbox) Run(ctx context.Context, p Process) (*jobs.StepResult, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.brokenErr(); err != nil {
		return nil, err
	}
	if len(p.Argv) == 0 {
		return nil, errors.New("isolate: empty argv")
	}
	if p.More && p.Last {
		return nil, errors.New("isolate: a process cannot be both More and Last")
	}
	if s.resetting {
		return nil, errResetting
	}
	lim := p.Limits.WithDefaults(jobs.DefaultLimits())
	if p.Cwd == "" {
		p.Cwd = "/work"
	}
	profile, err := ParseSeccompProfile(string(p.Seccomp))
	if err != nil {
		return nil, err
	}
	if err := s.cg.set(cgroupResources{
		MemoryBytes: lim.MemoryBytes,
		Pids:        lim.Pids,
		CPUPeriodUs: cpuPeriodUs,
		CPUQuotaUs:  cpuQuotaUs(s.cfg.CPUs),
	}); err != nil {
		if r := belowUsage(s.cg, lim.MemoryBytes); r != nil {
			return r, nil
		}
		return nil, s.fail(fmt.Errorf("isolate: cgroup limits: %w", err))
	}
	// v2 kernels before 6.12 cannot reset memory.peak: the peak is then
	// the sandbox's, not the process's.
	if err := s.cg.resetPeak(); err != nil && !errors.Is(err, errors.ErrUnsupported) {
		return nil, s.fail(fmt.Errorf("isolate: cgroup peak: %w", err))
	}
	// Between two runs no process of a job is in the job cgroup (a run
	// ends with every process reaped, and the init is not in it): the
	// counters read after the last run or reset, before the init prepared
	// this process, are this one's opening ones (see prepare).
	var before cgroupCounters
	if last := s.lastCounters; last != nil {
		before = *last
	} else if before, err = s.cg.counters(); err != nil {
		return nil, s.fail(fmt.Errorf("isolate: cgroup counters: %w", err))
	}
	s.lastCounters = nil
	s.lastProfile = profile

	// Pipes and memfds belong to their creator: give them to the job's uid
	// so that reopening /dev/stdout (/proc/self/fd/1) works as it does on
	// a host.
	uid, gid := int(s.cfg.HostUID)+JobUID, int(s.cfg.HostUID)+JobGID
	stdin, closeStdin, err := s.stdinFd(p.Stdin, uid, gid)
	if err != nil {
		return nil, err
	}
	defer closeStdin()
	// Many processes without a reset between them: close the spent pipes
	// here rather than hold them all.
	if len(s.spent) >= 16 {
		s.closeSpent()
	}
	// The output pipes made after the last reset, else new ones.
	pipes := s.pipes
	s.pipes = nil
	if pipes == nil {
		if pipes, err = newOutputPipes(uid, gid); err != nil {
			return nil, err
		}
	}
	outR, outW, errR, errW := pipes.outR, pipes.outW, pipes.errR, pipes.errW
	// The read ends are closed after the result is out (spent, see
	// preparePipes): closing a pipe and leaving Go's poller cost 45 µs.
	defer func() { s.spent = append(s.spent, outR, errR) }()
	pkt, err := encodeSpawn(&spawnReq{
		Argv:    p.Argv,
		Env:     p.Env,
		Cwd:     p.Cwd,
		Rlimits: rlimitsFor(lim),
		Seccomp: profile,
		Last:    p.Last,
	})
	if err != nil {
		unix.Close(outW)
		unix.Close(errW)
		return nil, err
	}
	err = s.sendPacket(msgSpawn, pkt, []int{stdin, outW, errW})
	// After a Last process, exited or not started, the init resets the
	// sandbox (a failed send breaks the sandbox anyway).
	s.resetting = p.Last
	unix.Close(outW)
	unix.Close(errW)
	if err != nil {
		return nil, err
	}
	// No reply comes until the process is done: the init answers a spawn
	// with its exit, or with the error that kept it from starting. So the
	// output is read and the limits watched from now on.
	res := &jobs.StepResult{}
	// From here on the process runs: watch its output, its wall and cpu
	// time, and the caller's context.
	var (
		reason   killReason
		once     sync.Once
		killErr  error
		overflow = make(chan struct{}, 2)
	)
	kill := func(r killReason) {
		once.Do(func() {
			reason = r
			killErr = s.sendPacket(msgKill, []byte{pktKill}, nil)
		})
	}
	var wg sync.WaitGroup
	var stdout, stderr capture
	for _, c := range []struct {
		cap  *capture
		r    *os.File
		name string
	}{{&stdout, outR, "stdout"}, {&stderr, errR, "stderr"}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.cap.drain(c.r, lim.OutputBytes, c.name, p.Output, overflow)
		}()
	}
	exited := make(chan exitResult, 1)
	go func() {
		var r exitResult
		m, err := s.recv()
		switch {
		case err != nil:
			r.err = err
		case m.Kind == msgError && m.Err != nil:
			r.startErr = m.Err
		case m.Kind != msgExited || m.Exit == nil:
			r.err = s.fail(fmt.Errorf("isolate: init sent %q, want %q", m.Kind, msgExited))
		default:
			r.rep = *m.Exit
		}
		exited <- r
	}()

	wall := time.NewTimer(time.Duration(lim.WallTimeMs) * time.Millisecond)
	defer wall.Stop()
	cpuLimit := time.Duration(lim.CPUTimeMs) * time.Millisecond
	cpuCheck := time.NewTimer(cpuLimit / time.Duration(numCPU))
	defer cpuCheck.Stop()
	var ex exitResult
	done := ctx.Done()
	// Once a kill is sent, the init has killGrace to report the exit; an
	// init that does not (hung, or out of step) is killed with its pid
	// namespace, and the sandbox reported broken.
	var grace <-chan time.Time
	var graceTimer *time.Timer
	defer func() {
		if graceTimer != nil {
			graceTimer.Stop()
		}
	}()
	sendKill := kill
	kill = func(r killReason) {
		sendKill(r)
		if graceTimer == nil {
			graceTimer = time.NewTimer(killGrace)
			grace = graceTimer.C
		}
	}
wait:
	for {
		select {
		case ex = <-exited:
			break wait
		case <-grace:
			// The reply reader then fails: ex.err.
			_ = s.fail(fmt.Errorf("isolate: the init did not report the end of a killed process within %v", killGrace))
			s.conn.Close()
			if s.cmd != nil && s.cmd.Process != nil {
				_ = s.cmd.Process.Kill()
			}
			grace = nil
		case <-overflow:
			kill(killOutput)
		case <-wall.C:
			kill(killWall)
		case <-done:
			kill(killCancel)
			done = nil // once: a closed channel would spin this loop until the exit reply
		case <-cpuCheck.C:
			now, err := s.cg.counters()
			if err != nil {
				kill(killCPU) // cannot account: stop rather than overrun
				continue
			}
			used := time.Duration(now.CPUNs - before.CPUNs)
			if used >= cpuLimit {
				kill(killCPU)
				continue
			}
			// cpu time grows at most numCPU times as fast as wall time.
			next := (cpuLimit - used) / time.Duration(numCPU)
			cpuCheck.Reset(max(next, time.Millisecond))
		}
	}
	if ex.err != nil {
		return nil, ex.err
	}
	if ex.startErr != nil {
		wg.Wait() // the child is dead and the init closed its ends
		if r := startFailure(ex.startErr, p); r != nil {
			return r, nil
		}
		return nil, s.fail(ex.startErr)
	}
	if killErr != nil {
		return nil, killErr
	}
	wg.Wait() // every writer is dead: the pipes are at EOF

	// The counters the init read once the process was done, else read
	// here.
	var after cgroupCounters
	if ex.rep.Counters != nil {
		after = *ex.rep.Counters
	} else if after, err = s.cg.counters(); err != nil {
		return nil, s.fail(fmt.Errorf("isolate: cgroup counters: %w", err))
	}
	s.lastCounters = &after
	if p.More {
		// The next process counts from these closing counters.
		if err := s.prepare(after); err != nil {
			return nil, err
		}
	}
	res.SetStdout(stdout.buf)
	res.SetStderr(stderr.buf)
	res.StdoutTruncated = stdout.truncated
	res.StderrTruncated = stderr.truncated
	res.Usage = jobs.Usage{
		CPUTimeMs:       float64(after.CPUNs-before.CPUNs) / 1e6,
		UserMs:          float64(after.UserNs-before.UserNs) / 1e6,
		SysMs:           float64(after.SysNs-before.SysNs) / 1e6,
		WallTimeMs:      float64(ex.rep.WallNs) / 1e6,
		MemoryPeakBytes: max(after.MemoryPeak-before.MemoryUsage, 0),
	}
	// The peak counts from what earlier processes left charged (cached
	// image files, tmpfs pages): the process's own is the rise above it,
	// as a fresh cgroup per process would report. The kernel charges a
	// cgroup in batches of up to 64 pages per CPU, so a process smaller
	// than that may not move the counter at all and reads 0. (wait4's
	// ru_maxrss is no floor: a process cloned with CLONE_VM counts the
	// init's memory it shared before its exec.)
	res.PidsLimitReached = after.PidsMax > before.PidsMax
	ws := unix.WaitStatus(ex.rep.WaitStatus)
	if ws.Signaled() {
		res.ExitCode = -1
		res.Signal = unix.SignalName(ws.Signal())
	} else {
		res.ExitCode = ws.ExitStatus()
	}
	res.Status = statusOf(reason, ws, after.OOMKills > before.OOMKills,
		time.Duration(after.CPUNs-before.CPUNs) >= cpuLimit)
	return res, nil
}

type exitResult struct {
	rep      exitReport
	startErr *InitError // the process never ran: the init says why
	err      error      // the sandbox failed
}

// startFailure is the result of a process that could not start for a
// reason of its own (not the sandbox's): like a shell, 127 for a command
// not found, 126 for one that cannot be executed or a bad working
// directory. nil for any other failure.
// killGrace is how long the init has to report the end of a process it was
// told to kill before the sandbox counts as broken.
var killGrace = 10 * time.Second

// belowUsage is the result of a step whose memory limit is below what the
// job cgroup already holds: files an earlier step of the job left in its
// tmpfs (/tmp, /work, /dev/shm) stay charged to it. cgroup v1 refuses such
// a limit (EBUSY); the step gets memory_limit without running, and the
// sandbox is fine (v2 takes the limit, and the step is OOM-killed). nil
// when that is not why setting the limits failed.
func belowUsage(cg *cgroup, limit int64) *jobs.StepResult {
	usage, err := cg.memoryUsage()
	if err != nil || limit <= 0 || usage <= limit {
		return nil
	}
	res := &jobs.StepResult{Status: jobs.StatusMemoryLimit}
	res.SetStdout(nil)
	res.SetStderr([]byte(fmt.Sprintf("corral: memory limit %d bytes is below the %d bytes the job already holds (files earlier steps left in /tmp, /work and /dev/shm count): not started\n", limit, usage)))
	return res
}

func startFailure(ie *InitError, p Process) *jobs.StepResult {
	res := &jobs.StepResult{Status: jobs.StatusNonzeroExit, ExitCode: 126}
	res.SetStdout(nil)
	switch ie.Step {
	case "exec":
		if ie.Errno == unix.ENOENT || ie.Errno == unix.ENOTDIR {
			res.ExitCode = 127
		}
		res.SetStderr([]byte(fmt.Sprintf("corral: exec %q: %v\n", p.Argv[0], ie.Errno)))
	case "cwd":
		res.SetStderr([]byte(fmt.Sprintf("corral: working directory %q: %v\n", p.Cwd, ie.Errno)))
	default:
		return nil
	}
	return res
}

// statusOf decides a step's status. The parent's own reasons to kill come
// first, then the kernel's limits, then how the process ended.
func statusOf(r killReason, ws unix.WaitStatus, oom, cpuOver bool) jobs.Status {
	switch {
	case r == killCancel:
		return jobs.StatusCancelled
	case r == killOutput:
		return jobs.StatusOutputLimit
	case r == killWall:
		return jobs.StatusWallTimeLimit
	case r == killCPU, cpuOver:
		// Not SIGXCPU alone: a job can send it itself (kill -XCPU $$) to
		// fake the breach. RLIMIT_CPU sends it only past the limit, and
		// then the cgroup's CPU time shows it (cpuOver).
		return jobs.StatusCPUTimeLimit
	case oom:
		return jobs.StatusMemoryLimit
	case ws.Signaled() && ws.Signal() == unix.SIGXFSZ:
		return jobs.StatusFileSizeLimit
	case ws.Signaled():
		return jobs.StatusSignaled
	case ws.ExitStatus() != 0:
		return jobs.StatusNonzeroExit
	}
	return jobs.StatusOK
}

// rlimitsFor maps limits onto the rlimits that back up the cgroup.
func rlimitsFor(l jobs.Limits) []rlimit {
	// RLIMIT_CPU counts whole seconds per process: a backstop one second
	// past the cgroup-wide check, then SIGKILL a second later.
	cpuSec := uint64((l.CPUTimeMs+999)/1000) + 1
	return []rlimit{
		{unix.RLIMIT_CPU, cpuSec, cpuSec + 1},
		{unix.RLIMIT_FSIZE, uint64(l.FileSizeBytes), uint64(l.FileSizeBytes)},
		{unix.RLIMIT_NOFILE, uint64(l.OpenFiles), uint64(l.OpenFiles)},
		// A judge's recursion may use as much stack as it has memory.
		{unix.RLIMIT_STACK, uint64(l.MemoryBytes), uint64(l.MemoryBytes)},
		{unix.RLIMIT_CORE, 0, 0},
	}
}

// drainBufs are the read buffers of drain: two per run otherwise.
var drainBufs = sync.Pool{New: func() any { return new([32 << 10]byte) }}

// capture collects one output stream up to a cap.
type capture struct {
	buf       []byte
	truncated bool
}

// drain reads r to EOF, keeping the first limit bytes. Reaching past the
// limit marks the stream truncated and signals overflow; the rest is read
// and dropped so the writer never blocks on a full pipe.
func (c *capture) drain(r io.Reader, limit int64, name string, live func(string, []byte), overflow chan<- struct{}) {
	bp := drainBufs.Get().(*[32 << 10]byte)
	defer drainBufs.Put(bp)
	chunk := bp[:]
	for {
		n, err := r.Read(chunk)
		if n > 0 && !c.truncated {
			take := n
			if room := limit - int64(len(c.buf)); int64(take) > room {
				take = int(room)
				c.truncated = true
				overflow <- struct{}{}
			}
			c.buf = append(c.buf, chunk[:take]...)
			if live != nil && take > 0 {
				live(name, chunk[:take])
			}
		}
		if err != nil {
			return
		}
	}
}

// outputPipes are a process's stdout and stderr: the read ends for the
// poller, the write ends as plain fds for the init.
type outputPipes struct {
	outR, errR *os.File
	outW, errW int
}

// newOutputPipes makes a process's output pipes, owned by uid:gid.
func newOutputPipes(uid, gid int) (*outputPipes, error) {
	outR, outW, err := jobPipe("stdout", uid, gid)
	if err != nil {
		return nil, err
	}
	errR, errW, err := jobPipe("stderr", uid, gid)
	if err != nil {
		outR.Close()
		unix.Close(outW)
		return nil, err
	}
	return &outputPipes{outR: outR, errR: errR, outW: outW, errW: errW}, nil
}

func (o *outputPipes) close() {
	o.outR.Close()
	o.errR.Close()
	unix.Close(o.outW)
	unix.Close(o.errW)
}

// preparePipes makes the next process's output pipes ahead of its Run (two
// pipes, their owner and their registration with the poller: 50 µs here),
// after a reset, while the sandbox waits for its next job, and closes the
// last ones. A failure is left for Run to meet and report.
func (s *Sandbox) preparePipes() {
	s.closeSpent()
	if s.pipes != nil {
		return
	}
	uid, gid := int(s.cfg.HostUID)+JobUID, int(s.cfg.HostUID)+JobGID
	if p, err := newOutputPipes(uid, gid); err == nil {
		s.pipes = p
	}
}

// closeSpent closes the output pipes of the processes since the last
// reset, whose output was read to the end.
func (s *Sandbox) closeSpent() {
	for _, f := range s.spent {
		f.Close()
	}
	s.spent = s.spent[:0]
}

// jobPipe makes a pipe for a job's output, owned by uid:gid: the read end
// for the poller, the write end as a plain fd for the init.
func jobPipe(name string, uid, gid int) (r *os.File, w int, err error) {
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		return nil, -1, fmt.Errorf("isolate: pipe: %w", err)
	}
	// The job's end blocks, as a pipe a shell gives does.
	if err := unix.SetNonblock(p[1], false); err == nil {
		err = unix.Fchown(p[1], uid, gid)
	}
	if err != nil {
		unix.Close(p[0])
		unix.Close(p[1])
		return nil, -1, fmt.Errorf("isolate: %s pipe: %w", name, err)
	}
	return os.NewFile(uintptr(p[0]), name), p[1], nil
}

// stdinFd returns the fd of a process's stdin and what closes it: a memfd
// with data owned by uid:gid, or with none a new open file of the
// sandbox's empty one. Either is sealed against writes: under the strict
// profile a writable stdin would be a file to write code into and map
// executable. And each run's stdin is its own open file: one shared by
// every job would carry its offset, status flags and flock(2) lock from
// one job to the next.
func (s *Sandbox) stdinFd(data []byte, uid, gid int) (int, func(), error) {
	if len(data) > 0 {
		f, err := memfdWith("stdin", data)
		if err == nil {
			err = sealed(int(f.Fd()))
			if err == nil {
				err = unix.Fchown(int(f.Fd()), uid, gid)
			}
			if err != nil {
				f.Close()
			}
		}
		if err != nil {
			return -1, nil, fmt.Errorf("isolate: stdin: %w", err)
		}
		return int(f.Fd()), func() { f.Close() }, nil
	}
	if s.emptyStdin < 0 {
		fd, err := emptyMemfd()
		if err != nil {
			return -1, nil, err
		}
		s.emptyStdin = fd
	}
	fd, err := unix.Open("/proc/self/fd/"+strconv.Itoa(s.emptyStdin), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, nil, fmt.Errorf("isolate: empty stdin: %w", err)
	}
	return fd, func() { unix.Close(fd) }, nil
}

// sealed seals the memfd fd against every change of its content.
func sealed(fd int) error {
	_, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS,
		unix.F_SEAL_SEAL|unix.F_SEAL_SHRINK|unix.F_SEAL_GROW|unix.F_SEAL_WRITE)
	return err
}

// emptyMemfd makes an empty memfd that nobody can change: sealed against
// writes and growth, mode 0444 and owned by the host's root, so a job can
// read it (and reopen it through /proc/self/fd) but not change its mode.
func emptyMemfd() (int, error) {
	fd, err := unix.MemfdCreate("stdin", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return -1, fmt.Errorf("isolate: memfd: %w", err)
	}
	if err = unix.Fchmod(fd, 0o444); err == nil {
		err = sealed(fd)
	}
	if err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("isolate: empty stdin: %w", err)
	}
	return fd, nil
}

func memfdWith(name string, data []byte) (*os.File, error) {
	fd, err := unix.MemfdCreate(name, unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, fmt.Errorf("isolate: memfd: %w", err)
	}
	f := os.NewFile(uintptr(fd), name)
	if len(data) > 0 {
		if _, err := f.Write(data); err != nil {
			f.Close()
			return nil, err
		}
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			f.Close()
			return nil, err
		}
	}
	return f, nil
}
