package worker

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/corralhq/corral/jobs"
)

// errCancelled is the cause of a job context cancelled by its submitter.
var errCancelled = errors.New("cancelled through " + jobs.SubjectCancel + "ID")

// cancelRegistry routes corral.cancel.ID to the running job, and remembers
// every cancel for a while (jobs.CancelMemory): a job that comes after its
// cancel, or comes again (redelivered after its worker died), ends
// cancelled without running.
type cancelRegistry struct {
	mu      sync.Mutex
	memory  time.Duration
	running map[string]context.CancelCauseFunc
	early   map[string]time.Time
}

func newCancelRegistry(memory time.Duration) *cancelRegistry {
	return &cancelRegistry{
		memory:  memory,
		running: map[string]context.CancelCauseFunc{},
		early:   map[string]time.Time{},
	}
}

// maxCancels bounds the cancels a worker remembers: corral.cancel.* is open
// to every submitter, and a flood of made-up ids must not grow the worker
// without end (a million took 250 MB).
const maxCancels = 100_000

// cancel cancels the running job id, and remembers the cancel.
func (r *cancelRegistry) cancel(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if c, ok := r.running[id]; ok {
		c(errCancelled)
	}
	if len(r.early) >= maxCancels {
		r.forget(time.Now())
		// Still full of fresh ones: forget the oldest tenth.
		for len(r.early) >= maxCancels {
			oldest := time.Now()
			for _, at := range r.early {
				if at.Before(oldest) {
					oldest = at
				}
			}
			cut := oldest.Add(time.Since(oldest) / 10)
			for k, at := range r.early {
				if !at.After(cut) {
					delete(r.early, k)
				}
			}
		}
	}
	r.early[id] = time.Now()
}

// forget drops the cancels older than the memory; r.mu is held.
func (r *cancelRegistry) forget(now time.Time) {
	for k, at := range r.early {
		if now.Sub(at) > r.memory {
			delete(r.early, k)
		}
	}
}

// register notes a job as running; false means it was cancelled already.
func (r *cancelRegistry) register(id string, c context.CancelCauseFunc) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.forget(time.Now())
	if _, ok := r.early[id]; ok {
		return false
	}
	r.running[id] = c
	return true
}

func (r *cancelRegistry) unregister(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.running, id)
}
