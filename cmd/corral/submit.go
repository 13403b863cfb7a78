package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/corralhq/corral/client"
	"github.com/corralhq/corral/jobs"
)

func cmdSubmit(ctx context.Context, args []string) error {
	fs := newFlagSet("submit", "corral submit [FLAGS] FILE.jsonl|-",
		`Submits the jobs of a JSON Lines file (one job object per line, PROTOCOL.md;
"-" reads standard input) and writes their results as JSON lines on stdout,
one per job, in the order of the input, keeping up to --inflight jobs
submitted and waiting at once. Blank lines are skipped.

Each line is published as it is (its fields are not re-encoded, so a field
the worker does not know is rejected, not dropped). A job without an id gets
"submit-RANDOM-LINE", where LINE is its line number. A line that is not a
valid job, not even JSON, is still submitted and gets the worker's rejected
result. A line whose result could never be told apart (an id that is not
[A-Za-z0-9_-]{1,64}, or an id an earlier line gave another job: the stream
would drop it as a duplicate) gets a rejected result made locally, without
submitting; the same job repeated under its id gets its result again;
a line that cannot be submitted (larger than the server's max payload) or
whose result does not come (--timeout, Ctrl-C: such jobs are cancelled)
gets a result made locally with status internal_error and attempt 0.

A progress bar is drawn on stderr when it is a terminal; a summary line is
printed there at the end. Exits 0 when every job got a result, whatever its
status, and 1 otherwise. The server is --nats, else $CORRAL_NATS, else
`+defaultNATSURL+`.

Examples:
  corral submit jobs.jsonl > results.jsonl
  generate-jobs | corral submit --queue judge --inflight 256 - | jq .status`)
	nf := addNATSFlags(fs)
	inflight := fs.Int("inflight", 64, "jobs submitted and waiting for their results at once")
	timeout := fs.Duration("timeout", 0, "give up waiting after this long (0: wait for every result)")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		fs.Usage()
		return errors.New("want one FILE.jsonl, or - for standard input")
	}
	if *inflight < 1 {
		return fmt.Errorf("--inflight %d: must be at least 1", *inflight)
	}
	var in io.Reader = os.Stdin
	if pos[0] != "-" {
		f, err := os.Open(pos[0])
		if err != nil {
			return err
		}
		defer f.Close()
		in = f
	}
	nc, _, err := nf.connect("corral-submit")
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	if *timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *timeout)
		defer cancel()
	}
	s := &submitter{
		nc: nc, js: js, queue: *nf.queue, url: *nf.url,
		slots:  make(chan struct{}, *inflight),
		prefix: "submit-" + client.NewID()[:8] + "-",
		start:  time.Now(),
		out:    bufio.NewWriter(os.Stdout),
	}
	return s.run(ctx, in, *inflight)
}

// submitter runs one `corral submit`.
type submitter struct {
	nc     *nats.Conn
	js     jetstream.JetStream
	queue  string
	url    string
	slots  chan struct{} // one per job in flight
	prefix string        // of generated ids
	start  time.Time
	out    *bufio.Writer

	read, done, ok, failed atomic.Int64
	eof                    atomic.Bool
	byStatus               map[jobs.Status]int // failed results by status
	missing                int                 // lines without a real result

	mu      sync.Mutex
	pending map[*entry]bool // submitted, waiting for a result

	// ids: the line and body of each id a line gave itself (dispatch's
	// goroutine only). A second line with the same id and another body
	// would be dropped as a duplicate and get the first one's result.
	ids map[string]idUse
}

type idUse struct {
	line int
	sum  [sha256.Size]byte
}

// entry is one job line on its way to a result.
type entry struct {
	line int    // 1-based line number
	id   string // the id its result carries
	done chan struct{}
	once sync.Once
	res  []byte      // result line (compact JSON)
	stat jobs.Status // its status
	real bool        // the result came from a worker (or is a local rejection)
	mu   sync.Mutex  // guards subs while submit subscribes
	subs []*nats.Subscription
	slot bool // holds a slot
	s    *submitter
}

// finish sets the entry's result once and releases its slot and
// subscriptions.
func (e *entry) finish(res []byte, stat jobs.Status, real bool) {
	e.once.Do(func() {
		e.res, e.stat, e.real = res, stat, real
		e.mu.Lock()
		for _, sub := range e.subs {
			_ = sub.Unsubscribe()
		}
		e.subs = nil
		e.mu.Unlock()
		if e.slot {
			<-e.s.slots
		}
		e.s.mu.Lock()
		delete(e.s.pending, e)
		e.s.mu.Unlock()
		close(e.done)
	})
}

// deliver handles a message that may be the entry's result.
func (e *entry) deliver(data []byte) {
	var r struct {
		ID     string      `json:"id"`
		Status jobs.Status `json:"status"`
	}
	if json.Unmarshal(data, &r) != nil || r.ID != e.id {
		return // another job's result on a shared reply subject, or junk
	}
	var buf bytes.Buffer
	if json.Compact(&buf, data) != nil {
		return
	}
	e.finish(buf.Bytes(), r.Status, true)
}

// localResult finishes the entry with a result made here: status and an
// error saying why; attempt 0 tells it apart from a worker's.
func (e *entry) localResult(stat jobs.Status, msg string, real bool) {
	r := jobs.Result{ID: e.id, Queue: e.s.queue, Status: stat, Error: "corral submit: line " + strconv.Itoa(e.line) + ": " + msg}
	b, _ := json.Marshal(r)
	e.finish(b, stat, real)
}

func (s *submitter) run(ctx context.Context, in io.Reader, inflight int) error {
	s.pending = map[*entry]bool{}
	s.byStatus = map[jobs.Status]int{}
	// Entries go to the writer in input order; the channel's capacity
	// bounds how far submitting may run ahead of a slow first result.
	window := max(16*inflight, 1024)
	ordered := make(chan *entry, window)
	writerDone := make(chan error, 1)
	go func() { writerDone <- s.write(ordered) }()

	warnNoWorker(ctx, s.nc, s.queue, "submit")
	stopProgress := s.progress()
	defer stopProgress()

	// A reconnect may have lost results published while the connection was
	// down: read those from the result stream.
	status := s.nc.StatusChanged(nats.CONNECTED)
	defer s.nc.RemoveStatusListener(status)
	go func() {
		for range status {
			s.mu.Lock()
			es := make([]*entry, 0, len(s.pending))
			for e := range s.pending {
				es = append(es, e)
			}
			s.mu.Unlock()
			for _, e := range es {
				go s.lookup(ctx, e)
			}
		}
	}()

	readErr, fatal := s.dispatch(ctx, in, ordered)
	close(ordered)

	// Wait for the results, or give up when ctx ends.
	var waitErr error
	allDone := make(chan struct{})
	go func() {
		<-writerDone
		close(allDone)
	}()
	select {
	case <-allDone:
	case <-ctx.Done():
		waitErr = ctx.Err()
		s.mu.Lock()
		es := make([]*entry, 0, len(s.pending))
		for e := range s.pending {
			es = append(es, e)
		}
		s.mu.Unlock()
		why := "no result: interrupted"
		if errors.Is(waitErr, context.DeadlineExceeded) {
			why = "no result within --timeout"
		}
		// Cancel the jobs still out there, as `corral run` does.
		for _, e := range es {
			_ = s.nc.Publish(jobs.CancelSubject(e.id), nil)
		}
		fctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		_ = s.nc.FlushWithContext(fctx)
		cancel()
		for _, e := range es {
			e.localResult(jobs.StatusInternalError, why+" (cancelled)", false)
		}
		<-allDone
	}
	stopProgress()
	if err := s.out.Flush(); err != nil {
		return err
	}
	s.summary(waitErr)
	switch {
	case fatal != nil:
		return fatal
	case readErr != nil:
		return readErr
	case s.missing > 0 || waitErr != nil:
		return exitError{1}
	}
	return nil
}

// dispatch reads job lines and submits them, queueing an entry for each
// non-blank line. It returns a read error, or a fatal error that stops
// submitting (no job stream).
func (s *submitter) dispatch(ctx context.Context, in io.Reader, ordered chan<- *entry) (readErr, fatal error) {
	defer s.eof.Store(true)
	maxLine := int(s.nc.MaxPayload())
	r := bufio.NewReaderSize(in, 64<<10)
	lineNo := 0
	for ctx.Err() == nil {
		line, size, err := readLine(r, maxLine+1)
		if err != nil && err != io.EOF {
			return fmt.Errorf("read: %w", err), nil
		}
		if size == 0 && err == io.EOF {
			return nil, nil
		}
		lineNo++
		trimmed := bytes.TrimSpace(line)
		if size <= maxLine && len(trimmed) == 0 {
			if err == io.EOF {
				return nil, nil
			}
			continue
		}
		s.read.Add(1)
		e := &entry{line: lineNo, done: make(chan struct{}), s: s}
		if size > maxLine {
			e.id = s.prefix + strconv.Itoa(lineNo)
			if id := leadingID(line); id != "" {
				e.id = id // its own, when it comes first: the line is cut
			}
			e.localResult(jobs.StatusInternalError, fmt.Sprintf("not submitted: the line is %d bytes, above the server's max payload %d", size, maxLine), false)
		} else if ferr := s.submit(ctx, e, trimmed); ferr != nil {
			e.localResult(jobs.StatusInternalError, "not submitted: "+ferr.Error(), false)
			if errors.Is(ferr, jetstream.ErrNoStreamResponse) {
				fatal = explainSubmitError(fmt.Errorf("%w: %v", client.ErrNoStream, ferr), s.url, s.queue)
			}
		}
		select {
		case ordered <- e:
		case <-ctx.Done():
			return nil, nil
		}
		if fatal != nil {
			return nil, fatal
		}
		if err == io.EOF {
			return nil, nil
		}
	}
	return nil, nil
}

// readLine reads one line without its newline, keeping at most limit bytes
// of it; size is its full length.
func readLine(r *bufio.Reader, limit int) (line []byte, size int, err error) {
	for {
		chunk, err := r.ReadSlice('\n')
		size += len(chunk)
		if len(line) < limit {
			n := min(len(chunk), limit-len(line))
			line = append(line, chunk[:n]...)
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err == nil { // ends in '\n'
			size--
			line = bytes.TrimSuffix(line, []byte{'\n'})
		}
		return line, size, err
	}
}

// submit publishes one job line as it is (with an id added when it has
// none) and subscribes to where its result will go. The returned error
// means it was not submitted; the caller then finishes e, which releases
// its slot and subscriptions.
func (s *submitter) submit(ctx context.Context, e *entry, body []byte) error {
	id, replyTo, hasID, rejectMsg := peekJob(body)
	if rejectMsg != "" {
		// The worker would publish the rejection under a generated id,
		// which nothing here could wait for: reject it here instead.
		e.id = id
		e.localResult(jobs.StatusRejected, rejectMsg+" (rejected locally, not submitted)", true)
		return nil
	}
	if id == "" {
		id = s.prefix + strconv.Itoa(e.line)
		if !hasID && len(body) > 0 && body[0] == '{' {
			// A JSON object without an id: write the id in. (A line that
			// does not parse, or whose id is null or not a string, takes
			// it from Nats-Msg-Id.)
			var top map[string]json.RawMessage
			if json.Unmarshal(body, &top) == nil && top != nil {
				idField := `{"id":` + strconv.Quote(id)
				if len(top) == 0 {
					body = []byte(idField + "}")
				} else {
					body = append([]byte(idField+","), body[1:]...)
				}
			}
		}
	}
	if hasID && id != "" {
		sum := sha256.Sum256(body)
		if first, ok := s.ids[id]; ok && first.sum != sum {
			e.id = id
			e.localResult(jobs.StatusRejected, fmt.Sprintf("id %q is line %d's, which is another job: the stream would drop this one as a duplicate (rejected locally, not submitted)", id, first.line), true)
			return nil
		} else if !ok {
			if s.ids == nil {
				s.ids = map[string]idUse{}
			}
			s.ids[id] = idUse{line: e.line, sum: sum}
		}
	}
	e.id = id
	msg := nats.NewMsg(jobs.JobSubject(s.queue))
	msg.Data = body
	msg.Header.Set(jobs.HeaderMsgID, id)
	if size := len(body) + len(id) + 64; size > int(s.nc.MaxPayload()) {
		return fmt.Errorf("the job is %d bytes with its headers, above the server's max payload %d", size, s.nc.MaxPayload())
	}

	// Take a slot, then subscribe before publishing, so the result cannot
	// arrive unseen.
	select {
	case s.slots <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	e.slot = true
	subjects := []string{jobs.ResultSubject(id)}
	if replyTo != "" && replyTo != subjects[0] && jobs.ReplySubjectAllowed(replyTo, nil) == nil {
		// A queue may refuse this reply subject and answer on the default
		// one: listen on both.
		subjects = append(subjects, replyTo)
	}
	s.mu.Lock()
	s.pending[e] = true
	s.mu.Unlock()
	// A result can arrive before all subscriptions are made (an id used by
	// an earlier line): finish waits for e.mu.
	e.mu.Lock()
	for _, subj := range subjects {
		sub, err := s.nc.Subscribe(subj, func(m *nats.Msg) { e.deliver(m.Data) })
		if err != nil {
			e.mu.Unlock()
			return fmt.Errorf("subscribe to %s: %w", subj, err)
		}
		e.subs = append(e.subs, sub)
	}
	e.mu.Unlock()
	ack, err := s.js.PublishMsg(ctx, msg, jetstream.WithExpectStream(jobs.StreamJobs))
	if err != nil {
		if ctx.Err() != nil {
			// Interrupted while publishing: the server may have stored
			// the job all the same. Cancel it, as the jobs still waiting.
			_ = s.nc.Publish(jobs.CancelSubject(id), nil)
		}
		return err
	}
	if ack.Duplicate {
		// The server already had this id: the job ran (or runs) once, and
		// its result may be stored already.
		go s.lookup(ctx, e)
	}
	return nil
}

// peekJob reads what submit needs from a job line: the id (if a valid
// string), the reply_to (if a string), whether an "id" key is present, and
// why the line must be rejected here (an id that is a string but not a
// valid id).
func peekJob(body []byte) (id, replyTo string, hasID bool, reject string) {
	var top map[string]json.RawMessage
	if json.Unmarshal(body, &top) != nil || top == nil {
		return "", "", false, ""
	}
	_ = json.Unmarshal(top["reply_to"], &replyTo)
	if replyTo != "" {
		// Not subscribed to: a subject NATS refuses (too long) would
		// close this connection for every job.
		if err := jobs.ReplySubjectAllowed(replyTo, nil); err != nil {
			return "", "", false, err.Error()
		}
	}
	raw, hasID := top["id"]
	var s string
	if hasID && json.Unmarshal(raw, &s) == nil && s != "" && !jobs.ValidID(s) {
		return s, replyTo, true, fmt.Sprintf("id: %q is not a valid id ([A-Za-z0-9_-]{1,%d})", s, jobs.MaxIDLen)
	}
	return s, replyTo, hasID, ""
}

// lookup reads e's result from the result stream, if it is stored there.
func (s *submitter) lookup(ctx context.Context, e *entry) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	st, err := s.js.Stream(ctx, jobs.StreamResults)
	if err != nil {
		return
	}
	m, err := st.GetLastMsgForSubject(ctx, jobs.ResultSubject(e.id))
	if err != nil {
		return
	}
	e.deliver(m.Data)
}

// write writes the results in input order and counts them.
func (s *submitter) write(ordered <-chan *entry) error {
	var werr error
	for e := range ordered {
		<-e.done
		if werr == nil {
			s.out.Write(e.res)
			werr = s.out.WriteByte('\n')
		}
		if !e.real {
			s.missing++
		}
		if e.stat == jobs.StatusOK {
			s.ok.Add(1)
		} else {
			s.byStatus[e.stat]++
			s.failed.Add(1)
		}
		s.done.Add(1)
	}
	return werr
}

// summary prints "N jobs: A ok, B failed (...) in T" to stderr.
func (s *submitter) summary(waitErr error) {
	type kv struct {
		st jobs.Status
		n  int
	}
	var parts []kv
	for st, n := range s.byStatus {
		parts = append(parts, kv{st, n})
	}
	sort.Slice(parts, func(i, j int) bool {
		if parts[i].n != parts[j].n {
			return parts[i].n > parts[j].n
		}
		return parts[i].st < parts[j].st
	})
	var b strings.Builder
	n := s.done.Load()
	fmt.Fprintf(&b, "%d job%s: %d ok, %d failed", n, plural(n), s.ok.Load(), s.failed.Load())
	if len(parts) > 0 {
		strs := make([]string, len(parts))
		for i, p := range parts {
			strs[i] = fmt.Sprintf("%d %s", p.n, p.st)
		}
		fmt.Fprintf(&b, " (%s)", strings.Join(strs, ", "))
	}
	fmt.Fprintf(&b, " in %.1fs", time.Since(s.start).Seconds())
	if s.missing > 0 {
		fmt.Fprintf(&b, "; %d without a result from a worker", s.missing)
	}
	if waitErr != nil {
		if errors.Is(waitErr, context.DeadlineExceeded) {
			b.WriteString(" (timed out)")
		} else {
			b.WriteString(" (interrupted)")
		}
	}
	fmt.Fprintln(os.Stderr, b.String())
}

func plural(n int64) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// stderrIsTerminal reports whether stderr is a terminal.
func stderrIsTerminal() bool {
	fi, err := os.Stderr.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// progress draws a progress bar on stderr, if it is a terminal, until the
// returned function is called (which may be called more than once).
func (s *submitter) progress() (stop func()) {
	if !stderrIsTerminal() {
		return func() {}
	}
	quit := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-quit:
				fmt.Fprint(os.Stderr, "\r\x1b[K")
				return
			case <-t.C:
				s.drawProgress()
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			close(quit)
			<-finished
		})
	}
}

func (s *submitter) drawProgress() {
	done, total := s.done.Load(), s.read.Load()
	totalStr := strconv.FormatInt(total, 10)
	if !s.eof.Load() {
		totalStr += "+"
	}
	const width = 30
	filled := 0
	if total > 0 {
		filled = int(done * width / total)
	}
	rate := float64(done) / max(time.Since(s.start).Seconds(), 1e-3)
	fmt.Fprintf(os.Stderr, "\r\x1b[K[%s%s] %d/%s, %d ok, %d failed, %.1f jobs/s",
		strings.Repeat("#", filled), strings.Repeat("-", width-filled),
		done, totalStr, s.ok.Load(), s.failed.Load(), rate)
}

// leadingIDPattern is a job line that starts with its id.
var leadingIDPattern = regexp.MustCompile(`^\s*\{\s*"id"\s*:\s*"([A-Za-z0-9_-]{1,64})"`)

// leadingID returns the id a (maybe cut) job line starts with, or "".
func leadingID(line []byte) string {
	if m := leadingIDPattern.FindSubmatch(line); m != nil {
		return string(m[1])
	}
	return ""
}
