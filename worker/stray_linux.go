package worker

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/corralhq/corral/jobs"
)

// onStray rejects a job published to a subject that names no queue
// (corral.jobs.judge.cpp, corral.jobs.bad+q): PROTOCOL.md promises every job that reaches
// CORRAL_JOBS a result. Its queue in the result is what the subject put
// where a queue goes. A failed publish is tried again 5 s later.
func (w *Worker) onStray(m jetstream.Msg) {
	env := jobs.Peek(m.Data())
	res := &jobs.Result{
		ID:     pickID(env.ID, m.Headers().Get(jobs.HeaderMsgID)),
		Queue:  strings.TrimPrefix(m.Subject(), jobs.SubjectJobs),
		Status: jobs.StatusRejected,
		Error: "subject " + m.Subject() + " names no queue: publish to " + jobs.SubjectJobs +
			"Q, Q one token of [A-Za-z0-9_-]{1,64}",
		Steps:  []jobs.StepResult{},
		Worker: jobs.WorkerInfo{Host: w.cfg.Host, Version: w.cfg.Version},
		Labels: env.Labels,
	}
	if meta, err := m.Metadata(); err == nil {
		res.Attempt = int(meta.NumDelivered)
		res.Timing.EnqueuedAt = meta.Timestamp
	}
	res.Timing.FinishedAt = time.Now()
	reply := jobs.ResultSubject(res.ID)
	if env.ReplyTo != "" && w.replyAllowedAnywhere(env.ReplyTo) {
		reply = env.ReplyTo
	}
	if err := w.publish(res, reply); err != nil {
		w.log.Warn("stray job: publishing its rejection failed; trying again", zap.String("subject", m.Subject()), zap.Error(err))
		_ = m.NakWithDelay(5 * time.Second)
		return
	}
	w.log.Info("job rejected", zap.String("job", res.ID), zap.String("subject", m.Subject()), zap.String("reason", res.Error))
	_ = m.Term()
}

// replyAllowedAnywhere reports whether subject is a reply_to that some
// queue of the worker would accept: a stray job has no queue of its own.
func (w *Worker) replyAllowedAnywhere(subject string) bool {
	for _, q := range w.cfg.Queues {
		if jobs.ReplySubjectAllowed(subject, q.ReplyPrefixes) == nil {
			return true
		}
	}
	return false
}

// strayScanEvery is how often a worker looks for jobs published to a
// single-token subject that is not a queue name (corral.jobs.bad+q), and
// strayPerScan how many such subjects it drains each time.
var strayScanEvery = 30 * time.Second

const strayPerScan = 16

// strayScanLoop runs scanStray at start and then every strayScanEvery
// (give or take a tenth, so a fleet started together does not ask the
// server at one instant) until Stop.
func (w *Worker) strayScanLoop() {
	defer w.loops.Done()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-w.stopping:
			cancel()
		case <-ctx.Done():
		}
	}()
	for {
		if err := w.scanStray(ctx); err != nil && ctx.Err() == nil {
			w.log.Debug("stray jobs: scan", zap.Error(err))
		}
		jitter := time.Duration(rand.Int64N(int64(strayScanEvery)/5)) - strayScanEvery/10
		select {
		case <-w.stopping:
			return
		case <-time.After(strayScanEvery + jitter):
		}
	}
}

// scanStray rejects the jobs on the subjects StraySubjects finds, each
// through its own consumer (EnsureStraySubjectConsumer).
func (w *Worker) scanStray(ctx context.Context) error {
	subjects, err := StraySubjects(ctx, w.js)
	if len(subjects) > strayPerScan {
		// A publisher spraying invalid names gets them rejected a few at
		// a time, without a consumer for each at once.
		subjects = subjects[:strayPerScan]
	}
	var errs []error
	for _, subject := range subjects {
		if err := w.drainStray(ctx, subject); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", subject, err))
		}
	}
	return errors.Join(append(errs, err)...)
}

// drainStray rejects every job now on subject.
func (w *Worker) drainStray(ctx context.Context, subject string) error {
	c, err := EnsureStraySubjectConsumer(ctx, w.js, subject)
	if err != nil {
		return err
	}
	for ctx.Err() == nil {
		batch, err := c.FetchNoWait(16)
		if err != nil {
			return err
		}
		n := 0
		for m := range batch.Messages() {
			n++
			if ctx.Err() != nil {
				_ = m.Nak() // stopping: another worker, or the next start, takes it
				continue
			}
			w.onStray(m)
		}
		if n == 0 {
			return batch.Error()
		}
	}
	return ctx.Err()
}
