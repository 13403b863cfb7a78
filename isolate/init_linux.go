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
	"slices"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// File descriptors the init inherits.
const (
	initExeFd    = 3 // the sealed copy of the binary it was executed from
	initSockFd   = 4 // the control socket
	initProcsFd0 = 5 // the job cgroup's cgroup.procs files, ProcsFiles of them, then its v2 directory (CgroupDir), then its memory usage file (UsageFile), then its counter files (CounterFiles)
)

// Stage paths, after the init has pivoted into the stage.
const (
	stageLower = "/lower"
	stageRW    = "/rw"
	stageRoot  = stageRW + "/root"
	stageProc  = "/proc"
	stageDev   = "/dev"
)

// maxMessage bounds one protocol packet (argv and env included).
const maxMessage = 4 << 20

// RunInit is the sandbox init's main. It never returns.
//
// The init is one goroutine on one locked thread. Its job path is C
// (loop_linux.c): spawn and kill requests, the job's reaping and the replies
// to them never enter Go, which handles only the other messages (reset,
// put, collect) between two calls of corral_loop_run.
func RunInit() {
	// One P: while the loop runs in C the runtime takes it away once and
	// then sleeps, rather than polling an idle P every few microseconds.
	runtime.GOMAXPROCS(1)
	runtime.LockOSThread()
	// A known umask, whatever the worker's: the init's directories come
	// out right without a chmod, and job processes inherit the usual 022.
	unix.Umask(0o022)
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
	C.corral_quiet_sigchld()
	loop := (*C.struct_corral_loop)(C.calloc(1, C.size_t(unsafe.Sizeof(C.struct_corral_loop{}))))
	loop.sock = initSockFd
	loop.buf = (*C.char)(C.malloc(maxMessage))
	loop.cap = maxMessage
	loop.pidfd = -1
	loop.out_fds = [2]C.int{-1, -1}
	loop.tmpl.landlock_fd = -1
	loop.tmpl.mnt_fd = -1
	loop.tmpl.ipc_fd = -1
	loop.tmpl.net_fd = -1
	loop.tmpl.cgroup_fd = -1
	loop.tmpl.cgns_fd = -1
	loop.zy_profile = -1
	loop.zy.cgns_fd = -1
	loop.zy.listener = -1
	loop.root_fd = -1
	loop.usage_fd = -1
	loop.kept.ok = -1
	loop.kept.upper_fd = -1
	loop.kept.work_fd = -1
	loop.kept.shm_fd = -1
	loop.last_profile = -1
	loop.unix_base = -1
	loop.unix_fd = -1
	loop.pid_base = -1
	loop.pid_fd = -1
	in := &initProc{sock: initSockFd, loop: loop, buf: unsafe.Slice((*byte)(unsafe.Pointer(loop.buf)), maxMessage)}
	if err := in.serve(); err != nil {
		fmt.Fprintf(os.Stderr, "corral-init: %v\n", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// The C loop's spawn packet is the one the parent encodes.
const _ = uint(unsafe.Sizeof(C.struct_corral_spawn_pkt{}) - spawnPktHeader)
const _ = uint(spawnPktHeader - unsafe.Sizeof(C.struct_corral_spawn_pkt{}))
const _ = uint(C.CORRAL_NRLIMITS - maxRlimits)
const _ = uint(maxRlimits - C.CORRAL_NRLIMITS)

// The C loop's binary replies are the ones the parent decodes.
const _ = uint(unsafe.Sizeof(C.struct_corral_exited_reply{}) - exitedReplySize)
const _ = uint(exitedReplySize - unsafe.Sizeof(C.struct_corral_exited_reply{}))
const _ = uint(C.CORRAL_NCOUNTERS - nCounters)
const _ = uint(nCounters - C.CORRAL_NCOUNTERS)
const _ = uint(C.CORRAL_EXITED_COUNTERS - exitedCounters)
const _ = uint(exitedCounters - C.CORRAL_EXITED_COUNTERS)
const _ = uint(C.CORRAL_REPLY_EXITED - replyExited)
const _ = uint(replyExited - C.CORRAL_REPLY_EXITED)
const _ = uint(C.CORRAL_REPLY_READY - replyReady)
const _ = uint(replyReady - C.CORRAL_REPLY_READY)
const _ = uint(unsafe.Sizeof(C.struct_corral_ready_reply{}) - 16)
const _ = uint(16 - unsafe.Sizeof(C.struct_corral_ready_reply{}))
const _ = uint(C.CORRAL_READY_PARKED - readyParked)
const _ = uint(readyParked - C.CORRAL_READY_PARKED)
const _ = uint(C.CORRAL_READY_KEPT - readyKept)
const _ = uint(readyKept - C.CORRAL_READY_KEPT)
const _ = uint(C.CORRAL_SPAWN_RESET_AFTER - spawnResetAfter)
const _ = uint(spawnResetAfter - C.CORRAL_SPAWN_RESET_AFTER)
const _ = uint(C.CORRAL_PKT_RESET - pktReset)
const _ = uint(pktReset - C.CORRAL_PKT_RESET)
const _ = uint(unsafe.Sizeof(C.struct_corral_reset_pkt{}) - resetPktSize)
const _ = uint(resetPktSize - unsafe.Sizeof(C.struct_corral_reset_pkt{}))

type initProc struct {
	sock int // the control socket (SOCK_SEQPACKET)
	loop *C.struct_corral_loop
	buf  []byte // the loop's packet buffer (C memory)
	cfg  initConfig
	// The current writable layer's mount and IPC namespaces and Landlock
	// ruleset, which every job process joins and restricts itself with,
	// live in loop.tmpl (-1: none).

	// zygoteFilter is the zygote's variant of the default profile (a
	// struct sock_fprog in C memory; nil: none, the plain one).
	zygoteFilter unsafe.Pointer
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

// recv runs the C loop until a message for Go arrives, and decodes it.
func (in *initProc) recv() (*message, []int, error) {
	n := int(C.corral_loop_run(in.loop))
	if n < 0 {
		return nil, nil, fmt.Errorf("control socket: %w", unix.Errno(-n))
	}
	if n == 0 {
		return nil, nil, errEOF
	}
	fds := make([]int, int(in.loop.nfds))
	for i := range fds {
		fds[i] = int(in.loop.fds[i])
	}
	in.loop.nfds = 0
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
	// The C loop's fixed part of every spawn: the seccomp programs in C
	// memory, the cgroup files, the credentials; the layer's namespaces
	// and Landlock ruleset follow each reset (corral_reset).
	lp := in.loop
	for name, prog := range in.cfg.Seccomp {
		if len(prog) == 0 {
			continue
		}
		if int(lp.nprofiles) == len(lp.profiles) {
			return fmt.Errorf("more than %d seccomp profiles", len(lp.profiles))
		}
		lp.profile_names[lp.nprofiles] = C.CString(string(name))
		lp.profiles[lp.nprofiles] = cProgram(prog)
		if slices.Contains(in.cfg.SysV, name) {
			lp.sysv[lp.nprofiles] = 1
		}
		if slices.Contains(in.cfg.Inet, name) {
			lp.inet[lp.nprofiles] = 1
		}
		// Only default allows what a parked child does once its filter
		// is on (strict has no chdir, dup3 or close_range): the others
		// load it after the request's part.
		if name != SeccompDefault {
			lp.late_seccomp[lp.nprofiles] = 1
		}
		lp.nprofiles++
	}
	in.cfg.Seccomp = nil
	if in.cfg.OwnNetwork {
		lp.own_net = 1
	}
	if len(in.cfg.SeccompZygote) > 0 {
		in.zygoteFilter = cProgram(in.cfg.SeccompZygote)
		in.cfg.SeccompZygote = nil
	}
	if in.cfg.ProcsFiles > len(lp.tmpl.procs_fds) {
		return fmt.Errorf("%d cgroup.procs files, at most %d", in.cfg.ProcsFiles, len(lp.tmpl.procs_fds))
	}
	for i := 0; i < in.cfg.ProcsFiles; i++ {
		lp.tmpl.procs_fds[i] = C.int(initProcsFd0 + i)
	}
	lp.tmpl.nprocs_fds = C.int(in.cfg.ProcsFiles)
	next := initProcsFd0 + in.cfg.ProcsFiles
	if in.cfg.CgroupDir {
		lp.tmpl.cgroup_fd = C.int(next)
		next++
	}
	if in.cfg.UsageFile {
		lp.usage_fd = C.int(next)
		next++
	}
	if err := in.setCounters(next); err != nil {
		return err
	}
	lp.tmpl.uid = C.uint32_t(in.cfg.UID)
	lp.tmpl.gid = C.uint32_t(in.cfg.GID)
	if step, err := in.setup(); err != nil {
		return in.fail(step, err)
	}
	in.startZygote()
	if err := in.send(&message{Kind: msgReady}); err != nil {
		return err
	}
	for {
		m, fds, err := in.recv()
		if err == errEOF {
			return nil
		}
		if err != nil {
			return err
		}
		switch {
		case in.loop.pid != 0:
			// Files and the writable layer change only between
			// processes; the parent serialises its requests.
			closeAll(fds)
			err = in.fail("protocol", fmt.Errorf("%s while a job process runs", m.Kind))
		case m.Kind == msgPut:
			err = in.put(m.Put, fds)
		case m.Kind == msgCollect:
			err = in.collect(m.Coll, fds)
		default:
			// Spawn, kill, park and reset come as binary packets,
			// which the C loop serves.
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
	for _, d := range []string{stageRW, stageProc, stageDev} {
		if err := os.Mkdir(filepath.Join(st, d), 0o755); err != nil {
			return "stage", err
		}
	}
	pidFd, procStep, err := mountProc(filepath.Join(st, stageProc))
	if err != nil {
		return procStep, err
	}
	in.loop.pid_fd = C.int(pidFd)
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
	in.setLayer()
	var step *C.char
	if rc := C.corral_reset(in.loop, C.int64_t(cfg.DiskBytes), &step); rc < 0 {
		return C.GoString(step), unix.Errno(-rc)
	}
	return "", nil
}

// setCounters gives the C loop the counters it reads for each exited reply
// (the config's, from its counter files, fd first on). A spec it cannot
// take is a protocol error.
func (in *initProc) setCounters(first int) error {
	lp := in.loop
	if len(in.cfg.Counters) > len(lp.ctr) {
		return fmt.Errorf("%d counters, at most %d", len(in.cfg.Counters), len(lp.ctr))
	}
	for i, c := range in.cfg.Counters {
		if c.Field < 0 || c.Field >= nCounters || c.File < 0 || c.File >= in.cfg.CounterFiles ||
			len(c.Key) >= len(lp.ctr[i].key) || c.Scale <= 0 {
			return fmt.Errorf("bad counter %+v", c)
		}
		setCounter(&lp.ctr[i], c, first+c.File)
	}
	lp.nctr = C.int(len(in.cfg.Counters))
	return nil
}

// setCounter fills ct from spec, whose file is fd; the key fits.
func setCounter(ct *C.struct_corral_counter, spec counterSpec, fd int) {
	ct.field = C.int(spec.Field)
	ct.fd = C.int(fd)
	for j := 0; j < len(spec.Key); j++ {
		ct.key[j] = C.char(spec.Key[j])
	}
	ct.key[len(spec.Key)] = 0
	ct.scale = C.int64_t(spec.Scale)
}

// readCounters reads specs from files as the init does for an exited reply
// (corral_read_counters). The init's own path is C; this lets the tests
// hold it against cgroup.counters on the same files.
func readCounters(files []*os.File, specs []counterSpec) (cgroupCounters, error) {
	var cs [C.CORRAL_MAX_COUNTERS]C.struct_corral_counter
	if len(specs) > len(cs) {
		return cgroupCounters{}, fmt.Errorf("%d counters, at most %d", len(specs), len(cs))
	}
	for i, sp := range specs {
		setCounter(&cs[i], sp, int(files[sp.File].Fd()))
	}
	var out [nCounters]int64
	if C.corral_read_counters(&cs[0], C.int(len(specs)), (*C.int64_t)(&out[0])) != 0 {
		return cgroupCounters{}, errors.New("corral_read_counters failed")
	}
	return countersOf(out), nil
}

// startZygote starts the default profile's zygote (see spawn_linux.h),
// whose children share its seccomp filter instead of compiling their own.
// Without it (no cgroup.procs file to join the job cgroup through, a
// kernel that refuses) parked children load the filter themselves, as
// every other child does: slower, the same sandbox.
func (in *initProc) startZygote() {
	lp := in.loop
	prof := -1
	for i := 0; i < int(lp.nprofiles); i++ {
		if C.GoString(lp.profile_names[i]) == string(SeccompDefault) {
			prof = i
		}
	}
	if prof < 0 {
		return
	}
	zy := &lp.zy
	// The job cgroup's cgroup.procs files, which the parent opened as
	// host root (v1's, or v2's, there for kernels without
	// CLONE_INTO_CGROUP): the zygote's children write themselves in, as
	// the filter hides clone3 from the zygote.
	n := int(lp.tmpl.nprocs_fds)
	if n == 0 {
		return
	}
	for i := 0; i < n; i++ {
		zy.procs_fds[i] = lp.tmpl.procs_fds[i]
	}
	zy.nprocs_fds = C.int(n)
	// Made by a child that joins the cgroup as the zygote's children
	// will: if it cannot, neither could they.
	cgns := C.corral_cgroup_ns(&zy.procs_fds[0], C.int(n))
	if cgns < 0 {
		return
	}
	zy.cgns_fd = cgns
	// With a listener the init hears of the job's System V calls
	// (serve_notification in loop_linux.c); a kernel without user
	// notifications gets the plain filter, and every reset a new IPC
	// namespace.
	started := false
	if in.zygoteFilter != nil {
		zy.listen = 1
		started = C.corral_zygote_start(zy, in.zygoteFilter) == 0
	}
	if !started {
		zy.listen = 0
		started = C.corral_zygote_start(zy, lp.profiles[prof]) == 0
	}
	if !started {
		unix.Close(int(cgns))
		zy.cgns_fd = -1
		return
	}
	lp.zy_profile = C.int(prof)
}

// cProgram copies a seccomp program into C memory kept for the init's
// life, as a struct sock_fprog.
func cProgram(prog []unix.SockFilter) unsafe.Pointer {
	size := C.size_t(len(prog)) * C.size_t(unsafe.Sizeof(prog[0]))
	filter := C.malloc(size)
	copy(unsafe.Slice((*unix.SockFilter)(filter), len(prog)), prog)
	fp := (*C.struct_sock_fprog)(C.calloc(1, C.size_t(unsafe.Sizeof(C.struct_sock_fprog{}))))
	fp.len = C.ushort(len(prog))
	fp.filter = (*C.struct_sock_filter)(filter)
	return unsafe.Pointer(fp)
}

// setLayer gives the C reset (reset_linux.c) what every writable layer is
// made of, in C memory kept for the init's life.
func (in *initProc) setLayer() {
	cfg := &in.cfg
	y := &in.loop.layer
	y.rw = C.CString(stageRW)
	y.upper = C.CString(stageRW + "/upper")
	y.work = C.CString(stageRW + "/work")
	y.root = C.CString(stageRoot)
	y.proc = C.CString(stageProc)
	y.dev = C.CString(stageDev)
	lower := make([]string, len(cfg.Lower))
	for i := range lower {
		lower[i] = stageLower + "/" + strconv.Itoa(i)
	}
	opts := "lowerdir=" + strings.Join(lower, ":") + ",upperdir=" + stageRW + "/upper,workdir=" + stageRW + "/work,userxattr"
	if !cfg.FreshLayers {
		// xino=on: the overlay numbers directories from their real
		// inodes, not in the order they are looked up, as a layer that
		// may be kept needs (see corral_reset).
		opts += ",xino=on"
		y.keep = 1
	}
	y.ovl_opts = C.CString(opts)
	y.uid, y.gid = C.uint32_t(cfg.UID), C.uint32_t(cfg.GID)
	y.disk = C.int64_t(cfg.DiskBytes)
	if n := len(cfg.EtcFiles); n > 0 {
		etc := unsafe.Slice((*C.struct_corral_etc_file)(C.calloc(C.size_t(n), C.size_t(unsafe.Sizeof(C.struct_corral_etc_file{})))), n)
		i := 0
		for name, data := range cfg.EtcFiles {
			etc[i].name = C.CString(name)
			etc[i].data = C.CBytes(data)
			etc[i].len = C.size_t(len(data))
			i++
		}
		y.etc, y.netc = &etc[0], C.int(n)
		cfg.EtcFiles = nil // in C memory now
	}
	ll := newLandlockLayer(LandlockABI())
	y.ll_abi = C.int(ll.abi)
	y.ll_handled_fs, y.ll_scoped = C.uint64_t(ll.handledFS), C.uint64_t(ll.scoped)
	y.ll_ro, y.ll_rw = C.uint64_t(ll.ro), C.uint64_t(ll.rw)
}

// Paths under /proc hidden from jobs (runc's defaults).
var (
	maskedPaths = []string{
		"acpi", "asound", "interrupts", "kcore", "keys", "latency_stats",
		"timer_list", "timer_stats", "sched_debug", "scsi", "sysrq-trigger",
	}
	readonlyPaths = []string{"bus", "fs", "irq", "sys"}
)

// mountProc mounts the sandbox's /proc at dst, masked and partly
// read-only. It returns an fd of the pid namespace's ns_last_pid opened
// for writing before /proc/sys turns read-only (-1 if the kernel refused),
// through which each reset puts the pid counter back (reset_linux.c).
func mountProc(dst string) (int, string, error) {
	const flags = unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC
	// hidepid=invisible: a job sees only the processes it could ptrace,
	// its own. The init and the zygote (uid 0, not dumpable) are not in
	// its /proc: their status and stat showed the init's memory high-water
	// mark and CPU time, which grow over the sandbox's jobs and so told a
	// job about the jobs before it.
	if err := unix.Mount("proc", dst, "proc", flags, "hidepid=invisible"); err != nil {
		return -1, "mount-proc", err
	}
	pidFd, err := unix.Open(filepath.Join(dst, "sys/kernel/ns_last_pid"), unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		pidFd = -1
	}
	// No TIME_WAIT sockets in the sandbox's network namespace, which
	// serves job after job: a loopback port the last job's connection
	// used would stay taken for 60 s (bind without SO_REUSEADDR fails),
	// and /proc/net/tcp would show its connections. The kernel closes
	// such a socket at once instead (counted in TCPTimeWaitOverflow).
	// Best effort: every kernel corral runs on has the setting per
	// network namespace (TestNoTimeWaitLeft).
	_ = os.WriteFile(filepath.Join(dst, "sys/net/ipv4/tcp_max_tw_buckets"), []byte("0"), 0)
	fail := func(step string, err error) (int, string, error) {
		if pidFd >= 0 {
			unix.Close(pidFd)
		}
		return -1, step, err
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
			err = bindReadOnly("/dev/null", path)
		}
		if err != nil {
			return fail("mask-proc", fmt.Errorf("%s: %w", p, err))
		}
	}
	for _, p := range readonlyPaths {
		path := filepath.Join(dst, p)
		if _, err := os.Lstat(path); err != nil {
			continue
		}
		if err := unix.Mount(path, path, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fail("readonly-proc", fmt.Errorf("%s: %w", p, err))
		}
		if err := unix.Mount("", path, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY|flags, "hidepid=invisible"); err != nil {
			return fail("readonly-proc", fmt.Errorf("%s: %w", p, err))
		}
	}
	return pidFd, "", nil
}

// ipcBatch is CORRAL_IPC_BATCH: how many empty IPC namespaces of old
// layers an init holds before it closes them together (reset_linux.c).
const ipcBatch = int(C.CORRAL_IPC_BATCH)

// bindReadOnly binds the host's device node src at dst, read-only: a job
// still reads and writes the device, but cannot change the host inode's
// times or mode (touch /dev/null set the host's). The source mount's
// nosuid, nodev, noexec and atime flags are kept, as a remount inside a
// user namespace must keep them.
func bindReadOnly(src, dst string) error {
	if err := unix.Mount(src, dst, "", unix.MS_BIND, ""); err != nil {
		return err
	}
	var st unix.Statfs_t
	if err := unix.Statfs(dst, &st); err != nil {
		return err
	}
	const kept = unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC | unix.MS_NOATIME | unix.MS_NODIRATIME | unix.MS_RELATIME
	return unix.Mount("", dst, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY|uintptr(st.Flags)&kept, "")
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
		if err := bindReadOnly("/dev/"+d, p); err != nil {
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
