package worker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/corralhq/corral/jobs"
	"github.com/corralhq/corral/netpool"
	"github.com/corralhq/corral/rootfs"
)

// Config configures a worker.
type Config struct {
	// Queues the worker serves. Default: the queue "default" with
	// protocol defaults.
	Queues []QueueConfig
	// Slots is how many jobs run at once. Default: one per CPU.
	Slots int
	// Spare is how many warm sandboxes beyond the slots are kept for the
	// queues' default images, so that a job does not wait for the reset of
	// the sandbox the previous job used. Default 1; negative: none.
	Spare int
	// Warm are warm sandboxes kept for images other than the queues'
	// default images, image name → count.
	Warm map[string]int
	// Pool configures the sandboxes; Max defaults to Slots + Spare +
	// WarmEgress + the Warm counts.
	Pool PoolConfig
	// Streams and Consumer configure JetStream (PROTOCOL.md defaults).
	Streams  StreamConfig
	Consumer ConsumerConfig
	// Grace is how long a stopping worker lets running jobs finish before
	// it hands them back. Default 30 s.
	Grace time.Duration
	// Egress, when set, serves jobs with network "egress": their
	// sandboxes get a lease (a veth into the sandbox's network namespace)
	// that they keep while warm. Nil: such jobs are rejected. The worker
	// does not start or stop it.
	Egress Egress
	// WarmEgress is how many sandboxes of the first queue's image are kept
	// warm with their egress network attached, so that an egress job pays
	// no network setup. Default 0 (made on demand).
	WarmEgress int
	// Host and Version are reported in results. Default: the hostname and
	// "dev".
	Host, Version string
	// Log is the worker's logger. Default: none.
	Log *zap.Logger
	// Metrics, when set, registers the worker's Prometheus metrics
	// (metrics.go names them). Default: none registered.
	Metrics prometheus.Registerer
}

// WithDefaults returns the config with unset fields defaulted.
func (c Config) WithDefaults() Config {
	if len(c.Queues) == 0 {
		c.Queues = []QueueConfig{{}}
	}
	for i := range c.Queues {
		c.Queues[i] = c.Queues[i].WithDefaults()
	}
	if c.Slots <= 0 {
		c.Slots = runtime.NumCPU()
	}
	switch {
	case c.Spare == 0:
		c.Spare = 1
	case c.Spare < 0:
		c.Spare = 0
	}
	if c.Pool.Max <= 0 {
		c.Pool.Max = c.Slots + c.Spare + c.WarmEgress
		for _, n := range c.Warm {
			c.Pool.Max += n
		}
	}
	if c.Pool.DiskBytes <= 0 {
		// Warm sandboxes fit the first queue's jobs; another queue's
		// default size costs its jobs a reset to that size.
		c.Pool.DiskBytes = c.Queues[0].Defaults.DiskBytes
	}
	c.Streams = c.Streams.WithDefaults()
	c.Consumer = c.Consumer.WithDefaults()
	if c.Grace <= 0 {
		c.Grace = 30 * time.Second
	}
	if c.Host == "" {
		c.Host, _ = os.Hostname()
	}
	if c.Version == "" {
		c.Version = "dev"
	}
	if c.Log == nil {
		c.Log = zap.NewNop()
	}
	if c.Pool.Log == nil {
		c.Pool.Log = c.Log
	}
	return c
}

// Validate reports the first invalid setting.
func (c Config) Validate() error {
	seen := map[string]bool{}
	for _, q := range c.Queues {
		if err := q.Validate(); err != nil {
			return err
		}
		if seen[q.Name] {
			return fmt.Errorf("queue %s configured twice", q.Name)
		}
		seen[q.Name] = true
	}
	if err := c.Streams.Validate(); err != nil {
		return err
	}
	return c.Consumer.Validate()
}

// Egress is what the worker needs of the egress network pool
// (*netpool.Pool).
type Egress interface {
	Attach(ctx context.Context, netnsPath string, allow []netpool.Allow) (*netpool.Lease, error)
}

// Worker pulls jobs from JetStream and runs them in warm sandboxes.
type Worker struct {
	cfg  Config
	nc   *nats.Conn
	js   jetstream.JetStream
	pool *sandboxPool
	// replyMu serializes publishing to jobs' own reply subjects: the
	// connection keeps only its last error, so two refusals that
	// overlapped would hide one of them (publishTo).
	replyMu sync.Mutex
	objs    ObjectStore
	log     *zap.Logger

	metrics *metrics
	busy    atomic.Int64 // slots running a job
	ready   atomic.Bool  // pulling jobs: started, not stopping

	slots chan struct{} // one token per free slot
	// finishing holds a token per job whose result is being published
	// after its slot was freed.
	finishing chan struct{}
	ackWait   time.Duration // the shortest ack wait of the consumers
	// maxDeliver is each queue's consumer's MaxDeliver, as in force.
	maxDeliver map[string]int
	// lastRunning counts the running jobs on their last delivery, which
	// Stop does not hand back.
	lastRunning atomic.Int64
	cancels     *cancelRegistry

	stopOnce sync.Once
	stopping chan struct{} // closed: fetch no more
	hardStop context.CancelCauseFunc
	hardCtx  context.Context
	running  sync.WaitGroup
	loops    sync.WaitGroup
	subs     []*nats.Subscription
	// consumes are the callback consumers: each queue's max-deliveries
	// advisories, and the stray jobs.
	consumes []jetstream.ConsumeContext

	// work hands fetched jobs to the idle runners (see runner).
	work chan func()
}

// errShutdown is the cause of a job context cancelled by a stopping worker.
var errShutdown = errors.New("worker shutting down")

// New makes a worker on a NATS connection. Start runs it.
func New(nc *nats.Conn, cfg Config) (*Worker, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	// A PubAck that never comes (a reply_to the server refused) must not
	// stay pending for ever: 4,000 of them would stall every later
	// asynchronous publish.
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncTimeout(10*time.Second))
	if err != nil {
		return nil, err
	}
	pool, err := newSandboxPool(cfg.Pool)
	if err != nil {
		return nil, err
	}
	w := &Worker{
		cfg: cfg, nc: nc, js: js, pool: pool, log: cfg.Log,
		slots:      make(chan struct{}, cfg.Slots),
		finishing:  make(chan struct{}, 2*cfg.Slots),
		work:       make(chan func()),
		cancels:    newCancelRegistry(jobs.CancelMemory),
		maxDeliver: map[string]int{},
		stopping:   make(chan struct{}),
		metrics:    newMetrics(),
	}
	for _, q := range cfg.Queues {
		w.metrics.queue(q.Name)
	}
	if cfg.Metrics != nil {
		if err := w.register(cfg.Metrics); err != nil {
			return nil, err
		}
	}
	for i := 0; i < cfg.Slots; i++ {
		w.slots <- struct{}{}
	}
	w.hardCtx, w.hardStop = context.WithCancelCause(context.Background())
	return w, nil
}

// Start provisions streams and consumers, warms sandboxes and starts
// pulling jobs. It returns once the worker is pulling.
func (w *Worker) Start(ctx context.Context) error {
	mism, err := EnsureStreams(ctx, w.js, w.cfg.Streams)
	if err != nil {
		return fmt.Errorf("streams: %w", err)
	}
	for _, m := range mism {
		w.log.Warn("existing stream differs; used as it is", zap.String("mismatch", m.String()))
	}
	if store, err := EnsureObjectStore(ctx, w.js); err != nil {
		w.log.Warn("no object store: object files and large collected files are unavailable", zap.Error(err))
	} else {
		w.objs = jsObjects{js: w.js, results: store}
	}
	consumers := make([]jetstream.Consumer, len(w.cfg.Queues))
	advisories := make([]jetstream.Consumer, len(w.cfg.Queues))
	w.ackWait = w.cfg.Consumer.AckWait
	for i, q := range w.cfg.Queues {
		c, mism, err := EnsureConsumer(ctx, w.js, q.Name, w.cfg.Consumer)
		if err != nil {
			return fmt.Errorf("queue %s: %w", q.Name, err)
		}
		for _, m := range mism {
			w.log.Warn("existing consumer differs; used as it is", zap.String("mismatch", m.String()))
		}
		// Heartbeats follow the shortest ack wait actually in force.
		if info := c.CachedInfo(); info != nil && info.Config.AckWait > 0 && info.Config.AckWait < w.ackWait {
			w.ackWait = info.Config.AckWait
		}
		// The last delivery is the consumer's, whatever the config says;
		// an existing consumer may deliver without limit (-1).
		if info := c.CachedInfo(); info != nil {
			w.maxDeliver[q.Name] = info.Config.MaxDeliver
			if info.Config.MaxDeliver <= 0 {
				w.maxDeliver[q.Name] = math.MaxInt
			}
		}
		consumers[i] = c
		if advisories[i], err = EnsureAdvisoryConsumer(ctx, w.js, q.Name); err != nil {
			return fmt.Errorf("queue %s: %w", q.Name, err)
		}
	}
	stray, err := EnsureStrayConsumer(ctx, w.js)
	if err != nil {
		return err
	}
	// Warm sandboxes before the first fetch: the queue's default images
	// fill the slots and the spares, then the extra warm images.
	warm := map[string]int{}
	for i := 0; i < w.cfg.Slots+w.cfg.Spare; i++ {
		warm[w.cfg.Queues[i%len(w.cfg.Queues)].Image]++
	}
	for img, n := range w.cfg.Warm {
		warm[img] += n
	}
	for img, n := range warm {
		start := time.Now()
		if err := w.pool.warm(ctx, img, false, n, nil); err != nil {
			return err
		}
		w.log.Info("warm sandboxes ready", zap.String("image", img), zap.Int("count", n), zap.Duration("took", time.Since(start)))
	}
	if w.cfg.WarmEgress > 0 && w.cfg.Egress != nil {
		img := w.cfg.Queues[0].Image
		start := time.Now()
		err := w.pool.warm(ctx, img, true, w.cfg.WarmEgress, func(ps *pooled) error {
			return w.attachEgress(ctx, ps, nil)
		})
		if err != nil {
			return err
		}
		w.log.Info("warm egress sandboxes ready", zap.String("image", img), zap.Int("count", w.cfg.WarmEgress), zap.Duration("took", time.Since(start)))
	}
	sub, err := w.nc.Subscribe(jobs.SubjectCancel+"*", func(m *nats.Msg) {
		w.cancels.cancel(m.Subject[len(jobs.SubjectCancel):])
	})
	if err != nil {
		return err
	}
	w.subs = append(w.subs, sub)
	// A job's slot is free once its processes are done, while its result
	// is still going out (finishing): enough runners for both.
	for range w.cfg.Slots + cap(w.finishing) {
		go w.runner()
	}
	for i, q := range w.cfg.Queues {
		// Few at a time: each takes a few round trips while the ones
		// held behind it wait within their ack wait.
		cc, err := advisories[i].Consume(w.onMaxDeliveries(q), jetstream.PullMaxMessages(16),
			jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
				w.log.Debug("max deliveries: consume", zap.String("queue", q.Name), zap.Error(err))
			}))
		if err != nil {
			return fmt.Errorf("queue %s: %w", q.Name, err)
		}
		w.consumes = append(w.consumes, cc)
		w.loops.Add(1)
		go w.fetchLoop(q, consumers[i])
	}
	cc, err := stray.Consume(w.onStray, jetstream.PullMaxMessages(4),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			w.log.Debug("stray jobs: consume", zap.Error(err))
		}))
	if err != nil {
		return fmt.Errorf("stray jobs: %w", err)
	}
	w.consumes = append(w.consumes, cc)
	w.loops.Add(1)
	go w.strayScanLoop()
	if b, err := os.ReadFile("/proc/sys/fs/file-max"); err == nil {
		fileMax, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		for _, risk := range fileTableRisks(w.cfg.Queues, w.cfg.Slots, fileMax) {
			w.log.Warn("one job could fill the host's file table", zap.String("risk", risk))
		}
	}
	w.ready.Store(true)
	w.log.Info("worker started", zap.Int("slots", w.cfg.Slots), zap.Int("queues", len(w.cfg.Queues)))
	return nil
}

// Ready reports whether the worker pulls jobs: Start has returned, Stop
// has not begun, and the NATS connection is up.
func (w *Worker) Ready() bool {
	return w.ready.Load() && w.nc.IsConnected()
}

// Stop takes no new jobs, lets running ones finish within the grace period,
// hands back (Nak) those still running then, except the ones on their last
// delivery, which it lets run to their end, and closes the sandboxes. It
// blocks until done and is idempotent.
func (w *Worker) Stop() {
	w.stopOnce.Do(func() {
		w.ready.Store(false)
		close(w.stopping)
		w.loops.Wait()
		close(w.work) // no more jobs: the idle runners end
		done := make(chan struct{})
		go func() { w.running.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(w.cfg.Grace):
			w.log.Warn("grace period over: handing running jobs back",
				zap.Int64("on_last_delivery", w.lastRunning.Load())) // those run to their end
			w.hardStop(errShutdown)
			<-done
		}
		for _, cc := range w.consumes {
			cc.Stop()
		}
		for _, s := range w.subs {
			_ = s.Unsubscribe()
		}
		_ = w.nc.Flush()
		w.pool.close()
		w.log.Info("worker stopped")
	})
}

// PoolStats counts what the worker's sandbox pool did since it started.
// Creating a sandbox (cold) and resetting one both happen off a job's
// path: before jobs arrive, or after a job's result.
type PoolStats struct {
	Created    int64         // sandboxes made
	CreateTime time.Duration // the time all of them took
	Resets     int64         // sandboxes reset after a job
	ResetsKept int64         // of those, resets that kept the layer the job left unchanged
	ResetTime  time.Duration // the time all resets took
}

// PoolStats returns what the sandbox pool did so far.
func (w *Worker) PoolStats() PoolStats {
	p := w.pool
	return PoolStats{
		Created:    p.created.Load(),
		CreateTime: time.Duration(p.createNs.Load()),
		Resets:     p.reset.Load(),
		ResetsKept: p.resetKept.Load(),
		ResetTime:  time.Duration(p.resetNs.Load()),
	}
}

// fetchLoop pulls jobs of one queue, never more than there are free slots.
func (w *Worker) fetchLoop(q QueueConfig, cons jetstream.Consumer) {
	defer w.loops.Done()
	for {
		// Wait for one free slot, then take every other free one.
		select {
		case <-w.stopping:
			return
		case <-w.slots:
		}
		n := 1
	more:
		for n < cap(w.slots) {
			select {
			case <-w.slots:
				n++
			default:
				break more
			}
		}
		batch, err := cons.Fetch(n, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			w.release(n)
			if w.consumerGone(q, err) {
				cons = w.recreateConsumer(q, cons, err)
			}
			if !errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				w.metrics.fetchErrors.WithLabelValues(q.Name).Inc()
				w.log.Warn("fetch", zap.String("queue", q.Name), zap.Error(err))
			}
			select {
			case <-w.stopping:
				return
			case <-time.After(500 * time.Millisecond):
			}
			continue
		}
		for msg := range batch.Messages() {
			n--
			w.running.Add(1)
			job := func() {
				defer w.running.Done()
				w.busy.Add(1)
				var once sync.Once
				free := func() { once.Do(func() { w.busy.Add(-1); w.release(1) }) }
				defer free()
				defer w.recoverJob(q, msg)
				w.handle(q, msg, free)
			}
			select {
			case w.work <- job:
			default:
				go job() // no runner waiting at this instant (one between two jobs)
			}
		}
		w.release(n)
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, context.DeadlineExceeded) {
			if w.consumerGone(q, err) {
				cons = w.recreateConsumer(q, cons, err)
				continue
			}
			w.log.Debug("fetch ended", zap.String("queue", q.Name), zap.Error(err))
		}
	}
}

// consumerGone reports whether a fetch failed because the queue's consumer
// no longer exists (deleted by an operator or a tool). A pull request
// pending when it goes is told so; one made after it gets no responders,
// which only asking the server tells from a server with no JetStream.
func (w *Worker) consumerGone(q QueueConfig, err error) bool {
	if errors.Is(err, jetstream.ErrConsumerDeleted) || errors.Is(err, jetstream.ErrConsumerNotFound) ||
		errors.Is(err, jetstream.ErrConsumerDoesNotExist) {
		return true
	}
	if !errors.Is(err, nats.ErrNoResponders) && !errors.Is(err, jetstream.ErrNoStreamResponse) {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, cerr := w.js.Consumer(ctx, jobs.StreamJobs, jobs.ConsumerName(q.Name))
	return errors.Is(cerr, jetstream.ErrConsumerNotFound)
}

// recreateConsumer makes the queue's consumer again, as Start did, and
// returns it (the old one if that fails: the next fetch tries again).
// Without it the worker would go on fetching from nothing, silently.
func (w *Worker) recreateConsumer(q QueueConfig, old jetstream.Consumer, why error) jetstream.Consumer {
	w.log.Warn("the queue's consumer is gone; creating it again", zap.String("queue", q.Name), zap.Error(why))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := EnsureConsumer(ctx, w.js, q.Name, w.cfg.Consumer)
	if err != nil {
		w.log.Warn("creating the queue's consumer again", zap.String("queue", q.Name), zap.Error(err))
		return old
	}
	return c
}

// runner runs the jobs fetchLoop hands over until Stop. Runners live as
// long as the worker: a goroutine per job started on a small stack and
// grew it on every job (JSON, float formatting, the sandbox's Run), which
// cost about 50 µs of stack copying on the job's path (pprof, one job in
// flight).
func (w *Worker) runner() {
	for job := range w.work {
		job()
	}
}

func (w *Worker) release(n int) {
	for i := 0; i < n; i++ {
		w.slots <- struct{}{}
	}
}

// handle runs one job message to its acknowledged result. It calls
// freeSlot once the job's processes are done: the result is published and
// the message acked while the slot already runs the next job.
func (w *Worker) handle(q QueueConfig, msg jetstream.Msg, freeSlot func()) {
	received := time.Now()
	meta, err := msg.Metadata()
	if err != nil {
		w.log.Error("job message without metadata", zap.Error(err))
		_ = msg.Term()
		return
	}
	res := &jobs.Result{
		Queue:   q.Name,
		Attempt: int(meta.NumDelivered),
		Worker:  jobs.WorkerInfo{Host: w.cfg.Host, Version: w.cfg.Version},
		Steps:   []jobs.StepResult{},
	}
	res.Timing.EnqueuedAt = meta.Timestamp
	res.Timing.QueueMs = ms(received.Sub(meta.Timestamp))
	w.metrics.queueWait.WithLabelValues(q.Name).Observe(res.Timing.QueueMs / 1000)
	job, reply, rerr := w.admit(q, msg, res)
	// Lazily: most jobs log nothing at the default level.
	log := w.log.WithLazy(zap.String("job", res.ID), zap.String("queue", q.Name), zap.Int("attempt", res.Attempt))
	if rerr != nil {
		res.Status = jobs.StatusRejected
		res.Error = rerr.Error()
		log.Info("job rejected", zap.String("reason", res.Error))
		w.finish(log, msg, res, reply, false)
		return
	}
	res.Labels = job.Labels
	if job.Expired(received) {
		res.Status = jobs.StatusExpired
		res.Error = "expires_at " + job.ExpiresAt.Format(time.RFC3339) + " passed before the job started"
		w.finish(log, msg, res, reply, false)
		return
	}
	// A job on its last delivery is not handed back when the grace period
	// ends: the server would not deliver it again, so the hand-back would
	// end it as internal_error. It runs to its end, bounded by its limits,
	// and Stop waits for it.
	parent := w.hardCtx
	if res.Attempt >= w.lastDelivery(q) {
		parent = context.Background()
		w.lastRunning.Add(1)
		defer w.lastRunning.Add(-1)
	}
	ctx, cancel := context.WithCancelCause(parent)
	defer cancel(nil)
	if !w.cancels.register(res.ID, cancel) {
		res.Status = jobs.StatusCancelled
		res.Error = "cancelled before it started"
		w.finish(log, msg, res, reply, false)
		return
	}
	defer w.cancels.unregister(res.ID)

	hbStop := w.heartbeat(msg)
	outcome, healthy, runErr := w.run(ctx, q, job, res, log)
	hbStop()
	res.Timing.FinishedAt = time.Now()
	// The sandbox is back in the pool: let the slot take the next job
	// while this one's result goes out, but never let more results than
	// that wait for the server.
	w.finishing <- struct{}{}
	defer func() { <-w.finishing }()
	freeSlot()

	if context.Cause(ctx) == errShutdown {
		// Stopped mid-job: hand it back for another worker, no result.
		log.Info("job handed back on shutdown")
		w.metrics.handedBack.WithLabelValues(q.Name, handBackShutdown).Inc()
		_ = msg.Nak()
		return
	}
	var re *jobs.RejectError
	switch {
	case context.Cause(ctx) == errCancelled:
		// Whatever the cancel interrupted (a step, collecting files,
		// waiting for a sandbox) and whatever error that gave, the job
		// ends cancelled, never retried.
		res.Status = jobs.StatusCancelled
		res.Error = "cancelled through " + jobs.SubjectCancel + res.ID
		if outcome != nil {
			res.Steps = outcome.Steps
			res.Files = outcome.Files
		}
	case errors.As(runErr, &re):
		res.Status = jobs.StatusRejected
		res.Error = re.Error()
		res.Steps = []jobs.StepResult{}
	case runErr != nil:
		res.Status = jobs.StatusInternalError
		res.Error = runErr.Error()
		var pe panicError
		retries := w.lastDelivery(q)
		if retries == math.MaxInt {
			// A consumer without a limit: the worker's bounds the
			// retries of a job that breaks its sandbox.
			retries = w.cfg.Consumer.MaxDeliver
		}
		if res.Attempt < retries && !healthy && !isImageError(runErr) && !errors.As(runErr, &pe) {
			// The sandbox broke: let another attempt (maybe another
			// worker) try it.
			log.Warn("job failed inside the worker; redelivering", zap.Error(runErr))
			w.metrics.handedBack.WithLabelValues(q.Name, handBackSandboxBroken).Inc()
			_ = msg.NakWithDelay(time.Second)
			return
		}
		w.dead(log, q, msg, res)
	default:
		res.Steps = outcome.Steps
		res.Files = outcome.Files
		res.Status = jobs.FinalStatus(res.Steps)
		if len(outcome.Notes) > 0 {
			res.Error = joinNotes(outcome.Notes)
		}
	}
	w.finish(log, msg, res, reply, true)
}

// panicError is a panic while running a job: reported at once, not retried.
type panicError struct{ v any }

func (p panicError) Error() string { return fmt.Sprintf("internal error: %v", p.v) }

func isImageError(err error) bool {
	var ie errImage
	return errors.As(err, &ie)
}

// recoverJob is the last net for a panic outside a job's run (which has its
// own): the job gets an internal_error result and the worker goes on.
func (w *Worker) recoverJob(q QueueConfig, msg jetstream.Msg) {
	r := recover()
	if r == nil {
		return
	}
	w.log.Error("panic while handling a job", zap.Any("panic", r), zap.ByteString("stack", debug.Stack()))
	env := jobs.Peek(msg.Data())
	res := &jobs.Result{
		ID: pickID(env.ID, msg.Headers().Get(jobs.HeaderMsgID)), Queue: q.Name,
		Status: jobs.StatusInternalError, Error: fmt.Sprintf("internal error: %v", r),
		Steps: []jobs.StepResult{}, Worker: jobs.WorkerInfo{Host: w.cfg.Host, Version: w.cfg.Version},
		Labels: env.Labels,
	}
	if meta, err := msg.Metadata(); err == nil {
		res.Attempt = int(meta.NumDelivered)
		res.Timing.EnqueuedAt = meta.Timestamp
	}
	reply := jobs.ResultSubject(res.ID)
	if env.ReplyTo != "" && jobs.ReplySubjectAllowed(env.ReplyTo, q.ReplyPrefixes) == nil {
		reply = env.ReplyTo
	}
	w.finish(w.log, msg, res, reply, true)
}

// admit decodes and validates a job message, filling the result's id. It
// returns the job, the subject for the result, and a rejection.
func (w *Worker) admit(q QueueConfig, msg jetstream.Msg, res *jobs.Result) (*jobs.Job, string, error) {
	data := msg.Data()
	hdrID := msg.Headers().Get(jobs.HeaderMsgID)
	job, err := jobs.Decode(data)
	if err != nil {
		env := jobs.Peek(data)
		res.ID = pickID(env.ID, hdrID)
		res.Labels = env.Labels
		reply := jobs.ResultSubject(res.ID)
		if env.ReplyTo != "" && jobs.ReplySubjectAllowed(env.ReplyTo, q.ReplyPrefixes) == nil {
			reply = env.ReplyTo
		}
		if env.ID != "" && !jobs.ValidID(env.ID) {
			return nil, reply, fmt.Errorf("id: %q is not a valid id ([A-Za-z0-9_-]{1,64}): %w", env.ID, err)
		}
		return nil, reply, err
	}
	res.Labels = job.Labels
	if job.ID == "" {
		job.ID = pickID("", hdrID)
	}
	res.ID = job.ID
	if !jobs.ValidID(job.ID) {
		// The result goes to reply_to if that is valid, else to a
		// generated id; error quotes the bad id.
		res.ID = pickID("", "")
		reply := jobs.ResultSubject(res.ID)
		if job.ReplyTo != "" && jobs.ReplySubjectAllowed(job.ReplyTo, q.ReplyPrefixes) == nil {
			reply = job.ReplyTo
		}
		return nil, reply, fmt.Errorf("id: %q is not a valid id ([A-Za-z0-9_-]{1,64})", job.ID)
	}
	// The queue's reply prefixes bound where a job may send its result;
	// the default subject is always allowed.
	reply := job.ReplySubject()
	if job.ReplyTo != "" {
		if err := jobs.ReplySubjectAllowed(reply, q.ReplyPrefixes); err != nil {
			return nil, jobs.ResultSubject(job.ID), err
		}
	}
	if job.Image == "" {
		job.Image = q.Image
	}
	if err := job.Validate(q.Max); err != nil {
		return nil, reply, err
	}
	if job.Network.OrDefault() == jobs.NetworkEgress && w.cfg.Egress == nil {
		return nil, reply, &jobs.RejectError{Field: "network", Reason: "this worker has no egress: only \"none\" is available"}
	}
	for i, a := range job.EgressAllow {
		if _, err := netpool.ParseAllow(a); err != nil {
			return nil, reply, &jobs.RejectError{Field: fmt.Sprintf("egress_allow[%d]", i), Reason: err.Error()}
		}
	}
	if err := rootfs.ValidateName(job.Image); err != nil {
		return nil, reply, &jobs.RejectError{Field: "image", Reason: err.Error()}
	}
	return job, reply, nil
}

// pickID returns the body's id, else the Nats-Msg-Id header when valid,
// else a generated one.
func pickID(body, hdr string) string {
	if jobs.ValidID(body) {
		return body
	}
	if body == "" && jobs.ValidID(hdr) {
		return hdr
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	return "gen-" + hex.EncodeToString(b[:])
}

// run runs the job in a sandbox. healthy reports whether the sandbox can be
// used again. A panic becomes an internal error and destroys the sandbox.
func (w *Worker) run(ctx context.Context, q QueueConfig, job *jobs.Job, res *jobs.Result, log *zap.Logger) (out *outcome, healthy bool, err error) {
	setupStart := time.Now()
	res.Timing.StartedAt = setupStart
	egress := job.Network.OrDefault() == jobs.NetworkEgress
	ps, err := w.pool.get(ctx, job.Image, egress)
	if err != nil {
		if isImageError(err) {
			return nil, true, &jobs.RejectError{Field: "image", Reason: err.Error()}
		}
		return nil, false, fmt.Errorf("no sandbox: %w", err)
	}
	defer func() {
		if r := recover(); r != nil {
			log.Error("panic while running a job", zap.Any("panic", r), zap.ByteString("stack", debug.Stack()))
			out, healthy, err = nil, false, panicError{r}
		}
		w.pool.put(ps, healthy)
	}()
	if beforeRun != nil {
		beforeRun(job)
	}
	if egress {
		if err := w.attachEgress(ctx, ps, job.EgressAllow); err != nil {
			var re *jobs.RejectError
			return nil, errors.As(err, &re), err
		}
	}
	disk := jobs.DiskBytes(job.Steps)
	if disk == 0 {
		disk = q.Defaults.DiskBytes
	}
	if disk != ps.disk {
		if err := ps.Reset(ctx, disk); err != nil {
			return nil, false, err
		}
		ps.disk = disk
	}
	res.Timing.SetupMs = ms(time.Since(setupStart))
	var live func(step, stream string, p []byte)
	if job.StreamOutput {
		live = w.liveOutput(job.ID)
	}
	out, err = runJob(ctx, ps, job, q, w.objs, live)
	var re *jobs.RejectError
	return out, err == nil || errors.As(err, &re), err
}

// attachEgress gives a sandbox its egress network for a job's egress_allow
// list. A warm sandbox keeps its lease across jobs: a job with the same list
// (most often none) pays nothing here.
func (w *Worker) attachEgress(ctx context.Context, ps *pooled, allowList []string) error {
	key := strings.Join(allowList, ",")
	if ps.lease != nil && ps.allowKey == key {
		return nil
	}
	allow := make([]netpool.Allow, 0, len(allowList))
	for _, a := range allowList {
		al, err := netpool.ParseAllow(a)
		if err != nil {
			return &jobs.RejectError{Field: "egress_allow", Reason: err.Error()}
		}
		allow = append(allow, al)
	}
	if ps.lease != nil {
		if err := ps.lease.Release(); err != nil {
			return fmt.Errorf("egress network: release: %w", err)
		}
		ps.lease = nil
	}
	lease, err := w.cfg.Egress.Attach(ctx, ps.NetNSPath(), allow)
	if err != nil {
		return fmt.Errorf("egress network: %w", err)
	}
	ps.lease, ps.allowKey = lease, key
	return nil
}

// beforeRun, when set (by tests), is called with each job about to run.
var beforeRun func(*jobs.Job)

// liveOutput publishes output chunks on corral.output.ID (core NATS).
func (w *Worker) liveOutput(id string) func(step, stream string, p []byte) {
	var mu sync.Mutex
	seq := 0
	subject := jobs.OutputSubject(id)
	return func(step, stream string, p []byte) {
		mu.Lock()
		defer mu.Unlock()
		seq++
		m := nats.NewMsg(subject)
		m.Header.Set(jobs.HeaderStream, stream)
		m.Header.Set(jobs.HeaderStep, step)
		m.Header.Set(jobs.HeaderSeq, strconv.Itoa(seq))
		m.Data = append([]byte(nil), p...)
		_ = w.nc.PublishMsg(m)
	}
}

// heartbeat keeps the job message alive while it runs, whatever its wall
// limit. A timer rather than a goroutine: most jobs end before it fires.
func (w *Worker) heartbeat(msg jetstream.Msg) (stop func()) {
	every := w.ackWait / 3
	var (
		mu      sync.Mutex
		stopped bool
		t       *time.Timer
	)
	mu.Lock()
	defer mu.Unlock()
	t = time.AfterFunc(every, func() {
		_ = msg.InProgress()
		mu.Lock()
		defer mu.Unlock()
		if !stopped {
			t.Reset(every)
		}
	})
	return func() {
		mu.Lock()
		defer mu.Unlock()
		stopped = true
		t.Stop()
	}
}

// lastDelivery is the delivery count of a job of q that the server will not
// deliver again: its consumer's MaxDeliver.
func (w *Worker) lastDelivery(q QueueConfig) int {
	if n, ok := w.maxDeliver[q.Name]; ok {
		return n
	}
	return w.cfg.Consumer.MaxDeliver
}

// finish publishes the result, waits for the server to have it, then
// settles the message: Ack (ran) or Term (rejected and the like: never
// retried).
func (w *Worker) finish(log *zap.Logger, msg jetstream.Msg, res *jobs.Result, reply string, ran bool) {
	if res.Timing.FinishedAt.IsZero() {
		res.Timing.FinishedAt = time.Now()
	}
	err := w.publish(res, reply)
	if errors.Is(err, errUnfittable) {
		// Running it again would give the same: a minimal result, and
		// the job is done.
		log.Error("result too large to send, even cut; sending a minimal one", zap.Error(err))
		res = &jobs.Result{ID: res.ID, Queue: res.Queue, Status: jobs.StatusInternalError,
			Error: err.Error(), Attempt: res.Attempt, Steps: []jobs.StepResult{}, Worker: res.Worker, Timing: res.Timing}
		ran = false // Term: never again
		err = w.publish(res, reply)
	}
	if err != nil {
		log.Warn("publishing the result failed; redelivering the job", zap.Error(err))
		w.metrics.handedBack.WithLabelValues(res.Queue, handBackPublishFailed).Inc()
		_ = msg.NakWithDelay(time.Second)
		return
	}
	w.metrics.result(res)
	if ran {
		err = msg.DoubleAck(context.Background())
	} else {
		err = msg.Term()
	}
	if err != nil {
		log.Warn("ack", zap.Error(err))
	}
	log.Debug("job done", zap.String("status", string(res.Status)), zap.Float64("queue_ms", res.Timing.QueueMs))
}

// publish sends a result to its subject: through JetStream when a stream
// captures it (waiting for the PubAck), through core NATS otherwise
// (flushed). Both carry Nats-Msg-Id result-ID. A reply_to the server does
// not let this worker publish to (its NATS user's permissions) would lose
// the result, the refusal being only an asynchronous -ERR: the result goes
// to the job's default subject instead, saying so in error.
func (w *Worker) publish(res *jobs.Result, subject string) error {
	err := w.publishTo(res, subject)
	if !errors.Is(err, errReplyForbidden) || strings.HasPrefix(subject, jobs.SubjectResults) {
		return err
	}
	w.log.Warn("this worker may not publish to the job's reply_to; its result goes to the default subject",
		zap.String("job", res.ID), zap.String("reply_to", subject))
	res.Error = appendNote(res.Error, "reply_to "+subject+": this worker's NATS user may not publish there; result sent to "+jobs.ResultSubject(res.ID))
	return w.publishTo(res, jobs.ResultSubject(res.ID))
}

// errReplyForbidden is the server's permissions violation for a result's
// subject.
var errReplyForbidden = errors.New("permissions violation")

func (w *Worker) publishTo(res *jobs.Result, subject string) error {
	data, err := fitResult(res, int(w.nc.MaxPayload())-1024)
	if err != nil {
		return err
	}
	m := nats.NewMsg(subject)
	m.Header.Set(jobs.HeaderMsgID, jobs.ResultMsgID(res.ID))
	m.Data = data
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stored, err := w.stored(ctx, subject)
	if err != nil {
		return err
	}
	if strings.HasPrefix(subject, jobs.SubjectResults) {
		_, err = w.js.PublishMsg(ctx, m)
		if err != nil && w.resultsStreamGone(ctx) {
			// Someone deleted CORRAL_RESULTS: make it again and send
			// the result once more, rather than run the job again.
			if _, eerr := EnsureStreams(ctx, w.js, w.cfg.Streams); eerr != nil {
				return fmt.Errorf("%w (and making %s again: %v)", err, jobs.StreamResults, eerr)
			}
			w.log.Warn("the results stream was gone; made it again", zap.String("stream", jobs.StreamResults))
			_, err = w.js.PublishMsg(ctx, m)
		}
		return err
	}
	// A job's own subject: the server answers a forbidden publish with an
	// -ERR before the PONG of the flush that follows it, and the
	// connection keeps that error as its last, one at a time.
	ack, err := w.publishChecked(ctx, m, stored)
	if err != nil {
		return err
	}
	if ack == nil {
		return nil
	}
	select {
	case <-ack.Ok():
		return nil
	case err := <-ack.Err():
		return err
	case <-ctx.Done():
		return fmt.Errorf("waiting for the PubAck of %s: %w", subject, ctx.Err())
	}
}

// publishChecked publishes m (through JetStream when stored, returning the
// PubAck to wait for) and flushes, and reports errReplyForbidden when the
// server refused m's subject meanwhile.
func (w *Worker) publishChecked(ctx context.Context, m *nats.Msg, stored bool) (jetstream.PubAckFuture, error) {
	w.replyMu.Lock()
	defer w.replyMu.Unlock()
	before := w.nc.LastError()
	var ack jetstream.PubAckFuture
	var err error
	if stored {
		ack, err = w.js.PublishMsgAsync(m)
	} else {
		err = w.nc.PublishMsg(m)
	}
	if err != nil {
		return nil, err
	}
	if err := w.nc.FlushWithContext(ctx); err != nil {
		return nil, err
	}
	if last := w.nc.LastError(); last != nil && last != before && errors.Is(last, nats.ErrPermissionViolation) &&
		strings.Contains(strings.ToLower(last.Error()), `publish to "`+strings.ToLower(m.Subject)+`"`) {
		return nil, fmt.Errorf("%w: %v", errReplyForbidden, last)
	}
	return ack, nil
}

// resultsStreamGone reports whether CORRAL_RESULTS does not exist.
func (w *Worker) resultsStreamGone(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err := w.js.Stream(ctx, jobs.StreamResults)
	return errors.Is(err, jetstream.ErrStreamNotFound)
}

// stored reports whether a stream captures subject. The default result
// subjects are CORRAL_RESULTS', which Start made sure of; any other is
// asked of the server. Publishing through JetStream to a subject no
// stream captures is not enough to find out: a core subscriber there gets
// the message as a request it never answers, and the publish waits for a
// PubAck that never comes.
func (w *Worker) stored(ctx context.Context, subject string) (bool, error) {
	if strings.HasPrefix(subject, jobs.SubjectResults) {
		return true, nil
	}
	_, err := w.js.StreamNameBySubject(ctx, subject)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, jetstream.ErrStreamNotFound):
		return false, nil
	}
	return false, fmt.Errorf("which stream stores %s: %w", subject, err)
}

// dead keeps a copy of a job that could not be run in CORRAL_DEAD.
func (w *Worker) dead(log *zap.Logger, q QueueConfig, msg jetstream.Msg, res *jobs.Result) {
	w.metrics.dead.WithLabelValues(q.Name).Inc()
	m := nats.NewMsg(jobs.DeadSubject(q.Name))
	m.Data = msg.Data()
	m.Header.Set(jobs.HeaderError, res.Error)
	m.Header.Set(jobs.HeaderAttempts, strconv.Itoa(res.Attempt))
	m.Header.Set(jobs.HeaderJobID, res.ID)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := w.js.PublishMsg(ctx, m); err != nil {
		log.Error("keeping the dead job failed", zap.Error(err))
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func joinNotes(notes []string) string {
	out := ""
	for _, n := range notes {
		out = appendNote(out, n)
	}
	return out
}
