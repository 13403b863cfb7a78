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

// cancel cancels the running job id, and remembers the cancel.
func (r *cancelRegistry) cancel(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if c, ok := r.running[id]; ok {
		c(errCancelled)
	}
	r.early[id] = time.Now()
}

// register notes a job as running; false means it was cancelled already.
func (r *cancelRegistry) register(id string, c context.CancelCauseFunc) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	for k, at := range r.early {
		if now.Sub(at) > r.memory {
			delete(r.early, k)
		}
	}
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
