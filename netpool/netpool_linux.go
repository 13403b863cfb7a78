package netpool

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Pool hands out egress network attachments for sandboxes.
type Pool struct {
	cfg   Config
	block netip.Prefix
	gw    netip.Addr
	r     *rules

	op   sync.Mutex // serializes kernel changes (netlink handle, nftables batches)
	ns   netns.NsHandle
	nl   *netlink.Handle
	rt   *nl.NetlinkSocket // for what p.nl does not parse (portState)
	nft  *nftables.Conn
	brIx int
	owns bool // Start created the bridge: teardown may remove the worker's things

	mu      sync.Mutex
	used    [256]bool // by last octet
	next    int
	spares  []int
	leases  map[int]*Lease
	started bool
	stopped bool
	refill  chan struct{}
	done    chan struct{}
	wg      sync.WaitGroup
}

// Lease is one sandbox's attachment: eth0 in its namespace with Addr.
type Lease struct {
	// Addr is the sandbox's address; Gateway its default route.
	Addr, Gateway netip.Addr

	p        *Pool
	n        int
	narrowed bool
	once     sync.Once
	err      error
}

// New checks cfg; nothing is created before Start.
func New(cfg Config) (*Pool, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	b := cfg.block()
	return &Pool{cfg: cfg, block: b, gw: b.Addr().Next(), r: newRules(cfg.WorkerID, b),
		next: 2, leases: map[int]*Lease{}, ns: -1}, nil
}

func bridgeName(id string) string      { return "corral" + id }
func vethPrefix(id string) string      { return "corral-" + id + "-" }
func hostName(id string, n int) string { return vethPrefix(id) + strconv.Itoa(n) }
func peerName(id string, n int) string { return "corral-" + id + "." + strconv.Itoa(n) }

// Start removes stale leftovers of dead workers, then creates the bridge
// with the gateway address, the nftables tables, and the spare veths.
func (p *Pool) Start(ctx context.Context) (err error) {
	if err := ctx.Err(); err != nil {
		return err
	}
	p.mu.Lock()
	if p.started {
		p.mu.Unlock()
		return errors.New("netpool: already started")
	}
	p.started = true
	p.mu.Unlock()

	if p.cfg.NetNS != "" {
		p.ns, err = netns.GetFromPath(p.cfg.NetNS)
	} else {
		p.ns, err = netns.Get()
	}
	if err != nil {
		return fmt.Errorf("netpool: open network namespace: %w", err)
	}
	if p.nl, err = netlink.NewHandleAt(p.ns); err != nil {
		p.ns.Close()
		return fmt.Errorf("netpool: netlink: %w", err)
	}
	if p.rt, err = nl.GetNetlinkSocketAt(p.ns, netns.None(), unix.NETLINK_ROUTE); err != nil {
		p.nl.Close()
		p.ns.Close()
		return fmt.Errorf("netpool: netlink: %w", err)
	}
	if p.nft, err = nftables.New(nftables.WithNetNSFd(int(p.ns))); err != nil {
		p.rt.Close()
		p.nl.Close()
		p.ns.Close()
		return fmt.Errorf("netpool: nftables: %w", err)
	}
	defer func() {
		if err != nil {
			p.teardown()
		}
	}()
	fwd, err := readSysctl(p.ns, "net/ipv4/ip_forward")
	if err != nil {
		return fmt.Errorf("netpool: read ip_forward: %w", err)
	}
	if fwd != "1" {
		return ErrForwardingOff
	}
	if err := cleanStale(p.nl, p.nft); err != nil {
		return err
	}
	if l, err := p.nl.LinkByName(p.r.bridge); err == nil {
		return fmt.Errorf("%w: %s (%s)", ErrInUse, p.r.bridge, l.Attrs().Alias)
	}
	if err := p.checkSubnet(); err != nil {
		return err
	}
	// The kernel ignores an alias given at creation: it is set right after.
	// A sweep by another worker in between removes the bridge, and this
	// Start then fails (it never continues without its bridge).
	// A fixed MAC: otherwise the bridge takes its lowest port's, and every
	// new port could change it under the sandboxes' ARP caches.
	b := p.block.Addr().As4()
	mac := net.HardwareAddr{0x02, 0x63, b[0], b[1], b[2], 0x01}
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: p.r.bridge, HardwareAddr: mac}}
	if err := p.nl.LinkAdd(br); err != nil {
		return fmt.Errorf("netpool: add bridge %s: %w", p.r.bridge, err)
	}
	p.owns = true
	l, err := p.nl.LinkByName(p.r.bridge)
	if err == nil {
		err = p.nl.LinkSetAlias(l, ownerAlias())
	}
	if err != nil {
		return fmt.Errorf("netpool: bridge %s: %w", p.r.bridge, err)
	}
	p.brIx = l.Attrs().Index
	if err := p.nl.AddrAdd(l, &netlink.Addr{IPNet: ipnet(netip.PrefixFrom(p.gw, 24))}); err != nil {
		return fmt.Errorf("netpool: bridge address: %w", err)
	}
	if err := p.nl.LinkSetUp(l); err != nil {
		return fmt.Errorf("netpool: bridge up: %w", err)
	}
	if err := p.r.install(p.nft, p.cfg.Subnet, p.cfg.Deny, p.cfg.DNS); err != nil {
		return fmt.Errorf("netpool: nftables rules: %w", err)
	}
	if err := p.nft.Flush(); err != nil {
		return fmt.Errorf("netpool: nftables rules: %w", err)
	}
	p.refill = make(chan struct{}, 1)
	p.done = make(chan struct{})
	p.wg.Add(1)
	go p.refiller()
	p.kick()
	return nil
}

// checkSubnet refuses a /24 that an interface already has an address in.
func (p *Pool) checkSubnet() error {
	var addrs []netlink.Addr
	err := retryDump(func() (err error) { addrs, err = p.nl.AddrList(nil, unix.AF_INET); return err })
	if err != nil {
		return fmt.Errorf("netpool: list addresses: %w", err)
	}
	for _, a := range addrs {
		pfx, ok := netip.AddrFromSlice(a.IP.To4())
		ones, _ := a.Mask.Size()
		if ok && netip.PrefixFrom(pfx, ones).Masked().Overlaps(p.block) {
			return fmt.Errorf("%w: %s has %s", ErrSubnetInUse, a.Label, a.IPNet)
		}
	}
	return nil
}

func (p *Pool) kick() {
	select {
	case p.refill <- struct{}{}:
	default:
	}
}

// refiller keeps cfg.Spare veth pairs ready.
func (p *Pool) refiller() {
	defer p.wg.Done()
	for {
		select {
		case <-p.done:
			return
		case <-p.refill:
		}
		for {
			p.mu.Lock()
			if p.stopped || len(p.spares) >= p.cfg.Spare {
				p.mu.Unlock()
				break
			}
			n, ok := p.alloc()
			p.mu.Unlock()
			if !ok {
				break
			}
			if err := p.createPair(n); err != nil {
				p.free(n)
				break // Attach creates its own pair; retry on the next kick
			}
			p.mu.Lock()
			p.spares = append(p.spares, n)
			p.mu.Unlock()
		}
	}
}

// alloc takes the next free last octet, round robin; p.mu held.
func (p *Pool) alloc() (int, bool) {
	for i := 0; i < 253; i++ {
		n := 2 + (p.next-2+i)%253
		if !p.used[n] {
			p.used[n] = true
			p.next = n + 1
			return n, true
		}
	}
	return 0, false
}

func (p *Pool) free(n int) {
	p.mu.Lock()
	p.used[n] = false
	p.mu.Unlock()
}

func (p *Pool) addr(n int) netip.Addr {
	b := p.block.Addr().As4()
	b[3] = byte(n)
	return netip.AddrFrom4(b)
}

// createPair makes veth corral-<id>-<n> (bridge port, isolated, up) with
// its peer corral-<id>.<n> waiting in the pool's namespace.
func (p *Pool) createPair(n int) error {
	p.op.Lock()
	defer p.op.Unlock()
	host := hostName(p.cfg.WorkerID, n)
	v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: host, MasterIndex: p.brIx}, PeerName: peerName(p.cfg.WorkerID, n)}
	if err := p.nl.LinkAdd(v); err != nil {
		return fmt.Errorf("netpool: add veth %s: %w", host, err)
	}
	l, err := p.nl.LinkByName(host)
	if err == nil {
		err = p.nl.LinkSetIsolated(l, true)
	}
	if err == nil && p.cfg.DownloadBitsPerSec > 0 {
		// What the bridge forwards to the sandbox leaves through this end.
		err = p.nl.QdiscAdd(tbf(l.Attrs().Index, p.cfg.DownloadBitsPerSec))
	}
	if err == nil {
		err = p.nl.LinkSetUp(l)
	}
	if err != nil {
		p.nl.LinkDel(v)
		return fmt.Errorf("netpool: veth %s: %w", host, err)
	}
	return nil
}

// Attach gives the sandbox whose network namespace is at netnsPath an eth0
// with an address from the pool and a default route through the gateway.
// A non-empty allow narrows what it may reach (inside what the pool
// allows); IPv6 entries allow nothing, IPv6 egress being off.
func (p *Pool) Attach(ctx context.Context, netnsPath string, allow []Allow) (*Lease, error) {
	p.mu.Lock()
	if !p.started || p.stopped {
		p.mu.Unlock()
		return nil, ErrStopped
	}
	n, spare := 0, false
	if k := len(p.spares); k > 0 {
		n, spare = p.spares[0], true
		p.spares = p.spares[1:]
	} else {
		var ok bool
		if n, ok = p.alloc(); !ok {
			p.mu.Unlock()
			return nil, ErrExhausted
		}
	}
	p.mu.Unlock()
	defer p.kick()
	if !spare {
		if err := p.createPair(n); err != nil {
			p.free(n)
			return nil, err
		}
	}
	l := &Lease{Addr: p.addr(n), Gateway: p.gw, p: p, n: n, narrowed: len(allow) > 0}
	err := p.wire(ctx, l, netnsPath, allow)
	if err == nil {
		err = p.waitForwarding(ctx, hostName(p.cfg.WorkerID, l.n))
	}
	if err != nil {
		p.unwire(l)
		return nil, err
	}
	p.mu.Lock()
	p.leases[n] = l
	p.mu.Unlock()
	return l, nil
}

func (p *Pool) wire(ctx context.Context, l *Lease, path string, allow []Allow) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	sns, err := netns.GetFromPath(path)
	if err != nil {
		return fmt.Errorf("netpool: open %s: %w", path, err)
	}
	defer sns.Close()
	sh, err := netlink.NewHandleAt(sns, unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("netpool: netlink in %s: %w", path, err)
	}
	defer sh.Close()

	p.op.Lock()
	defer p.op.Unlock()
	host := hostName(p.cfg.WorkerID, l.n)
	// Rules first: until they exist the port drops everything anyway.
	if err := p.r.addLease(p.nft, l.n, host, l.Addr, allow); err != nil {
		return fmt.Errorf("netpool: lease rules: %w", err)
	}
	if err := p.nft.Flush(); err != nil {
		return fmt.Errorf("netpool: lease rules: %w", err)
	}
	peer, err := p.nl.LinkByName(peerName(p.cfg.WorkerID, l.n))
	if err != nil {
		return fmt.Errorf("netpool: spare peer: %w", err)
	}
	if err := p.nl.LinkSetNsFd(peer, int(sns)); err != nil {
		return fmt.Errorf("netpool: move veth into %s: %w", path, err)
	}
	step := func(what string, err error) error {
		if err != nil {
			return fmt.Errorf("netpool: sandbox %s: %w", what, err)
		}
		return nil
	}
	in, err := sh.LinkByName(peer.Attrs().Name)
	if err := step("find veth", err); err != nil {
		return err
	}
	if err := step("rename to eth0", sh.LinkSetName(in, "eth0")); err != nil {
		return err
	}
	if err := step("address", sh.AddrAdd(in, &netlink.Addr{IPNet: ipnet(netip.PrefixFrom(l.Addr, 24))})); err != nil {
		return err
	}
	if err := step("eth0 up", sh.LinkSetUp(in)); err != nil {
		return err
	}
	if lo, err := sh.LinkByName("lo"); err == nil {
		sh.LinkSetUp(lo)
	}
	if err := step("default route", sh.RouteAdd(&netlink.Route{LinkIndex: in.Attrs().Index,
		Gw: net.IP(p.gw.AsSlice())})); err != nil {
		return err
	}
	if rate := p.cfg.RateBitsPerSec; rate > 0 {
		if err := step("rate limit", sh.QdiscAdd(tbf(in.Attrs().Index, rate))); err != nil {
			return err
		}
	}
	return nil
}

// waitForwarding returns once the bridge forwards what comes in on host,
// the bridge's end of a sandbox's veth, and the bridge itself is up.
// eth0 coming up gives host its carrier, but the bridge turns host's port
// from disabled to forwarding only when the kernel's link-watch work
// reports that change, a little later. Until then it drops every frame
// the sandbox sends (perf: skb:kfree_skb, reason BRIDGE_INGRESS_STP_STATE):
// a job that connected at once lost its first ARP request and waited a
// second for the kernel to send it again. The port is forwarding well
// within a millisecond. The bridge has no carrier while no port forwards
// (the first lease, or one after every other was released): its own
// link-watch work, which lets it transmit, can come up to a second after
// its first port forwards, and until then the gateway's answers to the
// sandbox are dropped.
func (p *Pool) waitForwarding(ctx context.Context, host string) error {
	ctx, cancel := context.WithTimeout(ctx, forwardingTimeout)
	defer cancel()
	for pause := 20 * time.Microsecond; ; pause = min(2*pause, 10*time.Millisecond) {
		ok, what, err := p.forwarding(host)
		if err != nil || ok {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("netpool: not forwarding (%s): %w", what, context.Cause(ctx))
		case <-time.After(pause):
		}
	}
}

// forwarding reports whether host's bridge port forwards and the bridge
// is up, and if not, which is not. It takes p.op for its queries only:
// other attaches and releases go on while one waits.
func (p *Pool) forwarding(host string) (bool, string, error) {
	p.op.Lock()
	defer p.op.Unlock()
	link, err := p.nl.LinkByName(host)
	if err != nil {
		return false, "", fmt.Errorf("netpool: %s: %w", host, err)
	}
	st, err := portState(p.rt, link.Attrs().Index)
	if err != nil {
		return false, "", fmt.Errorf("netpool: bridge port %s: %w", host, err)
	}
	if st != brStateForwarding {
		return false, fmt.Sprintf("port %s state %d", host, st), nil
	}
	br, err := p.nl.LinkByIndex(p.brIx)
	if err != nil {
		return false, "", fmt.Errorf("netpool: bridge %s: %w", p.r.bridge, err)
	}
	if br.Attrs().OperState != netlink.OperUp {
		return false, fmt.Sprintf("bridge %s %s", p.r.bridge, br.Attrs().OperState), nil
	}
	return true, "", nil
}

// forwardingTimeout bounds waitForwarding: the kernel's link-watch work
// runs at once for a veth and within a second for a bridge, but a busy
// machine's work queues can lag.
const forwardingTimeout = 5 * time.Second

// tbf is a token bucket of rate bits/s as the root qdisc of a link's
// transmit side: a burst of 10 ms of traffic (at least 16 KiB, more than a
// full-size frame), and up to 50 ms more queued (at most 16 MiB) before
// packets are dropped. The kernel takes the bucket's size as the time the
// burst takes at rate, in scheduler ticks (tc's "burst" converted): given
// in bytes, a bucket smaller than one frame would pass no full-size frame.
func tbf(link int, rate uint64) *netlink.Tbf {
	bps := rate / 8
	burst := uint32(max(bps/100, 16*1024))
	return &netlink.Tbf{QdiscAttrs: netlink.QdiscAttrs{LinkIndex: link,
		Handle: netlink.MakeHandle(1, 0), Parent: netlink.HANDLE_ROOT},
		Rate: bps, Buffer: netlink.Xmittime(bps, burst), Limit: burst + uint32(min(bps/20, 1<<24))}
}

// unwire removes a lease's veth, rules, conntrack and neighbour entries
// and frees its address.
func (p *Pool) unwire(l *Lease) error {
	p.op.Lock()
	var errs []error
	host := hostName(p.cfg.WorkerID, l.n)
	if err := p.r.delLease(p.nft, l.n, host, l.Addr, l.narrowed); err == nil {
		if err := p.nft.Flush(); err != nil && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("netpool: remove lease rules: %w", err))
		}
	}
	for _, name := range []string{host, peerName(p.cfg.WorkerID, l.n)} {
		if link, err := p.nl.LinkByName(name); err == nil {
			if err := p.nl.LinkDel(link); err != nil && !errors.Is(err, unix.ENODEV) {
				errs = append(errs, fmt.Errorf("netpool: delete %s: %w", name, err))
			}
		}
	}
	p.nl.NeighDel(&netlink.Neigh{LinkIndex: p.brIx, IP: net.IP(l.Addr.AsSlice())})
	if err := flushConntrack(p.nl, ipnet(netip.PrefixFrom(l.Addr, 32))); err != nil {
		errs = append(errs, err)
	}
	p.op.Unlock()
	p.mu.Lock()
	delete(p.leases, l.n)
	p.used[l.n] = false
	p.mu.Unlock()
	return errors.Join(errs...)
}

// Release removes the lease's veth (and so the sandbox's eth0), flushes
// the conntrack entries of its address and returns the address to the pool.
// It is idempotent.
func (l *Lease) Release() error {
	l.once.Do(func() {
		l.p.mu.Lock()
		_, live := l.p.leases[l.n]
		l.p.mu.Unlock()
		if live {
			l.err = l.p.unwire(l)
		}
	})
	return l.err
}

// Stop releases every lease and removes the pool's bridge, veths and
// tables. It is idempotent and blocking.
func (p *Pool) Stop() error {
	p.mu.Lock()
	if !p.started || p.stopped {
		p.mu.Unlock()
		return nil
	}
	p.stopped = true
	leases := make([]*Lease, 0, len(p.leases))
	for _, l := range p.leases {
		leases = append(leases, l)
	}
	p.mu.Unlock()
	close(p.done)
	p.wg.Wait()
	var errs []error
	for _, l := range leases {
		if err := l.Release(); err != nil {
			errs = append(errs, err)
		}
	}
	errs = append(errs, p.teardown())
	return errors.Join(errs...)
}

// teardown deletes what Start created and closes the handles.
func (p *Pool) teardown() error {
	p.op.Lock()
	defer p.op.Unlock()
	var errs []error
	if p.nft != nil && p.owns {
		if err := removeWorker(p.nl, p.nft, p.cfg.WorkerID); err != nil {
			errs = append(errs, err)
		}
	}
	if p.nft != nil {
		p.nft.CloseLasting()
	}
	if p.nl != nil {
		p.nl.Close()
	}
	if p.rt != nil {
		p.rt.Close()
	}
	if p.ns >= 0 {
		p.ns.Close()
	}
	return errors.Join(errs...)
}

// CleanStale removes, in the caller's network namespace, the bridges,
// veths and nftables tables of corral workers whose owning process is gone
// (the owner's pid and start time are the bridge's alias; a table or veth
// without a bridge has no owner). Start does this itself.
func CleanStale() error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	ns, err := netns.Get()
	if err != nil {
		return err
	}
	defer ns.Close()
	return cleanStaleIn(ns)
}

func cleanStaleIn(ns netns.NsHandle) error {
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return err
	}
	defer h.Close()
	c, err := nftables.New(nftables.WithNetNSFd(int(ns)))
	if err != nil {
		return err
	}
	return cleanStale(h, c)
}

// parseName returns the worker id of a corral link name: "corral<id>"
// (bridge, "corral0" for the default id) or "corral-<id>-<n>" /
// "corral-<id>.<n>" (veth).
func parseName(name string) (id string, bridge, ok bool) {
	isID := func(s string) bool {
		return len(s) >= 1 && len(s) <= 4 && strings.IndexFunc(s, func(r rune) bool { return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9') }) < 0
	}
	rest, ok := strings.CutPrefix(name, "corral-")
	if !ok {
		rest, ok = strings.CutPrefix(name, "corral")
		return rest, ok && isID(rest), ok && isID(rest)
	}
	i := strings.IndexFunc(rest, func(r rune) bool { return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9') })
	if i < 0 {
		return "", false, false
	}
	id, suffix := rest[:i], rest[i:]
	if len(id) < 1 || len(id) > 4 || len(suffix) < 2 || (suffix[0] != '-' && suffix[0] != '.') {
		return "", false, false
	}
	if _, err := strconv.ParseUint(suffix[1:], 10, 8); err != nil {
		return "", false, false
	}
	return id, false, true
}

func cleanStale(h *netlink.Handle, c *nftables.Conn) error {
	links, err := linkList(h)
	if err != nil {
		return fmt.Errorf("netpool: list links: %w", err)
	}
	ids := map[string]bool{} // id -> owner alive
	for _, l := range links {
		id, bridge, ok := parseName(l.Attrs().Name)
		if !ok {
			continue
		}
		if bridge {
			if l.Type() != "bridge" {
				continue
			}
			ids[id] = ownerAlive(l.Attrs().Alias)
		} else if _, seen := ids[id]; !seen {
			ids[id] = false
		}
	}
	for _, fam := range []nftables.TableFamily{nftables.TableFamilyINet, nftables.TableFamilyBridge} {
		ts, err := c.ListTablesOfFamily(fam)
		if err != nil {
			return fmt.Errorf("netpool: list tables: %w", err)
		}
		for _, t := range ts {
			if id, ok := strings.CutPrefix(t.Name, "corral-"); ok {
				if _, seen := ids[id]; !seen {
					ids[id] = false
				}
			}
		}
	}
	var errs []error
	for id, alive := range ids {
		if !alive {
			errs = append(errs, removeWorker(h, c, id))
		}
	}
	return errors.Join(errs...)
}

// removeWorker deletes worker id's tables, veths and bridge.
func removeWorker(h *netlink.Handle, c *nftables.Conn, id string) error {
	var errs []error
	for _, fam := range []nftables.TableFamily{nftables.TableFamilyINet, nftables.TableFamilyBridge} {
		ts, err := c.ListTablesOfFamily(fam)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, t := range ts {
			if t.Name == tableName(id) {
				c.DelTable(t)
				if err := c.Flush(); err != nil {
					errs = append(errs, fmt.Errorf("netpool: delete table %s: %w", t.Name, err))
				}
			}
		}
	}
	links, err := linkList(h)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	var bridge netlink.Link
	for _, l := range links {
		lid, isBridge, ok := parseName(l.Attrs().Name)
		if !ok || lid != id {
			continue
		}
		if isBridge {
			bridge = l
			continue
		}
		if err := h.LinkDel(l); err != nil && !errors.Is(err, unix.ENODEV) {
			errs = append(errs, fmt.Errorf("netpool: delete %s: %w", l.Attrs().Name, err))
		}
	}
	if bridge != nil && bridge.Type() == "bridge" {
		// The worker's block is the bridge's (gateway) address's /24: its
		// sandboxes' connections go with it, so a later worker given the
		// same block inherits no state.
		addrs, err := h.AddrList(bridge, unix.AF_INET)
		if err != nil {
			errs = append(errs, fmt.Errorf("netpool: addresses of %s: %w", bridge.Attrs().Name, err))
		}
		for _, a := range addrs {
			if err := flushConntrack(h, a.IPNet); err != nil {
				errs = append(errs, err)
			}
		}
		if err := h.LinkDel(bridge); err != nil {
			errs = append(errs, fmt.Errorf("netpool: delete %s: %w", bridge.Attrs().Name, err))
		}
	}
	return errors.Join(errs...)
}

// flushConntrack deletes the IPv4 conntrack entries whose original source
// or destination lies in n.
func flushConntrack(h *netlink.Handle, n *net.IPNet) error {
	n = &net.IPNet{IP: n.IP.Mask(n.Mask), Mask: n.Mask}
	var src, dst netlink.ConntrackFilter
	if err := src.AddIPNet(netlink.ConntrackOrigSrcIP, n); err != nil {
		return err
	}
	if err := dst.AddIPNet(netlink.ConntrackOrigDstIP, n); err != nil {
		return err
	}
	if _, err := h.ConntrackDeleteFilters(netlink.ConntrackTable, unix.AF_INET, &src, &dst); err != nil {
		return fmt.Errorf("netpool: flush conntrack of %s: %w", n, err)
	}
	return nil
}

// retryDump retries a netlink dump that another process's changes
// interrupted (a few times; the dump is cheap).
func retryDump(dump func() error) error {
	var err error
	for range 10 {
		if err = dump(); !errors.Is(err, netlink.ErrDumpInterrupted) {
			return err
		}
	}
	return err
}

func linkList(h *netlink.Handle) ([]netlink.Link, error) {
	var ls []netlink.Link
	err := retryDump(func() (err error) { ls, err = h.LinkList(); return err })
	return ls, err
}

// ownerAlias names this process as the owner: "corral pid=<pid> start=<ticks>".
func ownerAlias() string {
	pid := os.Getpid()
	return fmt.Sprintf("corral pid=%d start=%s", pid, startTime(pid))
}

func ownerAlive(alias string) bool {
	var pid int
	var start string
	if _, err := fmt.Sscanf(alias, "corral pid=%d start=%s", &pid, &start); err != nil || pid <= 0 {
		return false
	}
	st := startTime(pid)
	return st != "" && st == start
}

// startTime is field 22 of /proc/<pid>/stat, "" if the process is gone.
func startTime(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return ""
	}
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return ""
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return ""
	}
	return f[19]
}

// inNS runs fn on a thread switched into ns. If the thread cannot be
// switched back it stays locked, so the runtime throws it away.
func inNS(ns netns.NsHandle, fn func() error) error {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer orig.Close()
	if err := netns.Set(ns); err != nil {
		runtime.UnlockOSThread()
		return err
	}
	ferr := fn()
	if err := netns.Set(orig); err != nil {
		return errors.Join(ferr, err)
	}
	runtime.UnlockOSThread()
	return ferr
}

// readSysctl reads /proc/sys/<name> as seen from ns.
func readSysctl(ns netns.NsHandle, name string) (string, error) {
	var v string
	err := inNS(ns, func() error {
		b, err := os.ReadFile("/proc/sys/" + name)
		v = strings.TrimSpace(string(b))
		return err
	})
	return v, err
}

func ipnet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}
