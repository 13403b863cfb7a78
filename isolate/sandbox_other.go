//go:build !linux

package isolate

import (
	"context"
	"fmt"
	"os"

	"github.com/corralhq/corral/jobs"
)

// Sandbox is unavailable off Linux.
type Sandbox struct{}

// New returns ErrUnsupported off Linux.
func New(ctx context.Context, cfg Config) (*Sandbox, error) { return nil, ErrUnsupported }

// ID returns "".
func (s *Sandbox) ID() string { return "" }

// Run returns ErrUnsupported.
func (s *Sandbox) Run(ctx context.Context, p Process) (*jobs.StepResult, error) {
	return nil, ErrUnsupported
}

// Reset returns ErrUnsupported.
func (s *Sandbox) Reset(ctx context.Context, diskBytes int64) error { return ErrUnsupported }

// ResetStats returns zero counts.
func (s *Sandbox) ResetStats() ResetStats { return ResetStats{} }

// Close does nothing.
func (s *Sandbox) Close() error { return nil }

// Alive reports false.
func (s *Sandbox) Alive() bool { return false }

// RunInit exits: there is no sandbox init off Linux.
func RunInit() {
	fmt.Fprintln(os.Stderr, ErrUnsupported)
	os.Exit(1)
}

// WriteFiles returns ErrUnsupported.
func (s *Sandbox) WriteFiles(ctx context.Context, files []File) error { return ErrUnsupported }

// Collect returns ErrUnsupported.
func (s *Sandbox) Collect(ctx context.Context, patterns []string) ([]Collected, error) {
	return nil, ErrUnsupported
}
