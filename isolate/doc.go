// Package isolate runs processes in one Linux sandbox: a long-lived init
// inside new user, pid, mount, uts, ipc, net and cgroup namespaces, rooted in
// an overlay of a read-only image under a tmpfs writable layer, with kernel
// limits from cgroups (v1 and v2 through opencontainers/cgroups) and rlimits.
//
// # The init and its protocol
//
// The sandbox's init is the corral binary re-executed (runc's pattern) from
// a sealed memfd copy, so that nothing in the sandbox can rewrite the host
// binary through /proc/self/exe. Its argv[0] is "corral-init"; main calls
// [IsInit] and [RunInit] before anything else. It is pid 1 of its pid
// namespace and root only inside its user namespace, whose ids map to an
// unprivileged host range (one range per sandbox slot).
//
// The parent and the init talk over a SOCK_SEQPACKET unix socket pair (fd 4 in
// the init): one JSON [message] per packet, file descriptors passed with
// SCM_RIGHTS, except for the requests of every job's turn: spawn, kill,
// park and reset are binary packets (spawn_linux.h) that the init serves
// without leaving C (loop_linux.c, reset_linux.c) — it also reaps there and
// writes the exited and ready (binary) and error replies itself, so a job's
// turn wakes none of the init's Go runtime threads. Go handles the rest
// (config, put, collect) between two calls of that loop. The init's stderr is its log channel;
// errors are structured replies ([InitError] names the step that failed).
//
//	parent                                   init (pid 1)
//	  | --- config ---------------------------> |  mounts the stage, pivot_root,
//	  |                                         |  /proc, /dev, loopback, hostname
//	  | <-- ready | error{step,errno} --------- |
//	  | --- park packet {profile} ------------> |  prepares the next process
//	  |     (sent once the parent has read the  |  (no reply)
//	  |     counters that process counts from)  |
//	  | --- spawn packet {argv,env,cwd,rlimits, |
//	  |     flags: reset after (Last)}          |
//	  |     + fds [stdin, stdout, stderr] ----> |  wakes the prepared process,
//	  |                                         |  or clone(CLONE_VM|CLONE_VFORK)
//	  | <-- error{step,errno} (never started) - |
//	  | --- kill (wall limit, output cap) ----> |  kill(-1, SIGKILL)
//	  | <-- exited{status,wall,counters} ------ |  main process gone, rest
//	  |                                         |  killed, all reaped; the job
//	  |                                         |  cgroup's counters read
//	  | <-- ready{kept,parked,usage} | error -- |  after a Last spawn: the reset
//	  |                                         |  at once, then the next process
//	  | --- reset packet {disk_bytes,profile} > |  new tmpfs upper and overlay,
//	  | <-- ready{kept,parked,usage} ---------- |  /proc, /dev, /dev/shm again
//	  |                                         |  (or the unchanged layer kept);
//	  |                                         |  memory usage read, then the
//	  |                                         |  next process prepared
//	  | --- park packet {profile} ------------> |  after a step with More
//	  | --- (socket closed) ------------------> |  exits; the kernel kills the
//	                                               rest of the pid namespace
//
// # The stage
//
// After setup the init's own root is a small tmpfs (the stage) holding the
// image layers (read-only binds) and the mount points of the writable
// layer and the job root:
//
//	/lower/0..n   image layers, top first
//	/rw           tmpfs sized by disk_bytes: upper/ and work/ of the overlay
//	/rw/root      the overlay: the job's root
//	/proc, /dev   instances moved into each new job root (in its namespace)
//
// The init's own mount table does not change after setup. Each writable
// layer is built by a short-lived child at the reset, in new mount and IPC
// namespaces that the init keeps by fd: it mounts /rw and /rw/root, moves
// its copies of /proc and /dev into the job root, mounts /dev/shm, and
// moves the job root onto the stage's root, which it covers. Every job
// process joins both namespaces (setns), so it never sees the stage. A
// reset closes the old namespaces, which takes the old layer with them,
// and makes new ones with a new Landlock ruleset, whose rules hold the new
// layer's inodes. An old IPC namespace without a System V object waits to
// be closed with others (one RCU grace period for several). A layer that
// its job left exactly as it was built (every writable inode's statx
// stamp, change time included, as when it was built; the kernel's
// multigrain timestamps make a change always move it) is kept, unless
// Config.FreshLayers. The IPC namespace is new only after a job that made
// a System V call, which the zygote's seccomp filter reports to the init
// as a user notification. docs/sandbox.md says why both are sound. The
// init reaches the job root through an O_PATH fd, to write and collect
// the job's files.
//
// # The job's process
//
// Between clone and exec the child runs C code with raw system calls only
// (spawn_linux.c): signal handlers reset (clone3 CLONE_CLEAR_SIGHAND), own
// session, job cgroup and cgroup namespace, the layer's mount and IPC
// namespaces (setns), empty capability sets with locked securebits, the
// job's uid and gid, no_new_privs, Landlock, then cwd, stdio, every other fd
// closed, rlimits, seccomp last, exec. The init prepares the next process
// ahead of its request, up to and including its seccomp filter for the
// default profile (see docs/sandbox.md, "Prepared processes").
package isolate
