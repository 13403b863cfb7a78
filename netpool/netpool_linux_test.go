package netpool

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// The test topology, made only of namespaces the test creates:
//
//	corral-t-sb1, -sb2, -sb3, -c<i>   sandboxes (eth0 from the pool)
//	       | veth corral-t1-<n> on bridge corral-t1 (10.213.x.0/24)
//	corral-t-host    the worker host: the Pool runs here (Config.NetNS)
//	       | corral-t-up 192.0.2.2/24 <-> corral-t-in 192.0.2.1/24
//	corral-t-inet    "the internet": 203.0.113.10 (public),
//	                 169.254.169.254 (metadata), 10.1.2.3 (private service)
const nsDir = "/var/run/netns/"

func TestMain(m *testing.M) {
	code := m.Run()
	if os.Geteuid() == 0 {
		if leftovers := leaks(); leftovers != "" {
			fmt.Fprintln(os.Stderr, "netpool: left behind:", leftovers)
			code = 1
		}
	}
	os.Exit(code)
}

// leaks lists corral* namespaces, and links and tables in this namespace.
func leaks() string {
	var out []string
	ents, _ := os.ReadDir(nsDir)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "corral") {
			out = append(out, "netns "+e.Name())
		}
	}
	h, _ := netlink.NewHandle()
	links, _ := linkList(h)
	for _, l := range links {
		if strings.HasPrefix(l.Attrs().Name, "corral") {
			out = append(out, "link "+l.Attrs().Name)
		}
	}
	if c, err := nftables.New(); err == nil {
		ts, _ := c.ListTables()
		for _, t := range ts {
			if strings.HasPrefix(t.Name, "corral") {
				out = append(out, "table "+t.Name)
			}
		}
	}
	return strings.Join(out, ", ")
}

func needRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces, veths, nftables)")
	}
}

// newNS creates the named namespace with loopback up, removed at cleanup.
func newNS(t testing.TB, name string) netns.NsHandle {
	t.Helper()
	if !strings.HasPrefix(name, "corral-t-") {
		t.Fatalf("test namespace %q must start with corral-t-", name)
	}
	netns.DeleteNamed(name) // a previous run that was killed
	var ns netns.NsHandle
	err := func() error {
		// NewNamed switches the calling thread; switch back before unlocking.
		runtimeLock()
		defer runtimeUnlock()
		orig, err := netns.Get()
		if err != nil {
			return err
		}
		defer orig.Close()
		ns, err = netns.NewNamed(name)
		if serr := netns.Set(orig); serr != nil {
			panic("netpool test: cannot return to the original namespace: " + serr.Error())
		}
		return err
	}()
	if err != nil {
		t.Fatalf("create netns %s: %v", name, err)
	}
	t.Cleanup(func() {
		ns.Close()
		if err := netns.DeleteNamed(name); err != nil {
			t.Errorf("delete netns %s: %v", name, err)
		}
	})
	h := handle(t, ns)
	lo, err := h.LinkByName("lo")
	if err == nil {
		err = h.LinkSetUp(lo)
	}
	if err != nil {
		t.Fatalf("lo up in %s: %v", name, err)
	}
	return ns
}

func handle(t testing.TB, ns netns.NsHandle) *netlink.Handle {
	t.Helper()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func addAddr(t testing.TB, h *netlink.Handle, link, cidr string) {
	t.Helper()
	l, err := h.LinkByName(link)
	must(t, err)
	a, err := netlink.ParseAddr(cidr)
	must(t, err)
	must(t, h.AddrAdd(l, a))
	must(t, h.LinkSetUp(l))
}

// listen serves "hi\n" to every connection on addr inside ns.
func listen(t testing.TB, ns netns.NsHandle, addr string) {
	t.Helper()
	var ln net.Listener
	must(t, inNS(ns, func() (err error) {
		ln, err = net.Listen("tcp4", addr)
		return err
	}))
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("hi\n"))
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close(); wg.Wait() })
}

// dial makes one bounded connection attempt from ns and reads the greeting.
func dial(ns netns.NsHandle, addr string, from netip.Addr) error {
	var c net.Conn
	err := inNS(ns, func() (err error) {
		d := net.Dialer{Timeout: time.Second}
		if from.IsValid() {
			d.LocalAddr = &net.TCPAddr{IP: from.AsSlice()}
		}
		c, err = d.Dial("tcp4", addr)
		return err
	})
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	b, err := io.ReadAll(c)
	if err != nil {
		return err
	}
	if string(b) != "hi\n" {
		return fmt.Errorf("got %q", b)
	}
	return nil
}

func reach(t *testing.T, ns netns.NsHandle, name, addr string) {
	t.Helper()
	if err := dial(ns, addr, netip.Addr{}); err != nil {
		t.Errorf("%s -> %s: want reachable, got %v", name, addr, err)
	}
}

func blocked(t *testing.T, ns netns.NsHandle, name, addr string) {
	t.Helper()
	if err := dial(ns, addr, netip.Addr{}); err == nil {
		t.Errorf("%s -> %s: want blocked, it connected", name, addr)
	} else {
		t.Logf("%s -> %s: %v", name, addr, err)
	}
}

type topo struct {
	host, inet netns.NsHandle
	hostH      *netlink.Handle
}

func newTopo(t testing.TB) *topo {
	t.Helper()
	tp := &topo{host: newNS(t, "corral-t-host"), inet: newNS(t, "corral-t-inet")}
	tp.hostH = handle(t, tp.host)
	inetH := handle(t, tp.inet)
	// Created inside the test's host namespace, the peer straight into the
	// test's internet: nothing touches the real host's interfaces.
	must(t, tp.hostH.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "corral-t-up"},
		PeerName: "corral-t-in", PeerNamespace: netlink.NsFd(int(tp.inet))}))
	addAddr(t, tp.hostH, "corral-t-up", "192.0.2.2/24")
	addAddr(t, inetH, "corral-t-in", "192.0.2.1/24")
	for _, a := range []string{"203.0.113.10/32", "169.254.169.254/32", "10.1.2.3/32"} {
		addAddr(t, inetH, "lo", a)
	}
	up, err := tp.hostH.LinkByName("corral-t-up")
	must(t, err)
	must(t, tp.hostH.RouteAdd(&netlink.Route{LinkIndex: up.Attrs().Index, Gw: net.ParseIP("192.0.2.1")}))
	must(t, inNS(tp.host, func() error {
		return os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0o644)
	}))
	listen(t, tp.inet, "203.0.113.10:8080")
	listen(t, tp.inet, "203.0.113.10:9090")
	listen(t, tp.inet, "169.254.169.254:80")
	listen(t, tp.inet, "10.1.2.3:80")
	listen(t, tp.inet, "10.1.2.3:53") // a resolver inside a denied range
	listen(t, tp.host, "0.0.0.0:7001")
	listen(t, tp.host, "127.0.0.1:7002")
	return tp
}

func startPool(t testing.TB, cfg Config) *Pool {
	t.Helper()
	cfg.NetNS = nsDir + "corral-t-host"
	p, err := New(cfg)
	must(t, err)
	must(t, p.Start(context.Background()))
	t.Cleanup(func() {
		if err := p.Stop(); err != nil {
			t.Errorf("stop %s: %v", cfg.WorkerID, err)
		}
	})
	return p
}

func attach(t testing.TB, p *Pool, sb string, allow ...string) *Lease {
	t.Helper()
	var as []Allow
	for _, s := range allow {
		a, err := ParseAllow(s)
		must(t, err)
		as = append(as, a)
	}
	l, err := p.Attach(context.Background(), nsDir+sb, as)
	if err != nil {
		t.Fatalf("attach %s: %v", sb, err)
	}
	t.Cleanup(func() { l.Release() })
	return l
}

// corralState lists the links and tables in ns whose name has prefix.
func corralState(t testing.TB, ns netns.NsHandle, prefix string) []string {
	t.Helper()
	var out []string
	links, err := linkList(handle(t, ns))
	must(t, err)
	for _, l := range links {
		// The bridge is "corral<id>", the rest "corral-<id>...".
		if strings.HasPrefix(l.Attrs().Name, prefix) || l.Attrs().Name == strings.Replace(prefix, "corral-", "corral", 1) {
			out = append(out, "link "+l.Attrs().Name)
		}
	}
	c, err := nftables.New(nftables.WithNetNSFd(int(ns)))
	must(t, err)
	ts, err := c.ListTables()
	must(t, err)
	for _, tb := range ts {
		if strings.HasPrefix(tb.Name, prefix) {
			out = append(out, "table "+tb.Name)
		}
	}
	return out
}

func TestEgress(t *testing.T) {
	needRoot(t)
	tp := newTopo(t)
	sb1, sb2, sb3 := newNS(t, "corral-t-sb1"), newNS(t, "corral-t-sb2"), newNS(t, "corral-t-sb3")

	// Controls: the services exist and answer where they live.
	reach(t, tp.inet, "inet", "10.1.2.3:80")
	reach(t, tp.inet, "inet", "169.254.169.254:80")
	reach(t, tp.host, "host", "127.0.0.1:7001")
	reach(t, tp.host, "host", "127.0.0.1:7002")
	reach(t, tp.host, "host", "203.0.113.10:8080")

	p := startPool(t, Config{WorkerID: "t1", DNS: []netip.Addr{netip.MustParseAddr("10.1.2.3")}})
	if err := func() error {
		p2, _ := New(Config{WorkerID: "t1", NetNS: nsDir + "corral-t-host"})
		return p2.Start(context.Background())
	}(); !errors.Is(err, ErrInUse) {
		t.Errorf("second pool with a live id: got %v, want ErrInUse", err)
	}
	l1 := attach(t, p, "corral-t-sb1")
	l2 := attach(t, p, "corral-t-sb2", "203.0.113.10:8080")
	if !p.block.Contains(l1.Addr) || !p.block.Contains(l2.Addr) || l1.Addr == l2.Addr {
		t.Fatalf("addresses %s, %s not distinct in %s", l1.Addr, l2.Addr, p.block)
	}
	gw := l1.Gateway.String()

	t.Run("internet", func(t *testing.T) {
		reach(t, sb1, "sb1", "203.0.113.10:8080")
		reach(t, sb1, "sb1", "203.0.113.10:9090")
	})
	t.Run("host", func(t *testing.T) {
		blocked(t, sb1, "sb1", gw+":7001")       // bridge address
		blocked(t, sb1, "sb1", "192.0.2.2:7001") // the host's uplink address
		blocked(t, sb1, "sb1", gw+":7002")       // a loopback-only listener, via the gateway
		blocked(t, sb1, "sb1", "127.0.0.1:7001") // its own loopback: nothing listens
	})
	t.Run("metadata and private", func(t *testing.T) {
		blocked(t, sb1, "sb1", "169.254.169.254:80")
		blocked(t, sb1, "sb1", "10.1.2.3:80")
	})
	t.Run("other sandbox", func(t *testing.T) {
		listen(t, sb2, "0.0.0.0:7003")
		listen(t, sb1, "0.0.0.0:7003")
		reach(t, sb2, "sb2", l2.Addr.String()+":7003") // control: it listens
		blocked(t, sb1, "sb1", l2.Addr.String()+":7003")
		blocked(t, sb2, "sb2", l1.Addr.String()+":7003")
	})
	t.Run("dns servers", func(t *testing.T) {
		reach(t, sb1, "sb1", "10.1.2.3:53")
		reach(t, sb2, "sb2", "10.1.2.3:53") // narrowed sandboxes keep DNS
	})
	t.Run("egress_allow narrows", func(t *testing.T) {
		reach(t, sb2, "sb2", "203.0.113.10:8080")
		blocked(t, sb2, "sb2", "203.0.113.10:9090")
		blocked(t, sb2, "sb2", "10.1.2.3:80")
	})
	t.Run("no lease", func(t *testing.T) {
		blocked(t, sb3, "sb3", "203.0.113.10:8080")
		blocked(t, sb3, "sb3", gw+":7001")
	})
	t.Run("spoofed source", func(t *testing.T) {
		h := handle(t, sb1)
		spoof := netip.AddrFrom4([4]byte{l1.Addr.As4()[0], l1.Addr.As4()[1], l1.Addr.As4()[2], 250})
		addAddr(t, h, "eth0", spoof.String()+"/32")
		if err := dial(sb1, "203.0.113.10:8080", spoof); err == nil {
			t.Errorf("sb1 with spoofed source %s reached the internet", spoof)
		}
		reach(t, sb1, "sb1", "203.0.113.10:8080")
	})
	t.Run("concurrent leases", func(t *testing.T) {
		const n = 6
		var wg sync.WaitGroup
		leases := make([]*Lease, n)
		errs := make([]error, n)
		for i := range n {
			newNS(t, fmt.Sprintf("corral-t-c%d", i))
		}
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				leases[i], errs[i] = p.Attach(context.Background(), nsDir+fmt.Sprintf("corral-t-c%d", i), nil)
			}()
		}
		wg.Wait()
		seen := map[netip.Addr]bool{l1.Addr: true, l2.Addr: true}
		for i, l := range leases {
			if errs[i] != nil {
				t.Fatalf("attach c%d: %v", i, errs[i])
			}
			if seen[l.Addr] {
				t.Errorf("address %s handed out twice", l.Addr)
			}
			seen[l.Addr] = true
		}
		for _, l := range leases {
			must(t, l.Release())
		}
	})
	t.Run("release", func(t *testing.T) {
		n := int(l1.Addr.As4()[3])
		if tracked(t, tp.hostH, l1.Addr) == 0 {
			t.Fatalf("no conntrack entries for %s before Release", l1.Addr)
		}
		must(t, l1.Release())
		if k := tracked(t, tp.hostH, l1.Addr); k != 0 {
			t.Errorf("%d conntrack entries for %s after Release", k, l1.Addr)
		}
		must(t, l1.Release()) // idempotent
		p.mu.Lock()
		used := p.used[n]
		p.mu.Unlock()
		if used {
			t.Errorf("address %s still in use after Release", l1.Addr)
		}
		if _, err := handle(t, sb1).LinkByName("eth0"); err == nil {
			t.Errorf("sb1 still has eth0 after Release")
		}
		if _, err := tp.hostH.LinkByName(hostName("t1", n)); err == nil {
			t.Errorf("host veth still there after Release")
		}
		blocked(t, sb1, "sb1", "203.0.113.10:8080")
	})
	t.Run("second worker", func(t *testing.T) {
		sb4 := newNS(t, "corral-t-sb4")
		// No operator deny list: the private service becomes reachable,
		// showing that it is the deny set that blocks it for worker t1.
		q := startPool(t, Config{WorkerID: "t2", RateBitsPerSec: 10_000_000, Deny: []netip.Prefix{}})
		if q.block.Overlaps(p.block) {
			t.Fatalf("blocks overlap: %s %s", q.block, p.block)
		}
		l4 := attach(t, q, "corral-t-sb4")
		if err := dial(sb4, "203.0.113.10:8080", netip.Addr{}); err != nil {
			for _, c := range [][]string{{"corral-t-host", "bridge", "-d", "link"}, {"corral-t-sb4", "tc", "-s", "qdisc"}, {"corral-t-sb4", "ip", "neigh"}, {"corral-t-host", "ip", "-s", "link"}, {"corral-t-sb4", "ip", "-s", "link"}} {
				out, _ := exec.Command("ip", append([]string{"netns", "exec"}, c...)...).CombinedOutput()
				t.Logf("%v:\n%s", c, out)
			}
		}
		reach(t, sb4, "sb4", "203.0.113.10:8080")
		reach(t, sb4, "sb4", "10.1.2.3:80")
		blocked(t, sb4, "sb4", "169.254.169.254:80")
		blocked(t, sb4, "sb4", l4.Gateway.String()+":7001")
		blocked(t, sb4, "sb4", l2.Addr.String()+":7003") // worker t1's sandbox
		blocked(t, sb2, "sb2", l4.Addr.String()+":7003")
		h := handle(t, sb4)
		eth0, err := h.LinkByName("eth0")
		must(t, err)
		qs, err := h.QdiscList(eth0)
		must(t, err)
		found := false
		for _, q := range qs {
			found = found || q.Type() == "tbf"
		}
		if !found {
			t.Errorf("no tbf qdisc on sb4's eth0: %v", qs)
		}
	})
	t.Run("stop leaves nothing", func(t *testing.T) {
		must(t, p.Stop())
		if left := corralState(t, tp.host, "corral-t1"); len(left) > 0 {
			t.Errorf("after Stop: %v", left)
		}
		if _, err := p.Attach(context.Background(), nsDir+"corral-t-sb1", nil); !errors.Is(err, ErrStopped) {
			t.Errorf("attach after stop: %v", err)
		}
	})
}

func TestCleanStale(t *testing.T) {
	needRoot(t)
	tp := newTopo(t)
	sb1 := newNS(t, "corral-t-sb1")
	crashed, err := New(Config{WorkerID: "t9", NetNS: nsDir + "corral-t-host"})
	must(t, err)
	must(t, crashed.Start(context.Background()))
	l, err := crashed.Attach(context.Background(), nsDir+"corral-t-sb1", nil)
	if err != nil {
		t.Fatal(err)
	}
	reach(t, sb1, "sb1", "203.0.113.10:8080")
	if tracked(t, tp.hostH, l.Addr) == 0 {
		t.Fatalf("the crashed pool's sandbox left no conntrack entry to test with")
	}
	// "Crash": the owner recorded on the bridge becomes a dead process.
	cmd := exec.Command("true")
	must(t, cmd.Run())
	br, err := tp.hostH.LinkByName("corralt9")
	must(t, err)
	must(t, tp.hostH.LinkSetAlias(br, fmt.Sprintf("corral pid=%d start=1", cmd.ProcessState.Pid())))
	crashed.mu.Lock()
	crashed.stopped = true // abandoned: nothing of it runs any more
	crashed.mu.Unlock()
	close(crashed.done)
	crashed.wg.Wait()
	defer func() { crashed.nft.CloseLasting(); crashed.nl.Close(); crashed.ns.Close() }()

	if left := corralState(t, tp.host, "corral-t9"); len(left) < 4 {
		t.Fatalf("the crashed pool left too little to test with: %v", left)
	}
	// A live pool's things must survive the sweep.
	startPool(t, Config{WorkerID: "t1"}) // Start itself sweeps t9
	if left := corralState(t, tp.host, "corral-t9"); len(left) > 0 {
		t.Errorf("after Start of another worker: %v", left)
	}
	if n := tracked(t, tp.hostH, l.Addr); n > 0 {
		t.Errorf("the sweep left %d conntrack entries of the crashed pool's %s", n, l.Addr)
	}
	must(t, cleanStaleIn(tp.host))
	if left := corralState(t, tp.host, "corral-t1"); len(left) < 3 {
		t.Errorf("sweep removed a live worker's things: %v", left)
	}
}

func TestParseAllow(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string
		err  bool
	}{
		{"203.0.113.10", "203.0.113.10/32", false},
		{"203.0.113.0/24", "203.0.113.0/24", false},
		{"203.0.113.7/24", "203.0.113.0/24", false},
		{"203.0.113.10:8080", "203.0.113.10/32:8080", false},
		{"203.0.113.0/24:443", "203.0.113.0/24:443", false},
		{"2001:db8::/32", "2001:db8::/32", false},
		{"[2001:db8::1]:443", "[2001:db8::1/128]:443", false},
		{"[2001:db8::/32]:443", "[2001:db8::/32]:443", false},
		{"2001:db8::1", "2001:db8::1/128", false},
		{"", "", true},
		{"example.com:80", "", true},
		{"1.2.3.4:0", "", true},
		{"1.2.3.4:65536", "", true},
		{"1.2.3.4:", "", true},
		{"1.2.3.4/33", "", true},
		{"[2001:db8::1]", "2001:db8::1/128", false},
		{"[2001:db8::1]:", "", true},
		{"[2001:db8::1", "", true},
		{"fe80::1%eth0", "", true},
	} {
		a, err := ParseAllow(tc.in)
		if (err != nil) != tc.err {
			t.Errorf("ParseAllow(%q) error %v, want error %v", tc.in, err, tc.err)
			continue
		}
		if err == nil && a.String() != tc.want {
			t.Errorf("ParseAllow(%q) = %s, want %s", tc.in, a, tc.want)
		}
	}
}

func FuzzParseAllow(f *testing.F) {
	for _, s := range []string{"1.2.3.4:80", "[::1]:53", "10.0.0.0/8", "::/0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := ParseAllow(s)
		if err != nil {
			return
		}
		b, err := ParseAllow(a.String())
		if err != nil || b != a {
			t.Fatalf("%q -> %s -> %v, %v", s, a, b, err)
		}
	})
}

func TestMergeRanges(t *testing.T) {
	p := netip.MustParsePrefix
	got := mergeRanges([]netip.Prefix{p("10.0.0.0/8"), p("10.213.0.0/16"), p("11.0.0.0/8"), p("240.0.0.0/4"), p("224.0.0.0/4"), p("fc00::/7")})
	want := [][2]uint32{{10 << 24, 12<<24 - 1}, {224 << 24, ^uint32(0)}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

func TestConfig(t *testing.T) {
	c := Config{WorkerID: "7"}.WithDefaults()
	must(t, c.Validate())
	if b := c.block(); b.String() != "10.213.7.0/24" {
		t.Errorf("block of id 7 = %s", b)
	}
	for _, bad := range []Config{{WorkerID: "abcde"}, {WorkerID: "A"}, {WorkerID: "a-b"},
		{WorkerID: "a", Subnet: netip.MustParsePrefix("10.0.0.0/25")}, {WorkerID: "a", Subnet: netip.MustParsePrefix("fd00::/64")}} {
		if err := bad.WithDefaults().Validate(); !errors.Is(err, ErrBadConfig) {
			t.Errorf("Validate(%+v) = %v", bad, err)
		}
	}
	for name, want := range map[string]bool{"corralt1": true, "corral0": true, "corral-t1-12": true, "corral-t1.12": true,
		"corral-t1": false, "corral-t-up": false, "corral-t1-x": false, "corral-": false, "corral": false, "corralabcde": false, "eth0": false} {
		if _, _, ok := parseName(name); ok != want {
			t.Errorf("parseName(%q) ok = %v", name, ok)
		}
	}
}

func TestResolvConf(t *testing.T) {
	got := string(ResolvConf([]netip.Addr{netip.MustParseAddr("192.0.2.53"), netip.MustParseAddr("2001:db8::53")}))
	if !strings.Contains(got, "nameserver 192.0.2.53\nnameserver 2001:db8::53\n") {
		t.Errorf("resolv.conf:\n%s", got)
	}
	if !strings.Contains(string(Hosts()), "127.0.0.1\tlocalhost") {
		t.Errorf("hosts:\n%s", Hosts())
	}
}

func runtimeLock()   { runtime.LockOSThread() }
func runtimeUnlock() { runtime.UnlockOSThread() }

// tracked counts conntrack entries whose original source is a.
func tracked(t *testing.T, h *netlink.Handle, a netip.Addr) int {
	t.Helper()
	flows, err := h.ConntrackTableList(netlink.ConntrackTable, netlink.InetFamily(unix.AF_INET))
	must(t, err)
	k := 0
	for _, f := range flows {
		if got, ok := netip.AddrFromSlice(f.Forward.SrcIP.To4()); ok && got == a {
			k++
		}
	}
	return k
}
