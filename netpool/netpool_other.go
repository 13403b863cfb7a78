//go:build !linux

package netpool

import (
	"context"
	"net/netip"
)

// Pool is unavailable outside Linux: its methods return ErrUnsupported.
type Pool struct{}

// Lease is unavailable outside Linux.
type Lease struct{ Addr, Gateway netip.Addr }

// New returns ErrUnsupported.
func New(cfg Config) (*Pool, error) { return nil, ErrUnsupported }

// Start returns ErrUnsupported.
func (p *Pool) Start(ctx context.Context) error { return ErrUnsupported }

// Attach returns ErrUnsupported.
func (p *Pool) Attach(ctx context.Context, netnsPath string, allow []Allow) (*Lease, error) {
	return nil, ErrUnsupported
}

// Stop does nothing.
func (p *Pool) Stop() error { return nil }

// Release does nothing.
func (l *Lease) Release() error { return nil }

// CleanStale returns ErrUnsupported.
func CleanStale() error { return ErrUnsupported }
