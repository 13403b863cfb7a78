package worker

import (
	"context"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/corralhq/corral/jobs"
	"github.com/corralhq/corral/natstest"
	"github.com/corralhq/corral/netpool"
	"github.com/corralhq/corral/rootfs/rootfstest"
)

// ipCmd runs ip(8) and fails the test on error.
func ipCmd(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// egressTopology makes two namespaces, both the test's own: corral-te-host
// plays the worker's host (its only uplink goes to the next one) and
// corral-te-inet plays the internet, serving HTTP on 203.0.113.10:8080 and a
// fake metadata service on 169.254.169.254:80. Nothing can leave the machine.
func egressTopology(t *testing.T) (hostNS string) {
	t.Helper()
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs ip (iproute2)")
	}
	for _, ns := range []string{"corral-te-host", "corral-te-inet"} {
		exec.Command("ip", "netns", "del", ns).Run()
		ipCmd(t, "netns", "add", ns)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
		ipCmd(t, "-n", ns, "link", "set", "lo", "up")
	}
	ipCmd(t, "link", "add", "corral-te-a", "netns", "corral-te-host", "type", "veth", "peer", "name", "corral-te-b", "netns", "corral-te-inet")
	ipCmd(t, "-n", "corral-te-host", "addr", "add", "198.51.100.1/30", "dev", "corral-te-a")
	ipCmd(t, "-n", "corral-te-inet", "addr", "add", "198.51.100.2/30", "dev", "corral-te-b")
	ipCmd(t, "-n", "corral-te-host", "link", "set", "corral-te-a", "up")
	ipCmd(t, "-n", "corral-te-inet", "link", "set", "corral-te-b", "up")
	ipCmd(t, "-n", "corral-te-host", "route", "add", "default", "via", "198.51.100.2")
	ipCmd(t, "-n", "corral-te-inet", "addr", "add", "203.0.113.10/32", "dev", "lo")
	ipCmd(t, "-n", "corral-te-inet", "addr", "add", "169.254.169.254/32", "dev", "lo")
	if out, err := exec.Command("ip", "netns", "exec", "corral-te-host", "sysctl", "-qw", "net.ipv4.ip_forward=1").CombinedOutput(); err != nil {
		t.Fatalf("forwarding in the test's host namespace: %v %s", err, out)
	}
	www := t.TempDir()
	os.WriteFile(filepath.Join(www, "index.html"), []byte("hello from the internet\n"), 0o644)
	for _, addr := range []string{"203.0.113.10:8080", "169.254.169.254:80", "198.51.100.1:9000"} {
		ns := "corral-te-inet"
		if strings.HasPrefix(addr, "198.51.100.1:") {
			ns = "corral-te-host" // a service on the worker's host
		}
		cmd := exec.Command("ip", "netns", "exec", ns, "busybox", "httpd", "-f", "-p", addr, "-h", www)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	}
	return "/var/run/netns/corral-te-host"
}

func TestWorkerEgress(t *testing.T) {
	store, _ := rootfstest.BusyboxImage(t)
	m := rootfstest.Mounter(t)
	hostNS := egressTopology(t)
	pool, err := netpool.New(netpool.Config{WorkerID: "te", NetNS: hostNS, DNS: []netip.Addr{netip.MustParseAddr("192.0.2.53")}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := pool.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := pool.Stop(); err != nil {
			t.Errorf("egress pool stop: %v", err)
		}
	})
	url, _ := natstest.Server(t)
	nc, js := natstest.Connect(t, url)
	w, err := New(nc, Config{Slots: 2, Queues: []QueueConfig{{Name: "default", Image: "busybox"}}, Egress: pool, WarmEgress: 1,
		Pool: PoolConfig{Store: store, Mounter: m, CgroupParent: "corral-worker-test",
			EtcFiles: map[string][]byte{"resolv.conf": netpool.ResolvConf([]netip.Addr{netip.MustParseAddr("192.0.2.53")}), "hosts": netpool.Hosts()}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Stop)
	e := &e2e{t: t, nc: nc, js: js, w: w}
	all := e.results("corral.results.>")
	get := func(id, network, allow, url string) *jobs.Result {
		t.Helper()
		extra := ""
		if allow != "" {
			extra = `, "egress_allow": [` + allow + `]`
		}
		e.submit("default", "", `{"id": "`+id+`", "network": "`+network+`"`+extra+`, "cmd": ["sh", "-c", "cat /etc/resolv.conf; timeout 3 wget -q -O - `+url+`"], "limits": {"wall_time_ms": 10000}}`)
		r := wait(t, all)
		if r.ID != id {
			t.Fatalf("result of %s, want %s", r.ID, id)
		}
		return r
	}
	r := get("reach", "egress", "", "http://203.0.113.10:8080/")
	if r.Status != jobs.StatusOK || !strings.Contains(r.Steps[0].Stdout, "hello from the internet") || !strings.Contains(r.Steps[0].Stdout, "nameserver 192.0.2.53") {
		t.Fatalf("egress to the internet: %+v", r.Steps[0])
	}
	for _, c := range []struct{ id, network, allow, url string }{
		{"metadata", "egress", "", "http://169.254.169.254/"},
		{"host", "egress", "", "http://198.51.100.1:9000/"},
		{"none", "none", "", "http://203.0.113.10:8080/"},
		{"narrowed", "egress", `"203.0.113.10:9090"`, "http://203.0.113.10:8080/"},
	} {
		if r := get(c.id, c.network, c.allow, c.url); r.Status == jobs.StatusOK || strings.Contains(r.Steps[0].Stdout, "hello") {
			t.Errorf("%s: reached %s: %+v", c.id, c.url, r.Steps[0])
		}
	}
	if r := get("allowed", "egress", `"203.0.113.10:8080"`, "http://203.0.113.10:8080/"); r.Status != jobs.StatusOK {
		t.Errorf("egress_allow of the right port: %+v", r.Steps[0])
	}
	// Back to no list: the sandbox's lease is made again without it.
	if r := get("again", "egress", "", "http://203.0.113.10:8080/"); r.Status != jobs.StatusOK {
		t.Errorf("egress after a narrowed job: %+v", r.Steps[0])
	}
}
