package worker

import (
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/corralhq/corral/jobs"
)

// onStray rejects a job published to a subject that names no queue
// (corral.jobs.judge.cpp): PROTOCOL.md promises every job that reaches
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
