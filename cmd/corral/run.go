package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/corralhq/corral/client"
	"github.com/corralhq/corral/jobs"
)

// defaultNATSURL is the server `corral up` listens on.
const defaultNATSURL = "nats://127.0.0.1:4222"

// natsFlags are the connection flags of the commands that talk to workers.
type natsFlags struct {
	url   *string
	creds *string
	queue *string
}

func addNATSFlags(fs *flag.FlagSet) *natsFlags {
	url, creds := addConnFlags(fs)
	return &natsFlags{
		url:   url,
		creds: creds,
		queue: fs.String("queue", jobs.DefaultQueue, "queue to submit to"),
	}
}

// addConnFlags adds --nats and --creds, the connection flags of every
// command that talks to a deployment.
func addConnFlags(fs *flag.FlagSet) (url, creds *string) {
	def := os.Getenv("CORRAL_NATS")
	if def == "" {
		def = defaultNATSURL
	}
	return fs.String("nats", def, "NATS server URL (default from $CORRAL_NATS)"),
		fs.String("creds", "", "NATS credentials file")
}

// dialNATS connects as the client commands do, saying what to try when it
// cannot.
func dialNATS(name, url, creds string) (*nats.Conn, error) {
	opts := []nats.Option{nats.Name(name), nats.Timeout(5 * time.Second), nats.MaxReconnects(-1)}
	if creds != "" {
		opts = append(opts, nats.UserCredentials(creds))
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, fmt.Errorf("cannot connect to NATS at %s: %v (start a server and a worker with 'corral up', or pass --nats / set CORRAL_NATS)", url, err)
	}
	return nc, nil
}

// connect connects to NATS and returns a client for the queue.
func (nf *natsFlags) connect(name string) (*nats.Conn, *client.Client, error) {
	if !jobs.ValidQueue(*nf.queue) {
		return nil, nil, fmt.Errorf("--queue %q: must be 1 to %d of A-Z, a-z, 0-9, '_' and '-'", *nf.queue, jobs.MaxIDLen)
	}
	nc, err := dialNATS(name, *nf.url, *nf.creds)
	if err != nil {
		return nil, nil, err
	}
	c, err := client.New(nc, client.WithQueue(*nf.queue))
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, c, nil
}

// explainSubmitError turns a failed submit into a one-line hint.
// warnNoWorker says on stderr, as cmd, when no worker has served queue
// yet: CORRAL_JOBS takes the job all the same, and it waits, maybe for
// ever, for a worker of that queue (a typo in --queue, say).
func warnNoWorker(ctx context.Context, nc *nats.Conn, queue, cmd string) {
	js, err := jetstream.New(nc)
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	_, err = js.Consumer(ctx, jobs.StreamJobs, jobs.ConsumerName(queue))
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		fmt.Fprintf(os.Stderr, "corral %s: no worker has served queue %q yet (no consumer %s on %s): the job waits until one does (Ctrl-C or --timeout gives up)\n",
			cmd, queue, jobs.ConsumerName(queue), jobs.StreamJobs)
	}
}

func explainSubmitError(err error, url, queue string) error {
	if errors.Is(err, client.ErrNoStream) {
		return fmt.Errorf("no job stream at %s for queue %q: no worker has started there yet (run 'corral up', or 'corral worker --nats %s --queue %s')", url, queue, url, queue)
	}
	return err
}

func cmdRun(ctx context.Context, args []string) error {
	fs := newFlagSet("run", "corral run [FLAGS] -- CMD [ARGS...]",
		`Submits one job to a queue through NATS, waits for a worker to run it, and
prints what the command printed, exiting with its exit code (128+N when killed
by signal N; a limit breach is named on stderr). A job the worker refuses
(rejected), that expired or that it could not run (internal_error) prints
the worker's error on stderr and exits 1. With --json, prints the whole
result (PROTOCOL.md) instead and exits 0 only when its status is ok.
Flags go before the command: everything from the command on is its own.

--file LOCAL[:PATH] copies a local file into /work (as PATH, else as LOCAL
when that is a relative path inside the current directory, else as its base
name), keeping its mode bits. --collect PATTERN copies matching files out of
/work after the command, into the current directory under the same paths
(not with --json, whose result carries them). Limits are checked locally
against the protocol maxima; a queue may have lower ones. Ctrl-C cancels the
job. The server is --nats, else $CORRAL_NATS, else `+defaultNATSURL+`.

Examples:
  corral run -- sh -c 'echo hello from $(hostname)'
  corral run --file main.py --stdin in.txt --wall 5s -- python3 main.py
  corral run --file ./src/a.c:a.c --collect a.out -- cc -O2 a.c
  corral run --stream --queue build -- make -j4
  corral run --json --memory 64M -- sh -c 'yes > /dev/null'`)
	nf := addNATSFlags(fs)
	var (
		image   = fs.String("image", "", "image to run in (default: the queue's default image)")
		cwd     = fs.String("cwd", "", "working directory inside the sandbox (default /work)")
		stdin   = fs.String("stdin", "", "file to use as standard input, - for this one's (default: empty)")
		seccomp = fs.String("seccomp", "", "system call profile: default or strict (default: the queue's)")
		stream  = fs.Bool("stream", false, "print output live as the job runs (to stderr with --json)")
		timeout = fs.Duration("timeout", 0, "give up (and cancel the job) after this long; 0 waits until the result comes, however long")
		asJSON  = fs.Bool("json", false, "print the result as JSON instead of the output; do not write collected files")
		env     listFlag
		files   listFlag
		collect listFlag
		labels  listFlag
		network = fs.String("network", "", "network: none or egress (default none)")
		jobID   = fs.String("id", "", "job id (default: a random one)")
	)
	fs.Var(&env, "env", "set an environment variable KEY=VALUE (repeatable)")
	fs.Var(&files, "file", "copy a local file into /work, LOCAL or LOCAL:PATH (repeatable)")
	fs.Var(&collect, "collect", "path or glob under /work to copy back into the current directory (repeatable)")
	fs.Var(&labels, "label", "label KEY=VALUE echoed in the result (repeatable)")
	limitFlags := addLimitFlags(fs, "the queue's")
	argv, err := parseCommand(fs, args)
	if err != nil {
		return err
	}
	if len(argv) == 0 {
		fs.Usage()
		return errors.New("no command given (put it after --)")
	}

	job := &jobs.Job{
		ID:           *jobID,
		Image:        *image,
		Cmd:          argv,
		Cwd:          *cwd,
		Seccomp:      jobs.Seccomp(*seccomp),
		Network:      jobs.Network(*network),
		StreamOutput: *stream,
		Collect:      collect,
		Limits:       limitFlags.limits(),
	}
	if job.ID == "" {
		job.ID = client.NewID()
	}
	if job.Env, err = keyValues("env", env); err != nil {
		return err
	}
	if job.Labels, err = keyValues("label", labels); err != nil {
		return err
	}
	for _, spec := range files {
		f, err := readJobFile(spec)
		if err != nil {
			return err
		}
		job.Files = append(job.Files, f)
	}
	if *stdin != "" {
		var in []byte
		if *stdin == "-" {
			in, err = io.ReadAll(os.Stdin)
		} else {
			in, err = os.ReadFile(*stdin)
		}
		if err != nil {
			return fmt.Errorf("--stdin: %w", err)
		}
		if utf8.Valid(in) {
			job.Stdin = string(in)
		} else {
			job.StdinB64 = base64.StdEncoding.EncodeToString(in)
		}
	}
	// The worker checks everything again, against its queue's maxima, which
	// may be lower than the protocol's; this catches mistakes before a round
	// trip.
	if err := job.Validate(jobs.MaxLimits()); err != nil {
		return fmt.Errorf("invalid job (checked locally, nothing submitted): %v", err)
	}

	nc, c, err := nf.connect("corral-run")
	if err != nil {
		return err
	}
	defer nc.Close()
	if len(job.Files) > 0 || len(job.Stdin)+len(job.StdinB64) > 0 {
		// As Submit will send it: with an id (32 characters when
		// generated), its reply_to, and the Nats-Msg-Id header.
		probe := *job
		if probe.ID == "" {
			probe.ID = strings.Repeat("x", 32)
		}
		if probe.ReplyTo == "" {
			probe.ReplyTo = jobs.ResultSubject(probe.ID)
		}
		if b, err := json.Marshal(&probe); err == nil && int64(len(b)+len(probe.ID)+64) > nc.MaxPayload() {
			return fmt.Errorf("the job is %d bytes with its files and stdin, and its headers, above the server's max payload %d; put large inputs in an object store and reference them with \"object\" (see PROTOCOL.md)", len(b)+len(probe.ID)+64, nc.MaxPayload())
		}
	}

	// Live output: subscribed before submitting, or chunks are lost.
	live := &liveOutput{stdout: os.Stdout, stderr: os.Stderr}
	if *asJSON {
		live.stdout = os.Stderr
	}
	if *stream {
		// Output flushes, which needs a context with a deadline.
		octx, cancel := context.WithTimeout(ctx, 10*time.Second)
		unsub, err := c.Output(octx, job.ID, live.write)
		cancel()
		if err != nil {
			return err
		}
		defer unsub()
	}

	waitCtx := ctx
	if *timeout > 0 {
		var cancel context.CancelFunc
		waitCtx, cancel = context.WithTimeout(ctx, *timeout)
		defer cancel()
	}
	p, err := c.Submit(waitCtx, job)
	if err != nil {
		if waitCtx.Err() != nil && jobs.ValidID(job.ID) {
			// Interrupted while publishing: the server may have stored
			// the job all the same. Cancel it, as after it was stored.
			cctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			if c.Cancel(cctx, job.ID) == nil {
				fmt.Fprintf(os.Stderr, "corral run: interrupted while submitting; cancelled job %s in case the server had it\n", job.ID)
			}
		}
		return explainSubmitError(err, *nf.url, *nf.queue)
	}
	defer p.Close()
	warnNoWorker(waitCtx, nc, *nf.queue, "run")
	res, err := p.Wait(waitCtx)
	if err != nil {
		if waitCtx.Err() == nil {
			return err
		}
		// Interrupted or timed out: cancel the job, which may be queued or
		// running, before leaving.
		cctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		cerr := c.Cancel(cctx, job.ID)
		what := "interrupted"
		code := 130
		if ctx.Err() == nil {
			what, code = fmt.Sprintf("no result within %v", *timeout), 1
		}
		if cerr != nil {
			fmt.Fprintf(os.Stderr, "corral run: %s; could not cancel job %s: %v\n", what, job.ID, cerr)
		} else {
			fmt.Fprintf(os.Stderr, "corral run: %s; cancelled job %s\n", what, job.ID)
		}
		return exitError{code}
	}
	if *stream && len(res.Steps) > 0 {
		live.catchUp(res.Steps[len(res.Steps)-1])
	}

	if *asJSON {
		return printJSON(res, res.Status == jobs.StatusOK)
	}

	collectErr := writeCollected(ctx, nc, res.Files)
	code := printResult(res, !*stream)
	if collectErr != nil {
		fmt.Fprintf(os.Stderr, "corral run: collected files: %v\n", collectErr)
		if code == 0 {
			code = 1
		}
	}
	if code != 0 {
		return exitError{code}
	}
	return nil
}

// printResult prints the output of the job's step (unless it was streamed)
// and returns the exit code `corral run` exits with, like `corral exec`.
func printResult(res *jobs.Result, printOutput bool) int {
	switch res.Status {
	case jobs.StatusRejected, jobs.StatusExpired, jobs.StatusInternalError:
		if len(res.Steps) == 0 || res.Status != jobs.StatusInternalError {
			msg := res.Error
			if msg == "" {
				msg = "(no error given)"
			}
			fmt.Fprintf(os.Stderr, "corral: job %s %s: %s\n", res.ID, res.Status, msg)
			return 1
		}
	}
	if len(res.Steps) == 0 {
		fmt.Fprintf(os.Stderr, "corral: job %s ended %s without running a step: %s\n", res.ID, res.Status, res.Error)
		return 1
	}
	st := res.Steps[len(res.Steps)-1]
	code := printStep(&st, printOutput)
	if st.Status != jobs.StatusOK && st.Status != jobs.StatusNonzeroExit && res.Error != "" {
		fmt.Fprintf(os.Stderr, "corral: %s\n", res.Error)
	}
	return code
}

// keyValues parses repeated KEY=VALUE flags into a map (nil when none).
func keyValues(flagName string, kvs []string) (map[string]string, error) {
	if len(kvs) == 0 {
		return nil, nil
	}
	m := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--%s %q: want KEY=VALUE", flagName, kv)
		}
		m[k] = v
	}
	return m, nil
}

// readJobFile reads --file LOCAL[:PATH] into a job file.
func readJobFile(spec string) (jobs.File, error) {
	local, dest := spec, ""
	if i := strings.LastIndexByte(spec, ':'); i >= 0 {
		if _, err := os.Stat(spec); err != nil { // "a:b" is a rename unless a file has that name
			local, dest = spec[:i], spec[i+1:]
		}
	}
	if dest == "" {
		dest = filepath.ToSlash(local)
		if _, err := jobs.SafeRelPath(dest); err != nil || filepath.IsAbs(local) {
			dest = filepath.Base(local)
		}
	}
	clean, err := jobs.SafeRelPath(dest)
	if err != nil {
		return jobs.File{}, fmt.Errorf("--file %q: %v", spec, err)
	}
	fi, err := os.Stat(local)
	if err != nil {
		return jobs.File{}, fmt.Errorf("--file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return jobs.File{}, fmt.Errorf("--file %q: not a regular file", local)
	}
	b, err := os.ReadFile(local)
	if err != nil {
		return jobs.File{}, fmt.Errorf("--file: %w", err)
	}
	f := jobs.File{Path: clean, Mode: jobs.FileMode(fi.Mode().Perm())}
	if utf8.Valid(b) {
		f.Content = string(b)
	} else {
		f.ContentB64 = base64.StdEncoding.EncodeToString(b)
	}
	return f, nil
}

// writeCollected writes collected files into the current directory under
// their paths. It refuses a path that is absolute or has a ".." element
// (the worker never sends one; this is defence in depth) and, through
// os.Root, never follows a symlink out of the directory.
func writeCollected(ctx context.Context, nc *nats.Conn, files []jobs.CollectedFile) error {
	if len(files) == 0 {
		return nil
	}
	root, err := os.OpenRoot(".")
	if err != nil {
		return err
	}
	defer root.Close()
	var errs []error
	for _, f := range files {
		if err := writeCollectedFile(ctx, nc, root, f); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func writeCollectedFile(ctx context.Context, nc *nats.Conn, root *os.Root, f jobs.CollectedFile) error {
	if strings.HasPrefix(f.Path, "/") || filepath.IsAbs(f.Path) {
		return fmt.Errorf("refusing absolute path %q", f.Path)
	}
	p, err := jobs.SafeRelPath(f.Path)
	if err != nil {
		return fmt.Errorf("refusing %v", err)
	}
	var data []byte
	if f.Object != "" {
		data, err = fetchObject(ctx, nc, f.Object)
	} else {
		data, err = f.Bytes()
	}
	if err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	if dir := path.Dir(p); dir != "." {
		if err := root.MkdirAll(filepath.FromSlash(dir), 0o755); err != nil {
			return err
		}
	}
	w, err := root.OpenFile(filepath.FromSlash(p), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := w.Write(data); err != nil {
		w.Close()
		return err
	}
	return w.Close()
}

// fetchObject reads a collected file the worker put in an object store.
func fetchObject(ctx context.Context, nc *nats.Conn, ref string) ([]byte, error) {
	bucket, name, err := jobs.SplitObject(ref)
	if err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	store, err := js.ObjectStore(ctx, bucket)
	if err != nil {
		return nil, fmt.Errorf("object store %s: %w", bucket, err)
	}
	return store.GetBytes(ctx, name)
}

// liveOutput writes live output chunks and remembers how much of each
// stream it wrote, so that chunks lost or still in flight when the result
// arrives can be made up from the result.
type liveOutput struct {
	stdout, stderr io.Writer

	mu      sync.Mutex
	step    string
	wrote   [2]int64 // stdout, stderr bytes of step
	changed chan struct{}
}

func (l *liveOutput) write(stream, step string, seq int, data []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if step != l.step {
		l.step, l.wrote = step, [2]int64{}
	}
	i, w := 0, l.stdout
	if stream == jobs.OutputStderr {
		i, w = 1, l.stderr
	}
	w.Write(data)
	l.wrote[i] += int64(len(data))
	if l.changed != nil {
		close(l.changed)
		l.changed = nil
	}
}

// catchUp waits briefly for the chunks of the result's last step that are
// still in flight (live output and the result are delivered by different
// subscriptions), then writes whatever is still missing from the result.
func (l *liveOutput) catchUp(st jobs.StepResult) {
	out := [2][]byte{outputBytes(st.Stdout, st.StdoutB64), outputBytes(st.Stderr, st.StderrB64)}
	deadline := time.After(500 * time.Millisecond)
	for {
		l.mu.Lock()
		if l.step != st.Name {
			l.step, l.wrote = st.Name, [2]int64{}
		}
		if l.wrote[0] >= int64(len(out[0])) && l.wrote[1] >= int64(len(out[1])) {
			l.mu.Unlock()
			return
		}
		ch := make(chan struct{})
		l.changed = ch
		l.mu.Unlock()
		select {
		case <-ch:
			continue
		case <-deadline:
		}
		break
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	ws := [2]io.Writer{l.stdout, l.stderr}
	for i := range out {
		if l.wrote[i] < int64(len(out[i])) {
			ws[i].Write(out[i][l.wrote[i]:])
			l.wrote[i] = int64(len(out[i]))
		}
	}
	l.step = "\x00done" // later chunks belong to nothing we print
	l.stdout, l.stderr = io.Discard, io.Discard
}
