package netpool

import (
	"fmt"
	"net"
	"testing"
	"time"
)

// TestFirstConnection connects from each of 20 freshly attached sandboxes
// the moment Attach returns. Before Attach waited for the bridge port to
// forward and the bridge to be up, the sandbox's first ARP request was
// dropped at the bridge in about a third of the attaches (perf:
// skb:kfree_skb, reason BRIDGE_INGRESS_STP_STATE), and on a pool's first
// lease the gateway's ARP reply sometimes was (QDISC_DROP: the bridge's
// queue not active yet); the connection waited for the kernel's 1 s
// retransmission. The bound below is that cliff, not a speed: a
// connection across a veth and a bridge takes about a millisecond.
func TestFirstConnection(t *testing.T) {
	needRoot(t)
	newTopo(t)
	p := startPool(t, Config{WorkerID: "t5"})
	for i := range 20 {
		name := fmt.Sprintf("corral-t-syn%d", i)
		sb := newNS(t, name)
		l := attach(t, p, name)
		start := time.Now()
		err := inNS(sb, func() error {
			c, err := (&net.Dialer{Timeout: 500 * time.Millisecond}).Dial("tcp4", "203.0.113.10:8080")
			if err == nil {
				c.Close()
			}
			return err
		})
		if err != nil {
			t.Errorf("attach %d: first connection: %v after %v (a frame lost at the bridge?)", i, err, time.Since(start))
		}
		if err := l.Release(); err != nil {
			t.Errorf("release %d: %v", i, err)
		}
	}
}
