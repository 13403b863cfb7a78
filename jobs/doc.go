// Package jobs holds corral's wire contract: the job a submitter publishes, the
// result a worker sends back, their JSON, limits with their defaults and
// maxima, validation, output comparison, and the JSON Schema of both messages.
//
// It is a leaf package: standard library only, no NATS and no Linux code, so
// clients in any Go program and on any OS can build jobs and read results.
// The contract itself is PROTOCOL.md; names here follow it exactly.
//
// A worker handles a job message in this order:
//
//	job, err := jobs.Decode(msg.Data)      // strict: unknown fields are rejected
//	if err == nil {
//		err = job.Validate(queueMax)       // limits, paths, subjects, ...
//	}
//	var rej *jobs.RejectError
//	if errors.As(err, &rej) {
//		// publish a result with status jobs.StatusRejected and rej.Error();
//		// jobs.Peek(msg.Data) recovers id, reply_to and labels for it.
//	}
//
// Every error that makes a job invalid is a *RejectError naming the JSON field
// (like "steps[0].cmd") and the reason; errors.Is(err, ErrRejected) holds for
// all of them.
package jobs
