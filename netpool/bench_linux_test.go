package netpool

import (
	"context"
	"net/netip"
	"testing"
)

// BenchmarkAttachRelease is what an egress job adds to a none job on a warm
// sandbox: a pre-made veth moved into the sandbox's namespace, its address,
// route and allow rules, then the release (veth, conntrack, address).
func BenchmarkAttachRelease(b *testing.B) {
	newTopo(b)
	p := startPool(b, Config{WorkerID: "tb"})
	newNS(b, "corral-t-bench")
	allow := []Allow{{Prefix: netip.MustParsePrefix("203.0.113.0/24"), Port: 443}}
	for b.Loop() {
		l, err := p.Attach(context.Background(), nsDir+"corral-t-bench", allow)
		if err != nil {
			b.Fatal(err)
		}
		if err := l.Release(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAttach is the part of an egress job's setup on its path; the
// release runs after the result is published.
func BenchmarkAttach(b *testing.B) {
	newTopo(b)
	p := startPool(b, Config{WorkerID: "tb"})
	newNS(b, "corral-t-bench")
	var leases []*Lease
	defer func() {
		for _, l := range leases {
			l.Release()
		}
	}()
	for b.Loop() {
		b.StopTimer()
		for _, l := range leases {
			l.Release()
		}
		leases = leases[:0]
		b.StartTimer()
		l, err := p.Attach(context.Background(), nsDir+"corral-t-bench", nil)
		if err != nil {
			b.Fatal(err)
		}
		leases = append(leases, l)
	}
}
