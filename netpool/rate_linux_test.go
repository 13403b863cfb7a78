package netpool

import (
	"io"
	"net"
	"testing"
	"time"

	"github.com/vishvananda/netns"
)

// serveBytes serves n bytes to every connection on addr inside ns (a
// download), or, with n 0, reads a connection to its end and answers "ok"
// (an upload).
func serveBytes(t *testing.T, ns netns.NsHandle, addr string, n int) {
	t.Helper()
	var ln net.Listener
	must(t, inNS(ns, func() (err error) {
		ln, err = net.Listen("tcp4", addr)
		return err
	}))
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.SetDeadline(time.Now().Add(10 * time.Second))
			if n > 0 {
				c.Write(make([]byte, n))
			} else {
				io.Copy(io.Discard, c)
				c.Write([]byte("ok"))
			}
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
}

// transfer connects from ns to addr and either uploads n bytes and waits
// for the server's "ok", or (n 0) downloads to the end. It returns the
// bytes moved and the time taken, bounded by 10 s.
func transfer(t *testing.T, ns netns.NsHandle, addr string, n int) (int, time.Duration) {
	t.Helper()
	var c net.Conn
	must(t, inNS(ns, func() (err error) {
		c, err = (&net.Dialer{Timeout: time.Second}).Dial("tcp4", addr)
		return err
	}))
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	start := time.Now()
	if n > 0 {
		if _, err := c.Write(make([]byte, n)); err != nil {
			t.Fatalf("upload to %s: %v", addr, err)
		}
		c.(*net.TCPConn).CloseWrite()
		b, err := io.ReadAll(c)
		if err != nil || string(b) != "ok" {
			t.Fatalf("upload to %s: %q %v", addr, b, err)
		}
		return n, time.Since(start)
	}
	got, err := io.Copy(io.Discard, c)
	if err != nil {
		t.Fatalf("download from %s: %v", addr, err)
	}
	return int(got), time.Since(start)
}

// The upload and download limits hold: a sandbox cannot move a mebibyte
// faster than its token buckets let it, either way, and the buckets sit
// where the job cannot reach them (its eth0 needs CAP_NET_ADMIN to change;
// the download one is on the host's end of the veth).
func TestEgressRates(t *testing.T) {
	needRoot(t)
	tp := newTopo(t)
	const size = 1 << 20
	serveBytes(t, tp.inet, "203.0.113.10:9191", size) // downloads
	serveBytes(t, tp.inet, "203.0.113.10:9292", 0)    // uploads
	sb := newNS(t, "corral-t-sb5")
	const rate = 8_000_000 // bits/s: 1 MB/s
	p := startPool(t, Config{WorkerID: "t3", RateBitsPerSec: rate, DownloadBitsPerSec: rate})
	l := attach(t, p, "corral-t-sb5")

	// The host end of the sandbox's veth carries the download bucket.
	host, err := tp.hostH.LinkByName(hostName("t3", int(l.Addr.As4()[3])))
	must(t, err)
	qs, err := tp.hostH.QdiscList(host)
	must(t, err)
	found := false
	for _, q := range qs {
		found = found || q.Type() == "tbf"
	}
	if !found {
		t.Errorf("no tbf qdisc on the host end %s: %v", host.Attrs().Name, qs)
	}

	// Everything past the first bucketful (16 KiB) waits for tokens: at
	// least (size − 16 KiB) / rate. Without a bucket a veth moves it in
	// milliseconds.
	least := time.Duration(float64(size-16<<10) * 8 / rate * float64(time.Second))
	least = least * 8 / 10 // timer slack
	for _, dir := range []struct {
		name string
		addr string
		n    int
	}{{"download", "203.0.113.10:9191", 0}, {"upload", "203.0.113.10:9292", size}} {
		got, took := transfer(t, sb, dir.addr, dir.n)
		t.Logf("%s: %d bytes in %v (%.1f Mbit/s)", dir.name, got, took, float64(got)*8/took.Seconds()/1e6)
		if got != size {
			t.Errorf("%s: %d bytes, want %d", dir.name, got, size)
		}
		if took < least {
			t.Errorf("%s: %d bytes in %v, faster than the %d bits/s limit allows (%v)", dir.name, got, took, rate, least)
		}
	}

	// A pool without limits moves the same bytes, so the buckets, not the
	// topology, slowed them (logged, not asserted: speed is not a test).
	q := startPool(t, Config{WorkerID: "t4"})
	sb6 := newNS(t, "corral-t-sb6")
	attach(t, q, "corral-t-sb6")
	got, took := transfer(t, sb6, "203.0.113.10:9191", 0)
	t.Logf("unlimited download: %d bytes in %v", got, took)
	if got != size {
		t.Errorf("unlimited download: %d bytes", got)
	}
}

func TestRateValidation(t *testing.T) {
	for _, c := range []Config{{WorkerID: "v", RateBitsPerSec: 100}, {WorkerID: "v", DownloadBitsPerSec: 7999}} {
		if err := c.WithDefaults().Validate(); err == nil {
			t.Errorf("%+v: no error", c)
		}
	}
	if err := (Config{WorkerID: "v", RateBitsPerSec: 8000, DownloadBitsPerSec: 1e9}).WithDefaults().Validate(); err != nil {
		t.Error(err)
	}
}
