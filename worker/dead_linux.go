package worker

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"

	"github.com/corralhq/corral/jobs"
)

// maxDeliveriesAdvisory is the subject on which the server announces a job
// delivered MaxDeliver times without an ack: a worker died with it each time.
func maxDeliveriesAdvisory(queue string) string {
	return "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES." + jobs.StreamJobs + "." + jobs.ConsumerName(queue)
}

type maxDeliveries struct {
	Stream     string `json:"stream"`
	Consumer   string `json:"consumer"`
	StreamSeq  uint64 `json:"stream_seq"`
	Deliveries int    `json:"deliveries"`
}

// onMaxDeliveries gives a job whose every delivery was lost its promised
// result (internal_error) after keeping a copy in CORRAL_DEAD, and removes it from
// the queue. Workers share the advisory in a queue group: one handles it.
func (w *Worker) onMaxDeliveries(q QueueConfig) nats.MsgHandler {
	return func(m *nats.Msg) {
		var adv maxDeliveries
		if err := json.Unmarshal(m.Data, &adv); err != nil || adv.StreamSeq == 0 {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		stream, err := w.js.Stream(ctx, jobs.StreamJobs)
		if err != nil {
			w.log.Warn("max deliveries: stream", zap.Error(err))
			return
		}
		raw, err := stream.GetMsg(ctx, adv.StreamSeq)
		if err != nil {
			return // acked or removed meanwhile
		}
		env := jobs.Peek(raw.Data)
		id := pickID(env.ID, raw.Header.Get(jobs.HeaderMsgID))
		reply := jobs.ResultSubject(id)
		if env.ReplyTo != "" && jobs.ReplySubjectAllowed(env.ReplyTo, q.ReplyPrefixes) == nil {
			reply = env.ReplyTo
		}
		res := &jobs.Result{
			ID: id, Queue: q.Name, Status: jobs.StatusInternalError,
			Error:   fmt.Sprintf("the job was delivered %d times and no worker finished it (each worker running it stopped or died)", adv.Deliveries),
			Attempt: adv.Deliveries, Steps: []jobs.StepResult{},
			Worker: jobs.WorkerInfo{Host: w.cfg.Host, Version: w.cfg.Version},
			Labels: env.Labels,
		}
		res.Timing.EnqueuedAt = raw.Time
		res.Timing.FinishedAt = time.Now()
		log := w.log.With(zap.String("job", id), zap.String("queue", q.Name))
		dm := nats.NewMsg(jobs.DeadSubject(q.Name))
		dm.Data = raw.Data
		dm.Header.Set(jobs.HeaderError, res.Error)
		dm.Header.Set(jobs.HeaderAttempts, strconv.Itoa(adv.Deliveries))
		if _, err := w.js.PublishMsg(ctx, dm); err != nil {
			log.Warn("max deliveries: dead copy", zap.Error(err))
			return
		}
		if err := w.publish(res, reply); err != nil {
			log.Warn("max deliveries: result", zap.Error(err))
			return
		}
		if err := stream.DeleteMsg(ctx, adv.StreamSeq); err != nil {
			log.Warn("max deliveries: remove", zap.Error(err))
		}
		log.Warn("job dead after its last delivery", zap.Int("deliveries", adv.Deliveries))
	}
}
