package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/corralhq/corral/jobs"
)

// deadJob is one job kept in CORRAL_DEAD, as `dead ls` shows it.
type deadJob struct {
	Seq      uint64    `json:"seq"`
	DeadAt   time.Time `json:"dead_at"`
	Queue    string    `json:"queue"`
	ID       string    `json:"id"`
	Attempts int       `json:"attempts"`
	Error    string    `json:"error"`
	body     []byte
}

func newDeadJob(seq uint64, at time.Time, subject string, h nats.Header, body []byte) deadJob {
	d := deadJob{Seq: seq, DeadAt: at.UTC(), Queue: strings.TrimPrefix(subject, jobs.SubjectDead),
		ID: h.Get(jobs.HeaderJobID), Error: h.Get(jobs.HeaderError), body: body}
	d.Attempts, _ = strconv.Atoi(h.Get(jobs.HeaderAttempts))
	if d.ID == "" { // kept by a worker from before Corral-Job-Id
		d.ID = jobs.Peek(body).ID
	}
	return d
}

func cmdDead(ctx context.Context, args []string) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		deadUsage()
		if len(args) == 0 {
			return exitError{2}
		}
		return nil
	}
	switch args[0] {
	case "ls":
		return cmdDeadLs(ctx, args[1:])
	case "replay":
		return cmdDeadReplay(ctx, args[1:])
	}
	fmt.Fprintf(os.Stderr, "corral dead: unknown subcommand %q\n", args[0])
	deadUsage()
	return exitError{2}
}

func deadUsage() {
	fmt.Fprint(os.Stderr, `Usage: corral dead ls [--nats URL] [--creds FILE] [--queue Q] [--json]
       corral dead replay [--nats URL] [--creds FILE] (SEQ... | --all [--queue Q]) [--keep] [--force]

Jobs that could not be run (a failure inside the worker, or every delivery
lost) get an internal_error result and a copy in the stream CORRAL_DEAD, kept
7 days. 'ls' lists them; 'replay' publishes each one's body to its queue
again (corral.jobs.Q, Nats-Msg-Id the job's id, so its result keeps the id)
and then removes the copy, unless --keep.

Run 'corral dead ls --help' or 'corral dead replay --help' for the flags.
`)
}

// deadFlags are the flags both subcommands take.
type deadFlags struct {
	url, creds, queue *string
}

func addDeadFlags(fs *flag.FlagSet) *deadFlags {
	url, creds := addConnFlags(fs)
	return &deadFlags{
		url:   url,
		creds: creds,
		queue: fs.String("queue", "", "only the dead jobs of this queue (default: all)"),
	}
}

// open connects and returns the connection, its JetStream and CORRAL_DEAD.
func (df *deadFlags) open(ctx context.Context) (*nats.Conn, jetstream.JetStream, jetstream.Stream, error) {
	if *df.queue != "" && !jobs.ValidQueue(*df.queue) {
		return nil, nil, nil, fmt.Errorf("--queue %q: must be 1 to %d of A-Z, a-z, 0-9, '_' and '-'", *df.queue, jobs.MaxIDLen)
	}
	nc, err := dialNATS("corral-dead", *df.url, *df.creds)
	if err != nil {
		return nil, nil, nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, nil, err
	}
	s, err := js.Stream(ctx, jobs.StreamDead)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		nc.Close()
		return nil, nil, nil, fmt.Errorf("no stream %s at %s: no worker has started there yet", jobs.StreamDead, *df.url)
	}
	if err != nil {
		nc.Close()
		return nil, nil, nil, err
	}
	return nc, js, s, nil
}

// readDead reads every dead job (of queue, when set) in sequence order, with an
// ordered consumer that ends where the stream ended when it started.
func readDead(ctx context.Context, s jetstream.Stream, queue string) ([]deadJob, error) {
	info, err := s.Info(ctx)
	if err != nil {
		return nil, err
	}
	if info.State.Msgs == 0 {
		return nil, nil
	}
	cfg := jetstream.OrderedConsumerConfig{}
	if queue != "" {
		cfg.FilterSubjects = []string{jobs.DeadSubject(queue)}
	}
	c, err := s.OrderedConsumer(ctx, cfg)
	if err != nil {
		return nil, err
	}
	var out []deadJob
	last := info.State.LastSeq
	for {
		batch, err := c.FetchNoWait(256)
		if err != nil {
			return nil, err
		}
		n := 0
		for m := range batch.Messages() {
			n++
			meta, err := m.Metadata()
			if err != nil {
				return nil, err
			}
			out = append(out, newDeadJob(meta.Sequence.Stream, meta.Timestamp, m.Subject(), m.Headers(), m.Data()))
			if meta.Sequence.Stream >= last || meta.NumPending == 0 {
				return out, batch.Error()
			}
		}
		if err := batch.Error(); err != nil {
			return nil, err
		}
		if n == 0 {
			return out, nil
		}
	}
}

func cmdDeadLs(ctx context.Context, args []string) error {
	fs := newFlagSet("dead ls", "corral dead ls [--nats URL] [--creds FILE] [--queue Q] [--json]",
		`Lists the jobs kept in CORRAL_DEAD, oldest first: the stream sequence (what
'replay' takes), when the job died, its queue, id, deliveries and why.`)
	df := addDeadFlags(fs)
	asJSON := fs.Bool("json", false, "print one JSON object per line")
	if pos, err := parseInterspersed(fs, args); err != nil {
		return err
	} else if len(pos) > 0 {
		return fmt.Errorf("dead ls takes no arguments, got %q", pos)
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	nc, _, s, err := df.open(ctx)
	if err != nil {
		return err
	}
	defer nc.Close()
	dead, err := readDead(ctx, s, *df.queue)
	if err != nil {
		return fmt.Errorf("reading %s: %w", jobs.StreamDead, err)
	}
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		for _, d := range dead {
			if err := enc.Encode(d); err != nil {
				return err
			}
		}
		return nil
	}
	if len(dead) == 0 {
		fmt.Fprintln(os.Stderr, "no dead jobs")
		return nil
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tDEAD AT\tQUEUE\tID\tATTEMPTS\tERROR")
	for _, d := range dead {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%s\n", d.Seq, d.DeadAt.Format(time.RFC3339), d.Queue, d.ID, d.Attempts, d.Error)
	}
	return tw.Flush()
}

func cmdDeadReplay(ctx context.Context, args []string) error {
	fs := newFlagSet("dead replay", "corral dead replay [--nats URL] [--creds FILE] (SEQ... | --all [--queue Q]) [--keep] [--force]",
		`Publishes dead jobs to their queues again and removes their copies from
CORRAL_DEAD (keeps them with --keep). Each goes to corral.jobs.Q with
Nats-Msg-Id set to the job's id: its result has the same id as before, and a
second replay of it within the queue's duplicate window (2 minutes) is
dropped by CORRAL_JOBS.

A job that died less than CORRAL_RESULTS' duplicate window ago is refused
unless --force: its first result (internal_error) holds its id in that
window, so a stored result of the replay would be dropped as a duplicate.`)
	df := addDeadFlags(fs)
	allJobs := fs.Bool("all", false, "replay every dead job (of --queue, when given)")
	keep := fs.Bool("keep", false, "keep the copies in CORRAL_DEAD")
	force := fs.Bool("force", false, "replay jobs that died within the results' duplicate window too")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if *allJobs == (len(pos) > 0) {
		return errors.New("name the jobs to replay by sequence (see 'corral dead ls'), or pass --all")
	}
	var seqs []uint64
	for _, p := range pos {
		n, err := strconv.ParseUint(p, 10, 64)
		if err != nil || n == 0 {
			return fmt.Errorf("%q is not a sequence number (see 'corral dead ls')", p)
		}
		seqs = append(seqs, n)
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	nc, js, s, err := df.open(ctx)
	if err != nil {
		return err
	}
	defer nc.Close()
	window := 2 * time.Minute
	if rs, err := js.Stream(ctx, jobs.StreamResults); err == nil {
		window = rs.CachedInfo().Config.Duplicates
	}
	var dead []deadJob
	if *allJobs {
		if dead, err = readDead(ctx, s, *df.queue); err != nil {
			return fmt.Errorf("reading %s: %w", jobs.StreamDead, err)
		}
	}
	for _, seq := range seqs {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			return fmt.Errorf("dead job %d: %w", seq, err)
		}
		d := newDeadJob(m.Sequence, m.Time, m.Subject, m.Header, m.Data)
		if *df.queue != "" && d.Queue != *df.queue {
			return fmt.Errorf("dead job %d is of queue %s, not %s", seq, d.Queue, *df.queue)
		}
		dead = append(dead, d)
	}
	failed := 0
	for _, d := range dead {
		if err := replay(ctx, js, s, d, window, *keep, *force); err != nil {
			fmt.Fprintf(os.Stderr, "dead job %d (%s): %v\n", d.Seq, d.ID, err)
			failed++
			continue
		}
		fmt.Printf("replayed %d: job %s to queue %s\n", d.Seq, d.ID, d.Queue)
	}
	if failed > 0 {
		return exitError{1}
	}
	if len(dead) == 0 {
		fmt.Fprintln(os.Stderr, "no dead jobs")
	}
	return nil
}

// replay publishes one dead job to its queue and removes its copy.
func replay(ctx context.Context, js jetstream.JetStream, s jetstream.Stream, d deadJob, window time.Duration, keep, force bool) error {
	if !jobs.ValidQueue(d.Queue) {
		return fmt.Errorf("subject %s%s names no queue", jobs.SubjectDead, d.Queue)
	}
	if age := time.Since(d.DeadAt); age < window && !force {
		return fmt.Errorf("died %s ago, within the results' duplicate window (%s): its replay's result would be dropped; wait, or pass --force", age.Round(time.Second), window)
	}
	m := nats.NewMsg(jobs.JobSubject(d.Queue))
	m.Data = d.body
	if d.ID != "" {
		m.Header.Set(jobs.HeaderMsgID, d.ID)
	}
	ack, err := js.PublishMsg(ctx, m)
	if err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	if ack.Duplicate {
		return errors.New("CORRAL_JOBS dropped it as a duplicate: it was published with this id less than 2 minutes ago")
	}
	if keep {
		return nil
	}
	if err := s.DeleteMsg(ctx, d.Seq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		return fmt.Errorf("replayed, but removing the copy failed: %w", err)
	}
	return nil
}
