// Package client submits jobs to corral workers over NATS and waits for
// their results, following the wire protocol (PROTOCOL.md). It needs only a
// *nats.Conn; it creates no streams (workers do).
//
//	c, err := client.New(nc, client.WithQueue("judge"))
//	res, err := c.Run(ctx, &jobs.Job{Cmd: []string{"echo", "hi"}})
//
// Submit publishes a job with JetStream, so the server acknowledges it, and
// sets Nats-Msg-Id to the job id, so a retried submit does not run the job
// twice. Before it publishes, it subscribes to the job's reply subject with
// core NATS; Pending.Wait returns the first result for the job that arrives
// there. A result the subscription cannot see — it was published before the
// subscription (a re-submitted job that already ran) or while the connection
// was down — is read back from the CORRAL_RESULTS stream, which stores every
// result published under corral.results.>.
package client

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/corralhq/corral/jobs"
)

// ErrNoStream is returned by Submit when no JetStream stream captures the
// queue's subject: CORRAL_JOBS does not exist yet (no worker has started) or
// the server has no JetStream.
var ErrNoStream = errors.New("no stream captures the job subject")

// lookupTimeout bounds one read of a stored result.
const lookupTimeout = 5 * time.Second

// Client submits jobs and waits for their results. It is safe for
// concurrent use.
type Client struct {
	nc           *nats.Conn
	js           jetstream.JetStream
	queue        string
	resultStream string

	mu      sync.Mutex
	results jetstream.Stream // cached handle of resultStream, nil until found
}

// Option configures a Client.
type Option func(*Client) error

// WithQueue sets the queue jobs are submitted to. Default "default".
func WithQueue(queue string) Option {
	return func(c *Client) error {
		if !jobs.ValidQueue(queue) {
			return fmt.Errorf("client: queue %q must be 1 to %d of A-Z, a-z, 0-9, '_' and '-'", queue, jobs.MaxIDLen)
		}
		c.queue = queue
		return nil
	}
}

// WithJetStream sets the JetStream context used to publish jobs and read
// stored results, for a JetStream domain or API prefix. Default
// jetstream.New on the connection.
func WithJetStream(js jetstream.JetStream) Option {
	return func(c *Client) error {
		if js == nil {
			return errors.New("client: nil JetStream")
		}
		c.js = js
		return nil
	}
}

// WithResultStream sets the stream a result is read back from when the
// subscription to the reply subject missed it; "" turns that fallback off
// (for a submitter not allowed to read streams). Default CORRAL_RESULTS.
// Only reply subjects under corral.results. are looked up there.
func WithResultStream(name string) Option {
	return func(c *Client) error {
		c.resultStream = name
		return nil
	}
}

// New returns a client that uses nc. It does not talk to the server.
func New(nc *nats.Conn, opts ...Option) (*Client, error) {
	if nc == nil {
		return nil, errors.New("client: nil connection")
	}
	c := &Client{nc: nc, queue: jobs.DefaultQueue, resultStream: jobs.StreamResults}
	for _, opt := range opts {
		if err := opt(c); err != nil {
			return nil, err
		}
	}
	if c.js == nil {
		js, err := jetstream.New(nc)
		if err != nil {
			return nil, fmt.Errorf("client: %w", err)
		}
		c.js = js
	}
	return c, nil
}

// Queue returns the queue the client submits to.
func (c *Client) Queue() string { return c.queue }

// NewID returns a random job id: 32 hex digits, valid per jobs.ValidID.
func NewID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails
	return hex.EncodeToString(b[:])
}

// Submit publishes job to corral.jobs.Q of the client's queue and returns
// once the server has stored it. It fills job.ID with NewID() if it is empty
// and job.ReplyTo with corral.results.ID if it is empty; an invalid id or
// reply subject is a *jobs.RejectError and nothing is published. Other
// fields are checked by the worker, which answers an invalid job with a
// rejected result.
//
// The returned Pending is subscribed to the reply subject, and for a job
// with its own reply_to also to corral.results.ID, where a worker answers
// when it may not use that reply_to (a queue's reply_prefixes refusing it,
// or the worker's NATS permissions); call Wait for the result, or Close if
// you do not.
func (c *Client) Submit(ctx context.Context, job *jobs.Job) (*Pending, error) {
	if job == nil {
		return nil, errors.New("client: nil job")
	}
	if job.ID == "" {
		job.ID = NewID()
	}
	if !jobs.ValidID(job.ID) {
		return nil, &jobs.RejectError{Field: "id", Reason: fmt.Sprintf("%q must be 1 to %d of A-Z, a-z, 0-9, '_' and '-'", job.ID, jobs.MaxIDLen)}
	}
	if job.ReplyTo == "" {
		job.ReplyTo = jobs.ResultSubject(job.ID)
	}
	if err := jobs.ReplySubjectAllowed(job.ReplyTo, nil); err != nil {
		return nil, err
	}
	data, err := json.Marshal(job)
	if err != nil {
		return nil, fmt.Errorf("client: encode job %s: %w", job.ID, err)
	}

	// Subscribe before publishing: the result cannot overtake the
	// subscription, since both go over this one connection in order.
	p := &Pending{ID: job.ID, Queue: c.queue, Subject: job.ReplyTo, c: c, done: make(chan struct{})}
	subjects := []string{p.Subject}
	if def := jobs.ResultSubject(job.ID); def != p.Subject {
		subjects = append(subjects, def)
	}
	for _, subj := range subjects {
		sub, err := c.nc.Subscribe(subj, p.onMsg)
		if err != nil {
			p.Close()
			return nil, fmt.Errorf("client: subscribe to %s: %w", subj, err)
		}
		p.subs = append(p.subs, sub)
	}

	msg := &nats.Msg{Subject: jobs.JobSubject(c.queue), Data: data, Header: nats.Header{}}
	msg.Header.Set(jobs.HeaderMsgID, job.ID)
	p.Ack, err = c.js.PublishMsg(ctx, msg, jetstream.WithExpectStream(jobs.StreamJobs))
	if err != nil {
		p.Close()
		if errors.Is(err, jetstream.ErrNoStreamResponse) {
			err = fmt.Errorf("%w %s (%w)", ErrNoStream, msg.Subject, err)
		}
		return nil, fmt.Errorf("client: submit job %s to queue %s: %w", job.ID, c.queue, err)
	}
	return p, nil
}

// Run submits job and waits for its result: Submit, then Pending.Wait.
func (c *Client) Run(ctx context.Context, job *jobs.Job) (*jobs.Result, error) {
	p, err := c.Submit(ctx, job)
	if err != nil {
		return nil, err
	}
	defer p.Close()
	return p.Wait(ctx)
}

// Cancel asks the workers to cancel job id (a message to corral.cancel.ID)
// and returns once the server has received it. A job that has not started
// yet is cancelled when it does; cancelling a finished job does nothing.
func (c *Client) Cancel(ctx context.Context, id string) error {
	if !jobs.ValidID(id) {
		return fmt.Errorf("client: cancel: invalid job id %q", id)
	}
	if err := c.nc.Publish(jobs.CancelSubject(id), nil); err != nil {
		return fmt.Errorf("client: cancel job %s: %w", id, err)
	}
	if err := c.flush(ctx); err != nil {
		return fmt.Errorf("client: cancel job %s: %w", id, err)
	}
	return nil
}

// Output subscribes to the live output of job id (corral.output.ID) and
// calls fn for each chunk, in order, from one goroutine: stream is
// jobs.OutputStdout or jobs.OutputStderr, step the step's name, seq the
// chunk's number (1, 2, ... per job; 0 if the header is missing or bad) and
// data the raw bytes, which fn may keep. Live output is core
// NATS and not stored: subscribe before submitting a job with
// stream_output, or chunks are lost. ctx bounds only setting up the
// subscription (Output returns once the server has it); the subscription
// lasts until unsubscribe is called or the connection closes.
func (c *Client) Output(ctx context.Context, id string, fn func(stream, step string, seq int, data []byte)) (unsubscribe func(), err error) {
	if !jobs.ValidID(id) {
		return nil, fmt.Errorf("client: output: invalid job id %q", id)
	}
	if fn == nil {
		return nil, errors.New("client: output: nil func")
	}
	sub, err := c.nc.Subscribe(jobs.OutputSubject(id), func(m *nats.Msg) {
		seq, _ := strconv.Atoi(m.Header.Get(jobs.HeaderSeq))
		fn(m.Header.Get(jobs.HeaderStream), m.Header.Get(jobs.HeaderStep), seq, m.Data)
	})
	if err != nil {
		return nil, fmt.Errorf("client: output of job %s: %w", id, err)
	}
	if err := c.flush(ctx); err != nil {
		_ = sub.Unsubscribe()
		return nil, fmt.Errorf("client: output of job %s: %w", id, err)
	}
	return func() { _ = sub.Unsubscribe() }, nil
}

// flush waits until the server has everything sent so far, bounded by ctx
// or, when ctx has no deadline, by the connection's flush timeout.
func (c *Client) flush(ctx context.Context) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
	}
	return c.nc.FlushWithContext(ctx)
}

// storedResult returns the last message stored under subject in the result
// stream, or nil if there is none, the stream does not exist, the fallback is
// off or subject is not under corral.results.
func (c *Client) storedResult(ctx context.Context, subject string) ([]byte, error) {
	if c.resultStream == "" || !strings.HasPrefix(subject, jobs.SubjectResults) {
		return nil, nil
	}
	s, err := c.resultsStream(ctx)
	if s == nil || err != nil {
		return nil, err
	}
	msg, err := s.GetLastMsgForSubject(ctx, subject)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read stored result %s from stream %s: %w", subject, c.resultStream, err)
	}
	return msg.Data, nil
}

// resultsStream returns the cached handle of the result stream, looking it
// up the first time; nil if it does not exist (yet).
func (c *Client) resultsStream(ctx context.Context) (jetstream.Stream, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.results != nil {
		return c.results, nil
	}
	s, err := c.js.Stream(ctx, c.resultStream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("look up stream %s: %w", c.resultStream, err)
	}
	c.results = s
	return s, nil
}

// Pending is a submitted job whose result has not been read yet.
type Pending struct {
	// ID is the job's id.
	ID string
	// Queue is the queue it was submitted to.
	Queue string
	// Subject is the reply subject its result is published to.
	Subject string
	// Ack is the server's acknowledgement of the job message. Ack.Duplicate
	// is set when the server already had a job with this id within the
	// duplicate window and dropped this one; the job then runs once, and
	// Wait still returns its result.
	Ack *jetstream.PubAck

	c      *Client
	subs   []*nats.Subscription
	closeq atomic.Bool // Close was called

	once   sync.Once
	done   chan struct{} // closed once res or err is set
	res    *jobs.Result
	err    error
	closed sync.Once
}

// Wait returns the job's result, decoded. It returns the result that
// arrives on the reply subject, or the one stored in CORRAL_RESULTS when the
// subscription missed it: the submit was a duplicate (Ack.Duplicate) of a job
// that may have run before the subscription existed, or the connection
// reconnected and the result was published while it was down. (Job ids are
// meant to be unique: an id reused after the duplicate window may find the
// older job's stored result after a reconnect.) A result that is
// not valid JSON is an error. When ctx ends first, Wait returns an error
// wrapping ctx.Err() and the Pending stays subscribed, so Wait may be called
// again. Wait may be called any number of times; once it has a result it
// always returns it.
func (p *Pending) Wait(ctx context.Context) (*jobs.Result, error) {
	select {
	case <-p.done:
		return p.res, p.err
	default:
	}
	// Closed, it hears nothing more: only the stored result is left.
	closed := p.closeq.Load()
	status := p.c.nc.StatusChanged(nats.CONNECTED, nats.CLOSED)
	defer p.c.nc.RemoveStatusListener(status)
	if p.c.nc.IsClosed() {
		p.finish(nil, fmt.Errorf("client: result of job %s: %w", p.ID, nats.ErrConnectionClosed))
	}

	// Lookups run beside the loop, so that a request lost in a reconnect
	// does not hold up a result arriving on the subscription; they end
	// when Wait returns.
	lookupCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	lookups := make(chan error)
	lookup := func() {
		go func() {
			ctx, cancel := context.WithTimeout(lookupCtx, lookupTimeout)
			defer cancel()
			// A result routed to subscribers may not be stored yet: look
			// again for a while before settling for "not there".
			err := p.lookup(ctx)
			for err == errNotStored {
				select {
				case <-ctx.Done():
					err = nil
				case <-time.After(100 * time.Millisecond):
					err = p.lookup(ctx)
				}
			}
			select {
			case lookups <- err:
			case <-lookupCtx.Done():
			}
		}()
	}
	// The subscription was made before the job was published, so it sees
	// the result of a new job; a duplicate may have run long before, and
	// its result can only be in the stream.
	if p.Ack != nil && p.Ack.Duplicate || closed {
		lookup()
	}
	var lookupErr error
	for {
		select {
		case <-p.done:
			return p.res, p.err
		case st := <-status:
			if st == nats.CLOSED {
				p.finish(nil, fmt.Errorf("client: result of job %s: %w", p.ID, nats.ErrConnectionClosed))
				continue
			}
			// Reconnected: the result may have been published while the
			// subscription was away.
			lookup()
		case lookupErr = <-lookups:
		case <-ctx.Done():
			err := fmt.Errorf("client: waiting for the result of job %s: %w", p.ID, ctx.Err())
			if cause := context.Cause(ctx); cause != ctx.Err() {
				err = fmt.Errorf("%w (%v)", err, cause)
			}
			if lookupErr != nil {
				err = fmt.Errorf("%w (stored result: %v)", err, lookupErr)
			}
			return nil, err
		}
	}
}

// lookup reads the stored result, if any, and delivers it: on the reply
// subject, else on the default one, where a worker that could not use the
// job's own reply_to sent it.
func (p *Pending) lookup(ctx context.Context) error {
	for _, subj := range []string{p.Subject, jobs.ResultSubject(p.ID)} {
		data, err := p.c.storedResult(ctx, subj)
		if err != nil {
			return err
		}
		if data != nil {
			p.deliver(subj, data)
			return nil
		}
		if subj == jobs.ResultSubject(p.ID) {
			break
		}
	}
	return errNotStored
}

// errNotStored: the result stream holds no result for the job (yet).
var errNotStored = errors.New("no stored result")

// onMsg handles a message on the reply subject or the default one.
func (p *Pending) onMsg(m *nats.Msg) { p.deliver(m.Subject, m.Data) }

// deliver decodes a message from the reply subject and finishes the Pending
// if it is this job's result. On a shared reply subject results of other
// jobs, and messages that are not results, are skipped; on the job's own
// default subject a message that is not a result is an error.
func (p *Pending) deliver(subject string, data []byte) {
	var res jobs.Result
	if err := json.Unmarshal(data, &res); err != nil {
		if subject == jobs.ResultSubject(p.ID) {
			p.finish(nil, fmt.Errorf("client: result of job %s: %w", p.ID, err))
		}
		return
	}
	if res.ID != p.ID {
		return
	}
	p.finish(&res, nil)
}

// finish sets the outcome once and releases the subscription.
func (p *Pending) finish(res *jobs.Result, err error) {
	p.once.Do(func() {
		p.res, p.err = res, err
		close(p.done)
		p.Close()
	})
}

// Close releases the subscriptions. It is idempotent; Wait calls it once
// it has the result. After Close, Wait can only return a result it already
// has or one stored in CORRAL_RESULTS, which it then looks up.
func (p *Pending) Close() {
	p.closed.Do(func() {
		p.closeq.Store(true)
		for _, s := range p.subs {
			_ = s.Unsubscribe()
		}
	})
}
