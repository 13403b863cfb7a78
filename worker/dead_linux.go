package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/corralhq/corral/jobs"
)

type maxDeliveries struct {
	Stream     string `json:"stream"`
	Consumer   string `json:"consumer"`
	StreamSeq  uint64 `json:"stream_seq"`
	Deliveries int    `json:"deliveries"`
}

// onMaxDeliveries gives a job whose every delivery was lost its promised
// result (internal_error) after keeping a copy in CORRAL_DEAD, and removes it
// from the queue. The advisory comes from CORRAL_ADVISORIES, where the server's
// announcement waits until a worker handles it: one worker does, and one that
// fails leaves it for another try.
func (w *Worker) onMaxDeliveries(q QueueConfig) jetstream.MessageHandler {
	return func(m jetstream.Msg) {
		var adv maxDeliveries
		if err := json.Unmarshal(m.Data(), &adv); err != nil || adv.StreamSeq == 0 {
			w.log.Warn("max deliveries: not an advisory", zap.ByteString("data", m.Data()))
			_ = m.Term()
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		err := w.buryAdvised(ctx, q, adv)
		if err != nil {
			w.log.Warn("max deliveries: trying again", zap.String("queue", q.Name), zap.Uint64("stream_seq", adv.StreamSeq), zap.Error(err))
			_ = m.NakWithDelay(5 * time.Second)
			return
		}
		_ = m.Ack()
	}
}

// buryAdvised buries the job an advisory names, unless it is gone already
// (acked meanwhile, or buried by an earlier try).
func (w *Worker) buryAdvised(ctx context.Context, q QueueConfig, adv maxDeliveries) error {
	stream, err := w.js.Stream(ctx, jobs.StreamJobs)
	if err != nil {
		return err
	}
	raw, err := stream.GetMsg(ctx, adv.StreamSeq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	return w.bury(ctx, q, stream, raw, adv.Deliveries)
}

// bury gives a job that ran out of deliveries its internal_error result,
// after a copy in CORRAL_DEAD, then removes it from the queue. A second try
// after a failure keeps one copy and one stored result (both carry a
// Nats-Msg-Id).
func (w *Worker) bury(ctx context.Context, q QueueConfig, stream jetstream.Stream, raw *jetstream.RawStreamMsg, deliveries int) error {
	env := jobs.Peek(raw.Data)
	id := pickID(env.ID, raw.Header.Get(jobs.HeaderMsgID))
	reply := jobs.ResultSubject(id)
	if env.ReplyTo != "" && jobs.ReplySubjectAllowed(env.ReplyTo, q.ReplyPrefixes) == nil {
		reply = env.ReplyTo
	}
	res := &jobs.Result{
		ID: id, Queue: q.Name, Status: jobs.StatusInternalError,
		Error:   fmt.Sprintf("the job was delivered %d times and no worker finished it (each worker running it stopped or died)", deliveries),
		Attempt: deliveries, Steps: []jobs.StepResult{},
		Worker: jobs.WorkerInfo{Host: w.cfg.Host, Version: w.cfg.Version},
		Labels: env.Labels,
	}
	res.Timing.EnqueuedAt = raw.Time
	res.Timing.FinishedAt = time.Now()
	dm := nats.NewMsg(jobs.DeadSubject(q.Name))
	dm.Data = raw.Data
	dm.Header.Set(jobs.HeaderError, res.Error)
	dm.Header.Set(jobs.HeaderAttempts, strconv.Itoa(deliveries))
	dm.Header.Set(jobs.HeaderJobID, id)
	dm.Header.Set(jobs.HeaderMsgID, "dead-"+strconv.FormatUint(raw.Sequence, 10))
	if _, err := w.js.PublishMsg(ctx, dm); err != nil {
		return fmt.Errorf("dead copy: %w", err)
	}
	if err := w.publish(res, reply); err != nil {
		return fmt.Errorf("result: %w", err)
	}
	if err := stream.DeleteMsg(ctx, raw.Sequence); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		return fmt.Errorf("remove: %w", err)
	}
	w.metrics.result(res)
	w.metrics.dead.WithLabelValues(q.Name).Inc()
	w.log.Warn("job dead after its last delivery", zap.String("job", id), zap.String("queue", q.Name), zap.Int("deliveries", deliveries))
	return nil
}
