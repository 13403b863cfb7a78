package isolate

// The sandbox init: the corral binary re-executed as pid 1 of the sandbox.
// See doc.go for the protocol.

/*
#include <stdlib.h>
#include <linux/filter.h>
#include "spawn_linux.h"
*/
import "C"

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// File descriptors the init inherits.
const (
	initExeFd    = 3 // the sealed copy of the binary it was executed from
	initSockFd   = 4 // the control socket
	initProcsFd0 = 5 // the job cgroup's cgroup.procs files, ProcsFiles of them
)

// Stage paths, after the init has pivoted into the stage.
const (
	stageLower = "/lower"
	stageRW    = "/rw"
	stageRoot  = "/root"
	stageProc  = "/proc"
	stageDev   = "/dev"
)

// maxMessage bounds one protocol packet (argv and env included).
const maxMessage = 4 << 20

// While a job runs the init reaps at least every reapIntervalMs: until then
// an orphan that exited (a setsid'd or double-forked process, re-parented to
// the init) is a zombie, counted by the pids limit. The main process wakes
// the init at once (its pidfd); for orphans the interval doubles while
// nothing is reaped, up to reapIntervalMaxMs, so that a long job does not
// wake the init a hundred times a second, and is short again after a reap.
const (
	reapIntervalMs    = 10
	reapIntervalMaxMs = 160
)

// yieldEvery bounds how long the init's goroutine runs without passing
// through the scheduler (see initProc.yield).
const yieldEvery = 5 * time.Millisecond

// RunInit is the sandbox init's main. It never returns.
//
// The init is one goroutine on one locked thread: a loop that polls the
// control socket and, while a job runs, a pidfd of the job's main process,
// reaping as it goes. It uses no netpoller and hands nothing to other
// goroutines, so a job costs it little more than its own system calls.
func RunInit() {
	// Two Ps for one goroutine: with a single P the runtime's sysmon
	// takes the P away from every system call that spans two of its
	// ticks (the clone that waits for the child's exec, the poll while a
	// job runs), and each hand-off sets it polling every 20 µs again: that
	// churn cost about as much CPU per job as the init's own work. With an
	// idle P it leaves calls shorter than 10 ms alone. The second P stays
	// idle: nothing else runs.
	runtime.GOMAXPROCS(2)
	runtime.LockOSThread()
	// The job must not read the init's memory or fds through /proc/1.
	_ = unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0)
	_ = unix.Prctl(unix.PR_SET_NAME, uintptr(unsafe.Pointer(&[]byte("corral-init\x00")[0])), 0, 0, 0)
	unix.Close(initExeFd)
	// Blocking calls on the socket: the loop has nothing else to do.
	unix.CloseOnExec(initSockFd)
	if err := unix.SetNonblock(initSockFd, false); err != nil {
		fmt.Fprintf(os.Stderr, "corral-init: control socket: %v\n", err)
		os.Exit(1)
	}
	in := &initProc{sock: initSockFd, buf: make([]byte, maxMessage), landlock: -1, mntNS: -1, ipcNS: -1}
	if err := in.serve(); err != nil {
		fmt.Fprintf(os.Stderr, "corral-init: %v\n", err)
		os.Exit(1)
	}
	os.Exit(0)
}

type initProc struct {
	sock  int // the control socket (SOCK_SEQPACKET)
	buf   []byte
	oob   [256]byte
	cfg   initConfig
	procs []C.int
	// landlock is the ruleset fd for job processes (-1: none) and the
	// flags to restrict with; made again with each writable layer.
	landlock      int
	landlockFlags uint32
	// mntNS and ipcNS are the current writable layer's namespaces, which
	// every job process joins (-1: none yet).
	mntNS, ipcNS C.int
	// seccomp holds each profile's program in C memory, for the child.
	seccomp map[SeccompProfile]*C.struct_sock_fprog
	// job is the running job's main process (pid 0: no job runs).
	job runningJob
	// yielded is when the goroutine last went through the scheduler.
	yielded time.Time
}

// runningJob is a job's main process, from its spawn until it is reaped.
type runningJob struct {
	pid   int
	pidfd int       // readable once it exits; -1: none, the periodic reap finds it
	start time.Time // just before the clone
	// reapMs is the poll's timeout: how late an orphan may be reaped.
	reapMs int
}

func (in *initProc) send(m *message) error { return in.sendFds(m, nil) }

// sendFds sends a message with fds attached (SCM_RIGHTS).
func (in *initProc) sendFds(m *message, fds []int) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	for {
		err = unix.Sendmsg(in.sock, b, oob, nil, unix.MSG_NOSIGNAL)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("send %s: %w", m.Kind, err)
	}
	return nil
}

func (in *initProc) fail(step string, err error) error {
	ie := &InitError{Step: step, Msg: err.Error()}
	if errno, ok := underlyingErrno(err); ok {
		ie.Errno = errno
		ie.Msg = strings.TrimSuffix(strings.TrimSuffix(err.Error(), errno.Error()), ": ")
	}
	return in.send(&message{Kind: msgError, Err: ie})
}

// recv reads one message and the fds it carries. It blocks until one comes.
func (in *initProc) recv() (*message, []int, error) {
	var n, oobn, flags int
	var err error
	for {
		n, oobn, flags, _, err = unix.Recvmsg(in.sock, in.buf, in.oob[:], unix.MSG_CMSG_CLOEXEC)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		return nil, nil, fmt.Errorf("receive: %w", err)
	}
	var fds []int
	if oobn > 0 {
		scms, err := unix.ParseSocketControlMessage(in.oob[:oobn])
		if err != nil {
			return nil, nil, err
		}
		for _, scm := range scms {
			got, err := unix.ParseUnixRights(&scm)
			if err != nil {
				return nil, nil, err
			}
			fds = append(fds, got...)
		}
	}
	// A packet cut short (past maxMessage, or more fds than oob holds)
	// is never acted on.
	if flags&(unix.MSG_TRUNC|unix.MSG_CTRUNC) != 0 {
		closeAll(fds)
		return nil, nil, fmt.Errorf("bad message: truncated (flags %#x)", flags)
	}
	if n == 0 {
		closeAll(fds)
		return nil, nil, errEOF
	}
	m := new(message)
	if err := json.Unmarshal(in.buf[:n], m); err != nil {
		closeAll(fds)
		return nil, nil, fmt.Errorf("bad message: %w", err)
	}
	return m, fds, nil
}

var errEOF = fmt.Errorf("parent closed the control socket")

func closeAll(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}

func (in *initProc) serve() error {
	m, fds, err := in.recv()
	if err != nil {
		return err
	}
	closeAll(fds)
	if m.Kind != msgConfig || m.Config == nil {
		return fmt.Errorf("first message is %q, not config", m.Kind)
	}
	in.cfg = *m.Config
	in.seccomp = make(map[SeccompProfile]*C.struct_sock_fprog)
	for name, prog := range in.cfg.Seccomp {
		if len(prog) == 0 {
			continue
		}
		size := C.size_t(len(prog)) * C.size_t(unsafe.Sizeof(prog[0]))
		filter := C.malloc(size)
		copy(unsafe.Slice((*unix.SockFilter)(filter), len(prog)), prog)
		fp := (*C.struct_sock_fprog)(C.calloc(1, C.size_t(unsafe.Sizeof(C.struct_sock_fprog{}))))
		fp.len = C.ushort(len(prog))
		fp.filter = (*C.struct_sock_filter)(filter)
		in.seccomp[name] = fp
	}
	in.cfg.Seccomp = nil
	for i := 0; i < in.cfg.ProcsFiles; i++ {
		in.procs = append(in.procs, C.int(initProcsFd0+i))
	}
	if step, err := in.setup(); err != nil {
		return in.fail(step, err)
	}
	if err := in.send(&message{Kind: msgReady}); err != nil {
		return err
	}
	for {
		in.yield()
		if err := in.await(); err != nil {
			return err
		}
		m, fds, err := in.recv()
		if err == errEOF {
			return nil
		}
		if err != nil {
			return err
		}
		switch m.Kind {
		case msgSpawn:
			if in.job.pid != 0 {
				closeAll(fds)
				err = in.fail("protocol", errors.New("spawn while a job runs"))
				break
			}
			err = in.spawn(m.Spawn, fds)
		case msgPut:
			err = in.put(m.Put, fds)
		case msgCollect:
			err = in.collect(m.Coll, fds)
		case msgKill:
			closeAll(fds)
			killAll()
		case msgReset:
			closeAll(fds)
			if step, rerr := in.mountJobRoot(m.Reset.DiskBytes); rerr != nil {
				err = in.fail(step, rerr)
			} else {
				err = in.send(&message{Kind: msgReady})
			}
		default:
			closeAll(fds)
			err = in.fail("protocol", fmt.Errorf("unknown message %q", m.Kind))
		}
		if err != nil {
			return err
		}
	}
}

// setup builds the stage and pivots the init into it. It returns the name of
// the step that failed.
func (in *initProc) setup() (string, error) {
	cfg := &in.cfg
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return "make-private", err
	}
	st := cfg.Stage
	if err := unix.Mount("corral-stage", st, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0755,size=1m"); err != nil {
		return "mount-stage", err
	}
	for i, l := range cfg.Lower {
		dst := filepath.Join(st, stageLower, strconv.Itoa(i))
		if err := os.MkdirAll(dst, 0o755); err != nil {
			return "lower", err
		}
		if err := unix.Mount(l, dst, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return "bind-lower", fmt.Errorf("%s: %w", l, err)
		}
		if err := unix.Mount("", dst, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV, ""); err != nil {
			return "bind-lower", fmt.Errorf("read-only %s: %w", l, err)
		}
	}
	for _, d := range []string{stageRW, stageRoot, stageProc, stageDev} {
		if err := os.Mkdir(filepath.Join(st, d), 0o755); err != nil {
			return "stage", err
		}
	}
	if step, err := mountProc(filepath.Join(st, stageProc)); err != nil {
		return step, err
	}
	if err := mountDev(filepath.Join(st, stageDev)); err != nil {
		return "mount-dev", err
	}
	// pivot_root(".", ".") stacks the old root on the new one; the detach
	// then drops it, and with it every path to the host's files.
	if err := unix.Chdir(st); err != nil {
		return "pivot_root", err
	}
	if err := unix.PivotRoot(".", "."); err != nil {
		return "pivot_root", err
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return "pivot_root", err
	}
	if err := unix.Chdir("/"); err != nil {
		return "pivot_root", err
	}
	if err := unix.Sethostname([]byte(cfg.Hostname)); err != nil {
		return "sethostname", err
	}
	if err := loopbackUp(); err != nil {
		return "loopback", err
	}
	return in.mountJobRoot(cfg.DiskBytes)
}

// Paths under /proc hidden from jobs (runc's defaults).
var (
	maskedPaths = []string{
		"acpi", "asound", "interrupts", "kcore", "keys", "latency_stats",
		"timer_list", "timer_stats", "sched_debug", "scsi", "sysrq-trigger",
	}
	readonlyPaths = []string{"bus", "fs", "irq", "sys"}
)

func mountProc(dst string) (string, error) {
	const flags = unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC
	if err := unix.Mount("proc", dst, "proc", flags, ""); err != nil {
		return "mount-proc", err
	}
	for _, p := range maskedPaths {
		path := filepath.Join(dst, p)
		fi, err := os.Lstat(path)
		if err != nil {
			continue
		}
		if fi.IsDir() {
			err = unix.Mount("tmpfs", path, "tmpfs", unix.MS_RDONLY|flags, "size=0")
		} else {
			err = unix.Mount("/dev/null", path, "", unix.MS_BIND, "")
		}
		if err != nil {
			return "mask-proc", fmt.Errorf("%s: %w", p, err)
		}
	}
	for _, p := range readonlyPaths {
		path := filepath.Join(dst, p)
		if _, err := os.Lstat(path); err != nil {
			continue
		}
		if err := unix.Mount(path, path, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return "readonly-proc", fmt.Errorf("%s: %w", p, err)
		}
		if err := unix.Mount("", path, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY|flags, ""); err != nil {
			return "readonly-proc", fmt.Errorf("%s: %w", p, err)
		}
	}
	return "", nil
}

// Device nodes a job gets, bound from the host (a user namespace cannot
// mknod).
var devices = []string{"null", "zero", "full", "random", "urandom"}

func mountDev(dst string) error {
	if err := unix.Mount("corral-dev", dst, "tmpfs", unix.MS_NOSUID|unix.MS_NOEXEC, "mode=0755,size=64k"); err != nil {
		return err
	}
	for _, d := range devices {
		p := filepath.Join(dst, d)
		f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY, 0o666)
		if err != nil {
			return err
		}
		f.Close()
		if err := unix.Mount("/dev/"+d, p, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("%s: %w", d, err)
		}
	}
	for name, target := range map[string]string{
		"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0",
		"stdout": "/proc/self/fd/1", "stderr": "/proc/self/fd/2",
	} {
		if err := os.Symlink(target, filepath.Join(dst, name)); err != nil {
			return err
		}
	}
	if err := os.Mkdir(filepath.Join(dst, "shm"), 0o1777); err != nil {
		return err
	}
	return unix.Mount("", dst, "", unix.MS_REMOUNT|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NOEXEC, "mode=0755,size=64k")
}

// mountJobRoot replaces the writable layer and the job root: a fresh tmpfs
// upper sized diskBytes, the overlay over the image, and /proc, /dev and
// /dev/shm inside it. Nothing of the previous root survives.
func (in *initProc) mountJobRoot(diskBytes int64) (string, error) {
	// Detaching is O(1): the old tree is freed by the kernel once no
	// process uses it (every job process is dead by now).
	_ = unix.Unmount(stageRoot, unix.MNT_DETACH)
	_ = unix.Unmount(stageRW, unix.MNT_DETACH)
	if diskBytes <= 0 {
		diskBytes = in.cfg.DiskBytes
	}
	opts := fmt.Sprintf("mode=0755,size=%d", diskBytes)
	if err := unix.Mount("corral-rw", stageRW, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, opts); err != nil {
		return "mount-rw", err
	}
	upper := stageRW + "/upper"
	for _, d := range []struct {
		path     string
		mode     os.FileMode
		uid, gid int
	}{
		{upper, 0o755, 0, 0},
		{stageRW + "/work", 0o700, 0, 0},
		// Mount points and the directories a job may write. They are
		// created in the upper layer so the overlay never has to copy up
		// a directory owned by an id outside the sandbox.
		{upper + "/proc", 0o555, 0, 0},
		{upper + "/dev", 0o755, 0, 0},
		{upper + "/tmp", 0o1777, 0, 0},
		{upper + "/work", 0o755, int(in.cfg.UID), int(in.cfg.GID)},
	} {
		if err := os.Mkdir(d.path, d.mode); err != nil {
			return "prepare-rw", err
		}
		if err := os.Chmod(d.path, d.mode); err != nil { // umask
			return "prepare-rw", err
		}
		if err := os.Lchown(d.path, d.uid, d.gid); err != nil {
			return "prepare-rw", err
		}
	}
	if len(in.cfg.EtcFiles) > 0 {
		if err := os.Mkdir(upper+"/etc", 0o755); err != nil {
			return "prepare-rw", err
		}
		for name, data := range in.cfg.EtcFiles {
			if err := os.WriteFile(upper+"/etc/"+name, data, 0o644); err != nil {
				return "etc-files", err
			}
		}
	}
	lower := make([]string, len(in.cfg.Lower))
	for i := range lower {
		lower[i] = stageLower + "/" + strconv.Itoa(i)
	}
	ovl := "lowerdir=" + strings.Join(lower, ":") + ",upperdir=" + upper + ",workdir=" + stageRW + "/work,userxattr"
	if err := unix.Mount("corral-root", stageRoot, "overlay", unix.MS_NOSUID|unix.MS_NODEV, ovl); err != nil {
		return "mount-overlay", err
	}
	if err := unix.Mount(stageProc, stageRoot+"/proc", "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return "bind-proc", err
	}
	if err := unix.Mount(stageDev, stageRoot+"/dev", "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return "bind-dev", err
	}
	shm := fmt.Sprintf("mode=1777,size=%d", diskBytes)
	if err := unix.Mount("corral-shm", stageRoot+"/dev/shm", "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, shm); err != nil {
		return "mount-shm", err
	}
	// The layer's own mount and IPC namespaces, made once: job processes
	// join them instead of each copying the mount table.
	if in.mntNS >= 0 {
		unix.Close(int(in.mntNS))
		unix.Close(int(in.ipcNS))
		in.mntNS, in.ipcNS = -1, -1
	}
	croot := C.CString(stageRoot)
	rc := C.corral_layer_ns(croot, &in.mntNS, &in.ipcNS)
	C.free(unsafe.Pointer(croot))
	if rc < 0 {
		in.mntNS, in.ipcNS = -1, -1
		return "layer-namespaces", unix.Errno(-rc)
	}
	if in.landlock >= 0 {
		unix.Close(in.landlock)
	}
	fd, flags, err := landlockRuleset(stageRoot)
	if err != nil {
		in.landlock = -1
		return "landlock", err
	}
	in.landlock, in.landlockFlags = fd, flags
	return "", nil
}

func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
}

// killAll kills every process of the sandbox but the init.
func killAll() { _ = unix.Kill(-1, unix.SIGKILL) }

// Names of the C child's steps (enum corral_step).
var childSteps = [...]string{
	"", "setsid", "cgroup", "cgroupns", "namespaces", "cwd", "stdio", "rlimit",
	"capabilities", "securebits", "credentials", "no_new_privs", "landlock",
	"close-fds", "seccomp", "exec", "clone",
}

// spawn starts a job process; the serve loop waits for it (see await).
func (in *initProc) spawn(req *spawnReq, fds []int) error {
	defer closeAll(fds)
	if req == nil || len(fds) != 3 || len(req.Argv) == 0 {
		return in.fail("protocol", fmt.Errorf("spawn needs argv and 3 fds, got %d", len(fds)))
	}
	var s C.struct_corral_spawn
	var frees []unsafe.Pointer
	cstr := func(v string) *C.char {
		p := C.CString(v)
		frees = append(frees, unsafe.Pointer(p))
		return p
	}
	cvec := func(vs []string) **C.char {
		n := len(vs) + 1
		p := (**C.char)(C.calloc(C.size_t(n), C.size_t(unsafe.Sizeof((*C.char)(nil)))))
		frees = append(frees, unsafe.Pointer(p))
		arr := unsafe.Slice(p, n)
		for i, v := range vs {
			arr[i] = cstr(v)
		}
		return p
	}
	defer func() {
		for _, p := range frees {
			C.free(p)
		}
	}()
	s.path = cstr(req.Argv[0])
	s.argv = cvec(req.Argv)
	s.envp = cvec(req.Env)
	path := ""
	for _, e := range req.Env {
		if v, ok := strings.CutPrefix(e, "PATH="); ok {
			path = v
		}
	}
	s.search_path = cstr(path)
	s.root = cstr(stageRoot)
	s.mnt_fd = in.mntNS
	s.ipc_fd = in.ipcNS
	s.cwd = cstr(req.Cwd)
	for i := 0; i < 3; i++ {
		s.stdio[i] = C.int(fds[i])
	}
	for i, fd := range in.procs {
		s.procs_fds[i] = fd
	}
	s.nprocs_fds = C.int(len(in.procs))
	if len(req.Rlimits) > len(s.rlimits) {
		return in.fail("protocol", fmt.Errorf("too many rlimits"))
	}
	for i, r := range req.Rlimits {
		s.rlimits[i].resource = C.int(r.Resource)
		s.rlimits[i].cur = C.uint64_t(r.Cur)
		s.rlimits[i].max = C.uint64_t(r.Max)
	}
	s.nrlimits = C.int(len(req.Rlimits))
	s.uid = C.uint32_t(in.cfg.UID)
	s.gid = C.uint32_t(in.cfg.GID)
	prog, ok := in.seccomp[req.Seccomp]
	if !ok {
		return in.fail("seccomp", fmt.Errorf("no program for profile %q", req.Seccomp))
	}
	s.seccomp_filter = unsafe.Pointer(prog)
	s.landlock_fd = C.int(in.landlock)
	s.landlock_flags = C.uint(in.landlockFlags)

	start := time.Now()
	pid := int(C.corral_spawn_run(&s))
	if pid < 0 {
		return in.send(&message{Kind: msgError, Err: &InitError{Step: "clone", Errno: unix.Errno(-pid)}})
	}
	if s.err_step != 0 {
		var ws unix.WaitStatus
		_, _ = unix.Wait4(pid, &ws, 0, nil)
		step := "unknown"
		if int(s.err_step) < len(childSteps) {
			step = childSteps[s.err_step]
		}
		return in.send(&message{Kind: msgError, Err: &InitError{Step: step, Errno: unix.Errno(s.err_no)}})
	}
	if err := in.send(&message{Kind: msgStarted, Pid: pid}); err != nil {
		killAll()
		return err
	}
	// Without a pidfd (it cannot fail but for lack of fds) the periodic
	// reap still finds the main process, up to reapIntervalMaxMs late.
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		pidfd = -1
	}
	in.job = runningJob{pid: pid, pidfd: pidfd, start: start, reapMs: reapIntervalMs}
	return nil
}

// await returns once the control socket has something to read (or hung
// up). While a job runs it reaps as it waits: the main process as soon as
// it exits (its pidfd wakes the poll), orphans every reapIntervalMs to
// reapIntervalMaxMs. With no job it returns at once: recv blocks instead.
func (in *initProc) await() error {
	pfd := [2]unix.PollFd{{Fd: int32(in.sock), Events: unix.POLLIN}}
	for in.job.pid != 0 {
		n := 1
		if in.job.pidfd >= 0 {
			pfd[1] = unix.PollFd{Fd: int32(in.job.pidfd), Events: unix.POLLIN}
			n = 2
		}
		pfd[0].Revents = 0
		in.yield()
		ready, err := unix.Poll(pfd[:n], in.job.reapMs)
		if err != nil && err != unix.EINTR {
			return fmt.Errorf("poll: %w", err)
		}
		reaped, err := in.reap()
		if err != nil {
			return err
		}
		switch {
		case reaped:
			in.job.reapMs = reapIntervalMs
		case ready == 0:
			in.job.reapMs = min(2*in.job.reapMs, reapIntervalMaxMs)
		}
		if pfd[0].Revents != 0 {
			return nil
		}
	}
	return nil
}

// yield passes through the scheduler when the goroutine has not for
// yieldEvery. Sysmon preempts a goroutine that ran 10 ms without doing so,
// and when that goroutine sits in a system call it takes its P away (and
// polls every 20 µs for a while after): the init's one goroutine never
// blocks in Go, so it would meet that on every long poll. A locked
// goroutine's yield costs two thread switches; once per yieldEvery at
// most.
func (in *initProc) yield() {
	if now := time.Now(); now.Sub(in.yielded) >= yieldEvery {
		runtime.Gosched()
		in.yielded = now
	}
}

// reap reaps, without waiting, every process of the sandbox that exited.
// When that includes the job's main process, it ends the job (see finish).
// It reports whether it reaped anything.
func (in *initProc) reap() (reaped bool, err error) {
	for in.job.pid != 0 {
		var ws unix.WaitStatus
		got, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		switch {
		case err == unix.EINTR:
		case err != nil: // ECHILD: nothing is left (not even the main process)
			return true, in.finish(exitReport{})
		case got == in.job.pid:
			return true, in.finish(exitReport{WaitStatus: uint32(ws), WallNs: int64(time.Since(in.job.start))})
		case got <= 0: // the rest still runs
			return reaped, nil
		default:
			reaped = true
		}
	}
	return reaped, nil
}

// finish ends the job once its main process is reaped: nothing else may
// run on. It kills and reaps everything left in the sandbox (setsid'd
// orphans included: they are the init's children now), and only then
// reports the main process's status.
func (in *initProc) finish(rep exitReport) error {
	for {
		// Again after each reap: a process forked during the kill is
		// caught by the next round.
		killAll()
		var ws unix.WaitStatus
		_, err := unix.Wait4(-1, &ws, 0, nil)
		if err != nil && err != unix.EINTR { // ECHILD: nothing is left
			break
		}
	}
	if in.job.pidfd >= 0 {
		unix.Close(in.job.pidfd)
	}
	in.job = runningJob{}
	return in.send(&message{Kind: msgExited, Exit: &rep})
}

func underlyingErrno(err error) (unix.Errno, bool) {
	for err != nil {
		if e, ok := err.(unix.Errno); ok {
			return e, true
		}
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return 0, false
		}
		err = u.Unwrap()
	}
	return 0, false
}
