package worker

import (
	"fmt"

	"github.com/corralhq/corral/jobs"
)

// QueueConfig is what a worker applies to the jobs of one queue.
type QueueConfig struct {
	// Name is the queue, [A-Za-z0-9_-]{1,64}. Default "default".
	Name string
	// Image is the image of jobs that name none. Default "default".
	Image string
	// Defaults fill the limits a step leaves at 0. Default: the protocol's
	// defaults.
	Defaults jobs.Limits
	// Max are the largest limits a job may ask for; above is rejected.
	// Default: the protocol's maxima.
	Max jobs.Limits
	// Seccomp is the profile of jobs that name none. Default "default".
	Seccomp jobs.Seccomp
	// ReplyPrefixes, when set, are the only subject prefixes a job's
	// reply_to may use (on whole tokens). Default: any allowed subject.
	ReplyPrefixes []string
	// InlineFileBytes is the largest collected file returned inline;
	// larger ones go to the object store. Default 256 KiB.
	InlineFileBytes int64
	// InlineTotalBytes caps all inline collected files of one result.
	// Default 512 KiB.
	InlineTotalBytes int64
}

// WithDefaults returns the config with unset fields defaulted.
func (q QueueConfig) WithDefaults() QueueConfig {
	if q.Name == "" {
		q.Name = jobs.DefaultQueue
	}
	if q.Image == "" {
		q.Image = "default"
	}
	q.Max = q.Max.WithDefaults(jobs.MaxLimits())
	q.Defaults = q.Defaults.WithDefaults(jobs.DefaultLimits())
	if q.Seccomp == "" {
		q.Seccomp = jobs.SeccompDefault
	}
	if q.InlineFileBytes == 0 {
		q.InlineFileBytes = jobs.DefaultInlineFileBytes
	}
	if q.InlineTotalBytes == 0 {
		q.InlineTotalBytes = jobs.DefaultInlineTotalBytes
	}
	return q
}

// Validate reports the first invalid setting.
func (q QueueConfig) Validate() error {
	if !jobs.ValidQueue(q.Name) {
		return fmt.Errorf("queue %q: want 1-64 of [A-Za-z0-9_-]", q.Name)
	}
	if err := q.Max.Check(jobs.MaxLimits()); err != nil {
		return fmt.Errorf("queue %s: maxima: %w", q.Name, err)
	}
	if err := q.Defaults.Check(q.Max); err != nil {
		return fmt.Errorf("queue %s: defaults above the maxima: %w", q.Name, err)
	}
	switch q.Seccomp {
	case jobs.SeccompDefault, jobs.SeccompStrict:
	default:
		return fmt.Errorf("queue %s: seccomp %q: want default or strict", q.Name, q.Seccomp)
	}
	if q.InlineFileBytes < 0 || q.InlineTotalBytes < q.InlineFileBytes {
		return fmt.Errorf("queue %s: inline file limits: %d per file, %d in all", q.Name, q.InlineFileBytes, q.InlineTotalBytes)
	}
	return nil
}
