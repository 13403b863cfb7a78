package worker

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/corralhq/corral/isolate"
	"github.com/corralhq/corral/netpool"
	"github.com/corralhq/corral/rootfs"
)

// PoolConfig configures the sandboxes of a worker.
type PoolConfig struct {
	// Store holds the images. Required.
	Store *rootfs.Store
	// Mounter mounts each image's layers once for all sandboxes. Required.
	Mounter *rootfs.Mounter
	// Max is the most sandboxes alive at once, busy or warm. Default: the
	// worker's slots.
	Max int
	// DiskBytes is the writable layer of a warm sandbox. Default (in a
	// worker's Config): the first queue's default disk_bytes.
	DiskBytes int64
	// UIDBase is the first host uid of sandbox ranges; sandbox k uses
	// UIDBase + k*65536. Default isolate.DefaultUIDBase.
	UIDBase uint32
	// CgroupParent is the parent cgroup of the sandboxes. Default
	// "corral/w<pid>", so that a later run can remove what a crash left.
	CgroupParent string
	// EtcFiles go into /etc of every sandbox (resolv.conf and hosts when
	// the worker has egress).
	EtcFiles map[string][]byte
	// CPUs is each sandbox's CPU bandwidth. Default 1.
	CPUs float64
	// FreshLayers builds a new writable layer after every job, even one
	// that left its layer exactly as it was built (isolate.Config).
	FreshLayers bool
	// KeepNetNS keeps every sandbox's jobs in its own network namespace,
	// even after a job that made a socket (isolate.Config.KeepNetwork):
	// faster for jobs that use the loopback, but the next job can read the
	// last one's traffic counters. Egress sandboxes always keep theirs.
	KeepNetNS bool
	// Log receives pool events. Default: none.
	Log *zap.Logger
}

// pooled is one sandbox of the pool.
type pooled struct {
	*isolate.Sandbox
	key     string // idle list: the image, and whether it has egress
	image   string
	digest  string
	disk    int64
	idx     int
	release func()
	// lease is the sandbox's egress network, kept across jobs (nil: none
	// yet); allowKey names the egress_allow list it was made for.
	lease    *netpool.Lease
	allowKey string
}

// poolKey names the idle list of sandboxes for image with or without an
// egress network: those are never mixed.
func poolKey(image string, egress bool) string {
	if egress {
		return image + "\x00egress"
	}
	return image
}

// sandboxPool keeps warm sandboxes per image, at most cfg.Max in all.
type sandboxPool struct {
	cfg PoolConfig

	mu     sync.Mutex
	idle   map[string][]*pooled
	total  int
	free   []int // uid range indices not in use
	closed bool
	resets sync.WaitGroup
	// changed is closed (and replaced) when a sandbox comes back or goes.
	changed chan struct{}
	// alive counts the sandboxes of each image, busy or idle, from their
	// creation to their destruction.
	alive map[string]int

	// What the pool did, for PoolStats.
	created, createNs, reset, resetNs, resetKept atomic.Int64
}

func newSandboxPool(cfg PoolConfig) (*sandboxPool, error) {
	if cfg.Store == nil || cfg.Mounter == nil {
		return nil, errors.New("worker: pool needs a store and a mounter")
	}
	if cfg.Max <= 0 {
		return nil, errors.New("worker: pool size must be positive")
	}
	if cfg.UIDBase == 0 {
		cfg.UIDBase = isolate.DefaultUIDBase
	}
	if cfg.Log == nil {
		cfg.Log = zap.NewNop()
	}
	if cfg.CgroupParent == "" {
		cfg.CgroupParent = isolate.OwnerCgroupParent("", os.Getpid())
	}
	p := &sandboxPool{cfg: cfg, idle: make(map[string][]*pooled), changed: make(chan struct{}), alive: make(map[string]int)}
	// One range more than Max: a sandbox being replaced may still be
	// closing while its successor starts.
	for i := 2*cfg.Max - 1; i >= 0; i-- {
		p.free = append(p.free, i)
	}
	return p, nil
}

// errImage marks errors that come from the job's image (unknown, invalid,
// corrupt): the job is rejected rather than retried.
type errImage struct{ err error }

func (e errImage) Error() string { return e.err.Error() }
func (e errImage) Unwrap() error { return e.err }

// get returns a sandbox for image, warm when one is idle. When the pool is
// full of busy or resetting sandboxes it waits for one to come back rather
// than grow past Max.
func (p *sandboxPool) get(ctx context.Context, image string, egress bool) (*pooled, error) {
	key := poolKey(image, egress)
	img, err := p.cfg.Store.Get(image)
	if err != nil {
		return nil, errImage{err}
	}
	p.mu.Lock()
	for {
		if p.closed {
			p.mu.Unlock()
			return nil, isolate.ErrClosed
		}
		if list := p.idle[key]; len(list) > 0 {
			ps := list[len(list)-1]
			p.idle[key] = list[:len(list)-1]
			if ps.digest == img.Digest && ps.Alive() {
				p.mu.Unlock()
				return ps, nil
			}
			// The image was rebuilt (this sandbox runs the old one), or
			// the sandbox's init died while it waited: a job would
			// only get internal_error from it.
			if !ps.Alive() {
				p.cfg.Log.Warn("an idle sandbox's init died; replacing it", zap.String("sandbox", ps.ID()))
			}
			p.total--
			p.mu.Unlock()
			p.destroy(ps)
			p.mu.Lock()
			continue
		}
		if p.total < p.cfg.Max {
			break
		}
		// Full: evict an idle sandbox of another image, or wait for a
		// busy one to come back.
		var victim *pooled
		for name, list := range p.idle {
			if len(list) > 0 {
				victim = list[0]
				p.idle[name] = list[1:]
				p.total--
				break
			}
		}
		if victim != nil {
			p.mu.Unlock()
			p.destroy(victim)
			p.mu.Lock()
			continue
		}
		changed := p.changed
		p.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		}
		p.mu.Lock()
	}
	if len(p.free) == 0 {
		p.mu.Unlock()
		return nil, errors.New("worker: no sandbox uid range free")
	}
	idx := p.free[len(p.free)-1]
	p.free = p.free[:len(p.free)-1]
	p.total++
	p.mu.Unlock()
	ps, err := p.create(ctx, img, idx, egress)
	if ps != nil {
		ps.key = key
	}
	if err != nil {
		p.mu.Lock()
		p.total--
		p.free = append(p.free, idx)
		p.notify()
		p.mu.Unlock()
		return nil, err
	}
	return ps, nil
}

// notify wakes those waiting for a sandbox; p.mu is held.
func (p *sandboxPool) notify() {
	close(p.changed)
	p.changed = make(chan struct{})
}

// create makes a sandbox of img in uid range idx. An egress sandbox keeps
// its jobs in its init's network namespace, where its lease's eth0 goes;
// any other gives a job a new one after a job that made a socket.
func (p *sandboxPool) create(ctx context.Context, img *rootfs.Image, idx int, egress bool) (*pooled, error) {
	start := time.Now()
	lower, release, err := p.cfg.Mounter.Acquire(img)
	if errors.Is(err, rootfs.ErrImageChanged) {
		// Removed or rebuilt since the pool read it: read it again, once.
		fresh, gerr := p.cfg.Store.Get(img.Name)
		if gerr != nil {
			return nil, errImage{gerr}
		}
		img = fresh
		lower, release, err = p.cfg.Mounter.Acquire(img)
	}
	if err != nil {
		if errors.Is(err, rootfs.ErrCorruptImage) {
			return nil, errImage{err}
		}
		return nil, err
	}
	sb, err := isolate.New(ctx, isolate.Config{
		Lower:        lower,
		RunDir:       p.cfg.Mounter.Dir(),
		HostUID:      p.cfg.UIDBase + uint32(idx)*isolate.IDsPerSandbox,
		DiskBytes:    p.cfg.DiskBytes,
		CPUs:         p.cfg.CPUs,
		CgroupParent: p.cfg.CgroupParent,
		EtcFiles:     p.cfg.EtcFiles,
		FreshLayers:  p.cfg.FreshLayers,
		KeepNetwork:  egress || p.cfg.KeepNetNS,
	})
	if err != nil {
		release()
		return nil, err
	}
	took := time.Since(start)
	p.created.Add(1)
	p.createNs.Add(int64(took))
	p.mu.Lock()
	p.alive[img.Name]++
	p.mu.Unlock()
	p.cfg.Log.Debug("sandbox created", zap.String("sandbox", sb.ID()), zap.String("image", img.Name), zap.Duration("took", took))
	return &pooled{Sandbox: sb, image: img.Name, digest: img.Digest, disk: p.cfg.DiskBytes, idx: idx, release: release}, nil
}

// put returns a sandbox after a job. A healthy one is reset in the
// background and becomes warm again; a broken one is destroyed.
func (p *sandboxPool) put(ps *pooled, healthy bool) {
	if !healthy {
		p.destroy(ps)
		p.mu.Lock()
		p.total--
		p.notify()
		p.mu.Unlock()
		return
	}
	p.resets.Add(1)
	go func() {
		defer p.resets.Done()
		start := time.Now()
		kept := ps.ResetStats().Kept
		// Bounded: a reset takes milliseconds; an init stuck in one
		// would otherwise hold a slot, and Stop, for ever.
		ctx, cancel := context.WithTimeout(context.Background(), resetTimeout)
		defer cancel()
		if err := ps.Reset(ctx, p.cfg.DiskBytes); err != nil {
			p.cfg.Log.Warn("sandbox reset failed", zap.String("sandbox", ps.ID()), zap.Error(err))
			p.put(ps, false)
			return
		}
		p.reset.Add(1)
		p.resetNs.Add(int64(time.Since(start)))
		if ps.ResetStats().Kept > kept {
			p.resetKept.Add(1)
		}
		ps.disk = p.cfg.DiskBytes
		p.mu.Lock()
		if p.closed {
			p.total--
			p.notify()
			p.mu.Unlock()
			p.destroy(ps)
			return
		}
		p.idle[ps.key] = append(p.idle[ps.key], ps)
		p.notify()
		p.mu.Unlock()
	}()
}

// resetTimeout bounds a sandbox's reset after a job.
const resetTimeout = 30 * time.Second

func (p *sandboxPool) destroy(ps *pooled) {
	if err := ps.Close(); err != nil {
		p.cfg.Log.Warn("sandbox close", zap.String("sandbox", ps.ID()), zap.Error(err))
	}
	if ps.lease != nil {
		if err := ps.lease.Release(); err != nil {
			p.cfg.Log.Warn("egress lease release", zap.String("sandbox", ps.ID()), zap.Error(err))
		}
	}
	ps.release()
	p.mu.Lock()
	p.free = append(p.free, ps.idx)
	if p.alive[ps.image]--; p.alive[ps.image] <= 0 {
		delete(p.alive, ps.image)
	}
	p.mu.Unlock()
}

// sandboxCounts returns, per image, the idle (warm) sandboxes and the busy
// ones (running a job, or being reset after one).
func (p *sandboxPool) sandboxCounts() (idle, busy map[string]int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	idle, busy = make(map[string]int, len(p.alive)), make(map[string]int, len(p.alive))
	for _, list := range p.idle {
		for _, ps := range list {
			idle[ps.image]++
		}
	}
	for img, n := range p.alive {
		busy[img] = max(n-idle[img], 0)
	}
	return idle, busy
}

// warm makes n idle sandboxes for image ahead of jobs; prepare, when set,
// readies each (attaches its egress network).
func (p *sandboxPool) warm(ctx context.Context, image string, egress bool, n int, prepare func(*pooled) error) error {
	var made []*pooled
	for i := 0; i < n; i++ {
		ps, err := p.get(ctx, image, egress)
		if err == nil && prepare != nil {
			if err = prepare(ps); err != nil {
				p.put(ps, false)
			}
		}
		if err != nil {
			for _, m := range made {
				p.put(m, true)
			}
			return fmt.Errorf("warm %s: %w", image, err)
		}
		made = append(made, ps)
	}
	p.mu.Lock()
	key := poolKey(image, egress)
	p.idle[key] = append(p.idle[key], made...)
	p.notify()
	p.mu.Unlock()
	return nil
}

// close destroys every sandbox; busy ones are destroyed when put back.
func (p *sandboxPool) close() {
	p.resets.Wait()
	p.mu.Lock()
	p.closed = true
	var all []*pooled
	for _, list := range p.idle {
		all = append(all, list...)
	}
	p.idle = map[string][]*pooled{}
	p.total -= len(all)
	p.mu.Unlock()
	for _, ps := range all {
		p.destroy(ps)
	}
}
