package worker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/corralhq/corral/jobs"
	"github.com/corralhq/corral/natstest"
	"github.com/corralhq/corral/rootfs/rootfstest"
)

// e2e is a worker on a real NATS server and a real image.
type e2e struct {
	t  *testing.T
	nc *nats.Conn
	js jetstream.JetStream
	w  *Worker
}

func startE2E(t *testing.T, mod func(*Config)) *e2e {
	t.Helper()
	return startE2EAfter(t, mod, nil)
}

// startE2EAfter is startE2E with prepare run on the server before the
// worker starts.
func startE2EAfter(t *testing.T, mod func(*Config), prepare func(jetstream.JetStream)) *e2e {
	t.Helper()
	url, _ := natstest.Server(t)
	nc, js := natstest.Connect(t, url)
	return startE2EOn(t, nc, js, nc, mod, prepare)
}

// startE2EOn is startE2EAfter on connections already made: the test's
// (nc, js) and the worker's (wnc).
func startE2EOn(t *testing.T, nc *nats.Conn, js jetstream.JetStream, wnc *nats.Conn, mod func(*Config), prepare func(jetstream.JetStream)) *e2e {
	t.Helper()
	store, _ := rootfstest.BusyboxImage(t)
	m := rootfstest.Mounter(t)
	cfg := Config{
		Slots:  2,
		Queues: []QueueConfig{{Name: "default", Image: "busybox"}, {Name: "judge", Image: "busybox", Seccomp: jobs.SeccompStrict, ReplyPrefixes: []string{"corral.results", "judge.out"}}},
		Pool:   PoolConfig{Store: store, Mounter: m, CgroupParent: "corral-worker-test"},
		Grace:  5 * time.Second,
	}
	if mod != nil {
		mod(&cfg)
	}
	if prepare != nil {
		prepare(js)
	}
	w, err := New(wnc, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := w.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Stop)
	return &e2e{t: t, nc: nc, js: js, w: w}
}

// submit publishes a job body to queue with a Nats-Msg-Id.
func (e *e2e) submit(queue, msgID, body string) {
	e.t.Helper()
	m := nats.NewMsg(jobs.JobSubject(queue))
	if msgID != "" {
		m.Header.Set(jobs.HeaderMsgID, msgID)
	}
	m.Data = []byte(body)
	if _, err := e.js.PublishMsg(context.Background(), m); err != nil {
		e.t.Fatal(err)
	}
}

// results subscribes to a subject pattern (before submitting).
func (e *e2e) results(subject string) <-chan *jobs.Result {
	e.t.Helper()
	ch := make(chan *jobs.Result, 2000)
	sub, err := e.nc.Subscribe(subject, func(m *nats.Msg) {
		var r jobs.Result
		if err := json.Unmarshal(m.Data, &r); err != nil {
			e.t.Errorf("bad result %q: %v", m.Data, err)
			return
		}
		if m.Header.Get(jobs.HeaderMsgID) != jobs.ResultMsgID(r.ID) {
			e.t.Errorf("result %s without Nats-Msg-Id result-ID: %v", r.ID, m.Header)
		}
		ch <- &r
	})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { sub.Unsubscribe() })
	e.nc.Flush()
	return ch
}

func wait(t *testing.T, ch <-chan *jobs.Result) *jobs.Result {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(30 * time.Second):
		t.Fatal("no result within 30 s")
		return nil
	}
}

func TestWorkerRunsJob(t *testing.T) {
	e := startE2E(t, nil)
	ch := e.results("corral.results.j-ok")
	e.submit("default", "j-ok", `{"id": "j-ok", "files": [{"path": "a.txt", "content": "hi"}],
	  "cmd": ["sh", "-c", "cat a.txt; echo; cat a.txt > out.txt"], "collect": ["out.txt"], "labels": {"tenant": "t1"}}`)
	r := wait(t, ch)
	if r.Status != jobs.StatusOK || r.ID != "j-ok" || r.Queue != "default" || r.Attempt != 1 {
		t.Fatalf("%+v", r)
	}
	if r.Steps[0].Stdout != "hi\n" || r.Steps[0].Name != "step-1" || len(r.Files) != 1 || r.Files[0].Content != "hi" {
		t.Fatalf("%+v", r)
	}
	if r.Labels["tenant"] != "t1" || r.Worker.Host == "" || r.Timing.StartedAt.IsZero() || r.Timing.EnqueuedAt.IsZero() {
		t.Fatalf("%+v", r)
	}
	// The stored copy in CORRAL_RESULTS. A subscriber can get the result
	// before the stream has stored it (the worker's PubAck comes after
	// the store, the core delivery need not): wait for it a little.
	stream, err := e.js.Stream(context.Background(), jobs.StreamResults)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := stream.GetLastMsgForSubject(context.Background(), "corral.results.j-ok")
		if err == nil {
			break
		}
		if !errors.Is(err, jetstream.ErrMsgNotFound) || time.Now().After(deadline) {
			t.Fatalf("result not stored: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestWorkerRejects(t *testing.T) {
	e := startE2E(t, nil)
	all := e.results("corral.results.>")
	custom := e.results("judge.out.>")
	for _, tc := range []struct {
		name, queue, body, field string
		sub                      <-chan *jobs.Result
	}{
		{"malformed", "default", `{"id": "bad-json", "cmd": [`, "", all},
		{"unknown field", "default", `{"id": "unknown", "cmd": ["true"], "colour": "red"}`, "colour", all},
		{"no steps", "default", `{"id": "nosteps"}`, "steps", all},
		{"limit above max", "default", `{"id": "big", "cmd": ["true"], "limits": {"memory_bytes": 99999999999}}`, "memory_bytes", all},
		{"dotdot", "default", `{"id": "dots", "files": [{"path": "../x", "content": "x"}], "cmd": ["true"]}`, "files[0].path", all},
		{"abs collect", "default", `{"id": "abscol", "cmd": ["true"], "collect": ["/etc/passwd"]}`, "collect", all},
		{"egress", "default", `{"id": "egress", "cmd": ["true"], "network": "egress"}`, "network", all},
		{"unknown image", "default", `{"id": "noimg", "image": "nope", "cmd": ["true"]}`, "image", all},
		{"bad image name", "default", `{"id": "badimg", "image": "../etc", "cmd": ["true"]}`, "image", all},
		{"reply_to forbidden", "default", `{"id": "rj", "cmd": ["true"], "reply_to": "corral.jobs.default"}`, "reply_to", all},
		{"reply_to not allowed by queue", "judge", `{"id": "rq", "cmd": ["true"], "reply_to": "elsewhere.x"}`, "reply_to", all},
		{"seccomp off", "default", `{"id": "secoff", "cmd": ["true"], "seccomp": "off"}`, "seccomp", all},
		{"custom reply", "judge", `{"id": "rc", "cmd": ["true"], "reply_to": "judge.out.rc", "limits": {"pids": 5000}}`, "pids", custom},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.submit(tc.queue, "", tc.body)
			r := wait(t, tc.sub)
			if r.Status != jobs.StatusRejected || !strings.Contains(r.Error, tc.field) || len(r.Steps) != 0 {
				t.Fatalf("want rejected naming %q: %+v", tc.field, r)
			}
		})
	}
	// An invalid id: the result goes to a generated id, quoting the bad one.
	e.submit("default", "", `{"id": "bad id!", "cmd": ["true"]}`)
	r := wait(t, all)
	if r.Status != jobs.StatusRejected || !strings.Contains(r.Error, "bad id!") || !strings.HasPrefix(r.ID, "gen-") {
		t.Fatalf("%+v", r)
	}
	// An invalid id with a valid reply_to: the result goes there, with the
	// job's labels.
	custom2 := e.results("elsewhere.>")
	e.submit("default", "", `{"id": "bad id!", "cmd": ["true"], "reply_to": "elsewhere.r", "labels": {"k": "v"}}`)
	r = wait(t, custom2)
	if r.Status != jobs.StatusRejected || !strings.Contains(r.Error, "bad id!") || r.Labels["k"] != "v" {
		t.Fatalf("%+v", r)
	}
	// A reply_to too long for NATS's control line (it would have closed
	// the worker's connection for good): rejected on the default subject.
	e.submit("default", "", `{"id": "longreply", "cmd": ["true"], "reply_to": "corral.results.`+strings.Repeat("t.", 2500)+`t"}`)
	if r := wait(t, all); r.ID != "longreply" || r.Status != jobs.StatusRejected || !strings.Contains(r.Error, "reply_to") {
		t.Fatalf("%+v", r)
	}
	// The queue kept moving: a good job still runs.
	e.submit("default", "", `{"id": "after", "cmd": ["true"]}`)
	if r := wait(t, all); r.ID != "after" || r.Status != jobs.StatusOK {
		t.Fatalf("%+v", r)
	}
}

func TestWorkerExpiredCancelledAndDedupe(t *testing.T) {
	e := startE2E(t, nil)
	all := e.results("corral.results.>")
	e.submit("default", "", `{"id": "old", "cmd": ["true"], "expires_at": "2001-01-01T00:00:00Z"}`)
	if r := wait(t, all); r.ID != "old" || r.Status != jobs.StatusExpired {
		t.Fatalf("%+v", r)
	}
	// Cancel before start.
	e.nc.Publish(jobs.CancelSubject("early"), nil)
	e.nc.Flush()
	e.submit("default", "", `{"id": "early", "cmd": ["true"]}`)
	if r := wait(t, all); r.ID != "early" || r.Status != jobs.StatusCancelled {
		t.Fatalf("%+v", r)
	}
	// Cancel while running: the step ends cancelled, later ones skipped.
	out := make(chan *nats.Msg, 16)
	sub, _ := e.nc.ChanSubscribe(jobs.OutputSubject("running"), out)
	defer sub.Unsubscribe()
	e.submit("default", "", `{"id": "running", "stream_output": true, "steps": [{"cmd": ["sh", "-c", "echo started; sleep 30"]}, {"cmd": ["true"]}]}`)
	select {
	case m := <-out:
		if string(m.Data) != "started\n" || m.Header.Get(jobs.HeaderStream) != "stdout" || m.Header.Get(jobs.HeaderStep) != "step-1" || m.Header.Get(jobs.HeaderSeq) != "1" {
			t.Fatalf("live output %q %v", m.Data, m.Header)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no live output")
	}
	e.nc.Publish(jobs.CancelSubject("running"), nil)
	r := wait(t, all)
	if r.ID != "running" || r.Status != jobs.StatusCancelled || r.Steps[0].Status != jobs.StatusCancelled || r.Steps[1].Status != jobs.StatusSkipped {
		t.Fatalf("%+v", r)
	}
	// Dedupe: the same Nats-Msg-Id twice runs once.
	e.submit("default", "dup-1", `{"cmd": ["true"]}`)
	e.submit("default", "dup-1", `{"cmd": ["true"]}`)
	if r := wait(t, all); r.ID != "dup-1" || r.Status != jobs.StatusOK {
		t.Fatalf("%+v", r)
	}
	select {
	case r := <-all:
		t.Fatalf("a second result: %+v", r)
	case <-time.After(1500 * time.Millisecond):
	}
}

func TestWorkerQueueDefaultsAndBigOutput(t *testing.T) {
	e := startE2E(t, func(c *Config) {
		c.Queues[1].Defaults = jobs.Limits{WallTimeMs: 300}
		// Its reply prefixes leave out corral.results: the default
		// subject stays allowed.
		c.Queues = append(c.Queues, QueueConfig{Name: "small", Image: "busybox", Defaults: jobs.Limits{DiskBytes: 16 << 20}, ReplyPrefixes: []string{"small.out"}})
	})
	all := e.results("corral.results.>")
	// The judge queue's default wall limit and strict profile apply.
	e.submit("judge", "", `{"id": "slow", "cmd": ["sleep", "5"]}`)
	if r := wait(t, all); r.Status != jobs.StatusWallTimeLimit {
		t.Fatalf("%+v", r)
	}
	// A queue's default disk: the writable layer's size, which df reports,
	// back and forth with the default queue's 256 MiB on the same pool.
	for i, tc := range []struct{ queue, kib string }{{"small", "16384"}, {"default", "262144"}, {"small", "16384"}, {"default", "262144"}} {
		e.submit(tc.queue, "", fmt.Sprintf(`{"id": "df%d", "cmd": ["df", "-k", "/work"]}`, i))
		r := wait(t, all)
		if r.Status != jobs.StatusOK {
			t.Fatalf("%s: %s %s", tc.queue, r.Status, r.Error)
		}
		lines := strings.Split(strings.TrimSpace(r.Steps[0].Stdout), "\n")
		if f := strings.Fields(lines[len(lines)-1]); r.Status != jobs.StatusOK || len(f) < 2 || f[1] != tc.kib {
			t.Fatalf("%s: want %s KiB: %s %q %s", tc.queue, tc.kib, r.Status, r.Steps[0].Stdout, r.Steps[0].Stderr)
		}
	}
	// A result never exceeds the max payload: 3 MiB of output on each
	// stream, a 1 MiB server limit.
	e.submit("default", "", `{"id": "huge", "cmd": ["sh", "-c", "head -c 3000000 /dev/zero | tr '\\0' a; head -c 3000000 /dev/zero | tr '\\0' b >&2"], "limits": {"output_bytes": 4000000}}`)
	r := wait(t, all)
	if r.ID != "huge" || r.Status != jobs.StatusOK || !r.Steps[0].StdoutTruncated || !r.Steps[0].StderrTruncated {
		t.Fatalf("status %s truncated %v/%v", r.Status, r.Steps[0].StdoutTruncated, r.Steps[0].StderrTruncated)
	}
	if !bytes.HasPrefix([]byte(r.Steps[0].Stdout), []byte("aaaa")) {
		t.Fatalf("stdout lost its head")
	}
}

func TestWorkerBurst(t *testing.T) {
	if testing.Short() {
		t.Skip("burst skipped in -short")
	}
	e := startE2E(t, nil)
	all := e.results("corral.results.>")
	const n = 200
	for i := 0; i < n; i++ {
		e.submit("default", "", fmt.Sprintf(`{"id": "b-%d", "cmd": ["true"]}`, i))
	}
	seen := map[string]int{}
	var mu sync.Mutex
	for i := 0; i < n; i++ {
		r := wait(t, all)
		mu.Lock()
		seen[r.ID]++
		mu.Unlock()
		if r.Status != jobs.StatusOK {
			t.Fatalf("%+v", r)
		}
	}
	if len(seen) != n {
		t.Fatalf("%d distinct results for %d jobs", len(seen), n)
	}
}

// ghostQueue is queue "ghost" on a fresh server: ack wait 1 s, one delivery.
type ghostQueue struct {
	t    *testing.T
	nc   *nats.Conn
	js   jetstream.JetStream
	cons jetstream.Consumer
	cfg  Config
}

func newGhostQueue(t *testing.T) *ghostQueue {
	store, _ := rootfstest.BusyboxImage(t)
	m := rootfstest.Mounter(t)
	url, _ := natstest.Server(t)
	nc, js := natstest.Connect(t, url)
	cc := ConsumerConfig{AckWait: time.Second, MaxDeliver: 1}
	if _, err := EnsureStreams(context.Background(), js, StreamConfig{}); err != nil {
		t.Fatal(err)
	}
	cons, _, err := EnsureConsumer(context.Background(), js, "ghost", cc)
	if err != nil {
		t.Fatal(err)
	}
	return &ghostQueue{t: t, nc: nc, js: js, cons: cons, cfg: Config{Slots: 1, Queues: []QueueConfig{{Name: "ghost", Image: "busybox"}},
		Consumer: cc, Pool: PoolConfig{Store: store, Mounter: m, CgroupParent: "corral-worker-test"}}}
}

// abandon publishes a job whose only delivery a "worker" takes and never
// acks: it died. It returns the job's sequence in CORRAL_JOBS.
func (g *ghostQueue) abandon(body string) uint64 {
	g.t.Helper()
	msg := nats.NewMsg(jobs.JobSubject("ghost"))
	msg.Data = []byte(body)
	ack, err := g.js.PublishMsg(context.Background(), msg)
	if err != nil {
		g.t.Fatal(err)
	}
	batch, err := g.cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		g.t.Fatal(err)
	}
	for range batch.Messages() {
	}
	return ack.Sequence
}

// expectDead waits for the internal_error result of job id, delivered once,
// and checks that the job left CORRAL_JOBS for CORRAL_DEAD.
func (g *ghostQueue) expectDead(results <-chan *nats.Msg, id string, seq uint64) {
	g.t.Helper()
	ctx := context.Background()
	select {
	case msg := <-results:
		var r jobs.Result
		json.Unmarshal(msg.Data, &r)
		if r.ID != id || r.Status != jobs.StatusInternalError || r.Attempt != 1 || !strings.Contains(r.Error, "delivered 1 times") {
			g.t.Fatalf("%+v", r)
		}
	case <-time.After(15 * time.Second):
		g.t.Fatal("no result for a job whose deliveries were all lost")
	}
	stream, err := g.js.Stream(ctx, jobs.StreamJobs)
	if err != nil {
		g.t.Fatal(err)
	}
	// The job is removed after its result is out.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		_, err := stream.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break
		}
		if time.Now().After(deadline) {
			g.t.Fatalf("the dead job is still queued: %v", err)
		}
	}
	dead, err := g.js.Stream(ctx, jobs.StreamDead)
	if err != nil {
		g.t.Fatal(err)
	}
	dm, err := dead.GetLastMsgForSubject(ctx, jobs.DeadSubject("ghost"))
	if err != nil {
		g.t.Fatal(err)
	}
	if dm.Header.Get(jobs.HeaderAttempts) != "1" || dm.Header.Get(jobs.HeaderJobID) != id || dm.Header.Get(jobs.HeaderError) == "" || !bytes.Contains(dm.Data, []byte(`"`+id+`"`)) {
		g.t.Fatalf("dead copy: %v %s", dm.Header, dm.Data)
	}
}

// advisoriesKept waits until CORRAL_ADVISORIES holds n messages.
func (g *ghostQueue) advisoriesKept(n uint64) {
	g.t.Helper()
	advisories, err := g.js.Stream(context.Background(), jobs.StreamAdvisories)
	if err != nil {
		g.t.Fatal(err)
	}
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		info, err := advisories.Info(context.Background())
		if err != nil {
			g.t.Fatal(err)
		}
		if info.State.Msgs == n {
			return
		}
		if time.Now().After(deadline) {
			g.t.Fatalf("CORRAL_ADVISORIES holds %d, want %d", info.State.Msgs, n)
		}
	}
}

// resultsOf subscribes to job id's default result subject.
func (g *ghostQueue) resultsOf(id string) <-chan *nats.Msg {
	results := make(chan *nats.Msg, 4)
	sub, err := g.nc.ChanSubscribe(jobs.ResultSubject(id), results)
	if err != nil {
		g.t.Fatal(err)
	}
	g.t.Cleanup(func() { sub.Unsubscribe() })
	return results
}

// start starts a worker on the queue; with idle set, its only slot stays
// taken, so it fetches nothing.
func (g *ghostQueue) start(idle bool) {
	w, err := New(g.nc, g.cfg)
	if err != nil {
		g.t.Fatal(err)
	}
	if idle {
		<-w.slots
		g.t.Cleanup(func() { w.slots <- struct{}{} })
	}
	if err := w.Start(context.Background()); err != nil {
		g.t.Fatal(err)
	}
	g.t.Cleanup(w.Stop)
}

// A job every delivery of which was lost (workers died with it) still gets
// its result: internal_error, and a copy in CORRAL_DEAD.
func TestWorkerDeadAfterLastDelivery(t *testing.T) {
	g := newGhostQueue(t)
	results := g.resultsOf("lost")
	// The worker runs, but the "dead worker" takes the only delivery.
	g.start(true)
	seq := g.abandon(`{"id": "lost", "cmd": ["true"]}`)
	g.expectDead(results, "lost", seq)
	g.advisoriesKept(0)
}

// A job whose last delivery was lost while no worker was connected gets its
// result from the next worker that starts: CORRAL_ADVISORIES kept the
// server's advisory for it.
func TestWorkerDeadWhileNoWorker(t *testing.T) {
	g := newGhostQueue(t)
	seq := g.abandon(`{"id": "unheard", "cmd": ["true"]}`)
	g.advisoriesKept(1)
	results := g.resultsOf("unheard")
	g.start(false)
	g.expectDead(results, "unheard", seq)
	g.advisoriesKept(0)
}

// Stop hands back a job still running when the grace period ends, unless
// that is the job's last delivery: the server would not deliver it again and
// it would end as internal_error, so it runs to its end.
func TestWorkerStopLastDelivery(t *testing.T) {
	for _, tc := range []struct {
		name       string
		maxDeliver int // of the config
		existing   int // of a consumer that exists before the worker starts; 0: none
		handBack   bool
	}{
		{"last", 1, 0, false},
		{"not-last", 2, 0, true},
		// The consumer's setting is in force: without a limit, no
		// delivery is the last.
		{"existing-unlimited", 1, -1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := startE2EAfter(t, func(c *Config) {
				c.Slots = 1
				c.Grace = 100 * time.Millisecond
				c.Consumer.MaxDeliver = tc.maxDeliver
			}, func(js jetstream.JetStream) {
				if tc.existing == 0 {
					return
				}
				if _, err := EnsureStreams(context.Background(), js, StreamConfig{}); err != nil {
					t.Fatal(err)
				}
				cc := QueueConsumerConfig("default", ConsumerConfig{}.WithDefaults())
				cc.MaxDeliver = tc.existing
				if _, err := js.CreateConsumer(context.Background(), jobs.StreamJobs, cc); err != nil {
					t.Fatal(err)
				}
			})
			ch := e.results("corral.results.slow")
			e.submit("default", "slow", `{"id": "slow", "cmd": ["sh", "-c", "sleep 1.5; echo finished"]}`)
			cons, err := e.js.Consumer(context.Background(), jobs.StreamJobs, jobs.ConsumerName("default"))
			if err != nil {
				t.Fatal(err)
			}
			for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
				info, err := cons.Info(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				if info.NumAckPending == 1 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("the job was not fetched")
				}
			}
			time.Sleep(300 * time.Millisecond) // running, past the grace period's start
			start := time.Now()
			e.w.Stop()
			took := time.Since(start)
			if !tc.handBack {
				r := wait(t, ch)
				if r.Status != jobs.StatusOK || r.Attempt != 1 || r.Steps[0].Stdout != "finished\n" {
					t.Fatalf("%+v", r)
				}
				return
			}
			if took > time.Second {
				t.Fatalf("Stop waited %v for a job it could hand back", took)
			}
			select {
			case r := <-ch:
				t.Fatalf("a result for a job handed back: %+v", r)
			case <-time.After(2 * time.Second):
			}
			// Handed back: the next worker gets it now, not after the
			// ack wait (30 s).
			batch, err := cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
			if err != nil {
				t.Fatal(err)
			}
			got := 0
			for msg := range batch.Messages() {
				meta, err := msg.Metadata()
				if err != nil || meta.NumDelivered != 2 {
					t.Fatalf("redelivery %+v: %v", meta, err)
				}
				got++
			}
			if got != 1 {
				t.Fatalf("the job was not handed back: %d redelivered, %v", got, batch.Error())
			}
		})
	}
}

// Job files from the object store, and a large collected file into it.
func TestWorkerObjects(t *testing.T) {
	e := startE2E(t, nil)
	ctx := context.Background()
	bucket, err := e.js.CreateObjectStore(ctx, jetstream.ObjectStoreConfig{Bucket: "inputs"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bucket.PutBytes(ctx, "data.txt", []byte("from the bucket\n")); err != nil {
		t.Fatal(err)
	}
	all := e.results("corral.results.>")
	e.submit("default", "", `{"id": "objs", "files": [{"path": "in/data.txt", "object": "inputs/data.txt"}],
	  "cmd": ["sh", "-c", "cat in/data.txt; head -c 300000 /dev/zero > big.bin"], "collect": ["big.bin"]}`)
	r := wait(t, all)
	if r.Status != jobs.StatusOK || r.Steps[0].Stdout != "from the bucket\n" || len(r.Files) != 1 {
		t.Fatalf("%+v", r)
	}
	f := r.Files[0]
	if f.Object != "corral-files/objs/big.bin" || f.Size != 300000 {
		t.Fatalf("%+v", f)
	}
	store, err := e.js.ObjectStore(ctx, jobs.ObjectBucket)
	if err != nil {
		t.Fatal(err)
	}
	b, err := store.GetBytes(ctx, "objs/big.bin")
	if err != nil || len(b) != 300000 {
		t.Fatalf("%v %d", err, len(b))
	}
	// A missing object: rejected, naming the field.
	e.submit("default", "", `{"id": "noobj", "files": [{"path": "x", "object": "inputs/nope"}], "cmd": ["true"]}`)
	if r := wait(t, all); r.Status != jobs.StatusRejected || !strings.Contains(r.Error, "files[0].object") {
		t.Fatalf("%+v", r)
	}
	// A missing bucket too.
	e.submit("default", "", `{"id": "nobucket", "files": [{"path": "x", "object": "nobucket/x"}], "cmd": ["true"]}`)
	if r := wait(t, all); r.Status != jobs.StatusRejected || !strings.Contains(r.Error, "no such object") || r.Attempt != 1 {
		t.Fatalf("%+v", r)
	}
	// An object larger than the job's disk_bytes: rejected unread.
	if _, err := bucket.PutBytes(ctx, "big.bin", make([]byte, 300_000)); err != nil {
		t.Fatal(err)
	}
	e.submit("default", "", `{"id": "bigobj", "files": [{"path": "x", "object": "inputs/big.bin"}], "cmd": ["true"], "limits": {"disk_bytes": 65536}}`)
	if r := wait(t, all); r.Status != jobs.StatusRejected || !strings.Contains(r.Error, "larger than the job's disk_bytes") || r.Attempt != 1 {
		t.Fatalf("%+v", r)
	}
}

// A panic while running a job becomes an internal_error result; the
// sandbox is replaced and the worker goes on.
func TestWorkerSurvivesPanic(t *testing.T) {
	beforeRun = func(j *jobs.Job) {
		if j.Labels["panic"] == "yes" {
			panic("boom")
		}
	}
	defer func() { beforeRun = nil }()
	e := startE2E(t, nil)
	all := e.results("corral.results.>")
	e.submit("default", "", `{"id": "p1", "cmd": ["true"], "labels": {"panic": "yes"}}`)
	if r := wait(t, all); r.ID != "p1" || r.Status != jobs.StatusInternalError || !strings.Contains(r.Error, "boom") || r.Attempt != 1 {
		t.Fatalf("%+v", r)
	}
	for i := 0; i < 4; i++ {
		e.submit("default", "", fmt.Sprintf(`{"id": "after-%d", "cmd": ["true"]}`, i))
		if r := wait(t, all); r.Status != jobs.StatusOK {
			t.Fatalf("%+v", r)
		}
	}
}

// A job longer than the ack wait is kept alive by InProgress: one result,
// attempt 1.
func TestWorkerHeartbeat(t *testing.T) {
	e := startE2E(t, func(c *Config) { c.Consumer = ConsumerConfig{AckWait: 900 * time.Millisecond} })
	all := e.results("corral.results.>")
	e.submit("default", "", `{"id": "long", "cmd": ["sleep", "3"]}`)
	r := wait(t, all)
	if r.ID != "long" || r.Status != jobs.StatusOK || r.Attempt != 1 {
		t.Fatalf("%+v", r)
	}
	select {
	case r := <-all:
		t.Fatalf("redelivered despite heartbeats: %+v", r)
	case <-time.After(2 * time.Second):
	}
}

// Every job field of the protocol, through the worker, and the statuses the
// sandbox reports.
func TestWorkerEveryField(t *testing.T) {
	e := startE2E(t, nil)
	all := e.results("corral.results.>")
	e.submit("default", "hdr-id", `{
	  "image": "busybox",
	  "files": [{"path": "bin/run.sh", "content": "#!/bin/sh\necho \"$GREETING from $(pwd)\"\ncat\n", "mode": 493},
	            {"path": "b64.txt", "content_b64": "AAEC", "mode": "0600"}],
	  "steps": [
	    {"name": "first", "cmd": ["/work/bin/run.sh"], "env": {"GREETING": "hello"}, "cwd": "/tmp", "stdin": "in\n",
	     "expect_stdout": "hello from /tmp   \nin\n\n", "compare": "lines"},
	    {"cmd": ["sh", "-c", "stat -c %a /work/b64.txt; cat"], "stdin_b64": "aGk=", "expect_stdout": "600 hi", "compare": "tokens"},
	    {"cmd": ["sh", "-c", "exit 1"], "continue_on_failure": true},
	    {"cmd": ["sh", "-c", "kill -TERM $$"], "continue_on_failure": true},
	    {"cmd": ["sh", "-c", "while :; do :; done"], "limits": {"cpu_time_ms": 200}, "continue_on_failure": true},
	    {"cmd": ["dd", "if=/dev/zero", "of=/dev/shm/x", "bs=1M", "count=64"], "limits": {"memory_bytes": 33554432}, "continue_on_failure": true},
	    {"cmd": ["yes"], "limits": {"output_bytes": 100}, "continue_on_failure": true},
	    {"cmd": ["dd", "if=/dev/zero", "of=big", "bs=64k", "count=64"], "limits": {"file_size_bytes": 65536}, "continue_on_failure": true},
	    {"cmd": ["printf", "\\377"], "expect_stdout": "x", "compare": "exact"},
	    {"cmd": ["true"]}
	  ],
	  "network": "none", "seccomp": "default", "stream_output": false,
	  "collect": ["b64.txt"], "labels": {"a": "b"}, "expires_at": "2999-01-01T00:00:00Z"
	}`)
	r := wait(t, all)
	if r.ID != "hdr-id" {
		t.Fatalf("id from Nats-Msg-Id: %q", r.ID)
	}
	want := []jobs.Status{jobs.StatusOK, jobs.StatusOK, jobs.StatusNonzeroExit, jobs.StatusSignaled, jobs.StatusCPUTimeLimit,
		jobs.StatusMemoryLimit, jobs.StatusOutputLimit, jobs.StatusFileSizeLimit, jobs.StatusOK, jobs.StatusSkipped}
	for i, w := range want {
		if r.Steps[i].Status != w {
			t.Errorf("step %d (%s): %s, want %s: %q", i, r.Steps[i].Name, r.Steps[i].Status, w, r.Steps[i].Stderr)
		}
	}
	if r.Steps[0].Name != "first" || r.Steps[1].Name != "step-2" || !*r.Steps[0].Matched || !*r.Steps[1].Matched {
		t.Errorf("names/matched: %+v %+v", r.Steps[0], r.Steps[1])
	}
	if r.Steps[3].Signal != "SIGTERM" || r.Steps[3].ExitCode != -1 {
		t.Errorf("signaled: %+v", r.Steps[3])
	}
	if r.Steps[8].StdoutB64 != "/w==" || *r.Steps[8].Matched {
		t.Errorf("binary output: %+v", r.Steps[8])
	}
	// A failed match ends the job there: its status is the step's.
	if r.Status != jobs.StatusOK || len(r.Files) != 1 || r.Files[0].Content != "\x00\x01\x02" || r.Labels["a"] != "b" {
		t.Errorf("job: %s %+v %v", r.Status, r.Files, r.Labels)
	}
}

// A reply_to no stream captures, with a core subscriber, gets one result
// and the job is acked at once; one that another stream captures is stored
// there. Before, the first was published as a JetStream request the
// subscriber never answered: no PubAck, a Nak after 10 s, the job run
// again, three times, then buried.
func TestWorkerCustomReplySubjects(t *testing.T) {
	e := startE2E(t, nil)
	ctx := context.Background()
	if _, err := e.js.CreateStream(ctx, jetstream.StreamConfig{Name: "APP", Subjects: []string{"app.stored.>"}}); err != nil {
		t.Fatal(err)
	}
	core := e.results("app.core.>")
	e.submit("default", "", `{"id": "core1", "cmd": ["true"], "reply_to": "app.core.core1"}`)
	if r := wait(t, core); r.ID != "core1" || r.Status != jobs.StatusOK || r.Attempt != 1 {
		t.Fatalf("%+v", r)
	}
	cons, err := e.js.Consumer(ctx, jobs.StreamJobs, jobs.ConsumerName("default"))
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		info, err := cons.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.NumAckPending == 0 && info.NumPending == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("job not acked 5 s after its result: %d ack pending", info.NumAckPending)
		}
	}
	select {
	case r := <-core:
		t.Fatalf("a second result: %+v", r)
	case <-time.After(500 * time.Millisecond):
	}

	stored := e.results("app.stored.>")
	e.submit("default", "", `{"id": "st1", "cmd": ["true"], "reply_to": "app.stored.st1"}`)
	if r := wait(t, stored); r.ID != "st1" || r.Status != jobs.StatusOK {
		t.Fatalf("%+v", r)
	}
	app, err := e.js.Stream(ctx, "APP")
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		m, err := app.GetLastMsgForSubject(ctx, "app.stored.st1")
		if err == nil {
			if m.Header.Get(jobs.HeaderMsgID) != jobs.ResultMsgID("st1") {
				t.Fatalf("stored without its Nats-Msg-Id: %v", m.Header)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("result not stored in APP: %v", err)
		}
	}
}

// A reply_to the worker's NATS user may not publish to: the server's
// refusal is an asynchronous -ERR, and the result was lost (the job acked).
// The result now goes to the job's default subject, with a note, whether
// the forbidden subject is stored by a stream or not.
func TestWorkerReplyForbidden(t *testing.T) {
	url, _ := natstest.Server(t, func(o *server.Options) {
		o.Users = []*server.User{
			{Username: "worker", Password: "w", Permissions: &server.Permissions{
				Publish: &server.SubjectPermission{Allow: []string{">"}, Deny: []string{"judge.out.no.>"}}}},
			{Username: "test", Password: "t"},
		}
	})
	nc, js := natstest.Connect(t, url, nats.UserInfo("test", "t"))
	wnc, _ := natstest.Connect(t, url, nats.UserInfo("worker", "w"))
	e := startE2EOn(t, nc, js, wnc, nil, nil)
	ctx := context.Background()
	if _, err := e.js.CreateStream(ctx, jetstream.StreamConfig{Name: "JUDGE", Subjects: []string{"judge.out.no.stored.>"}}); err != nil {
		t.Fatal(err)
	}
	all := e.results("corral.results.>")
	allowed := e.results("judge.out.yes.>")
	// Several at once: refusals that overlap must not hide each other.
	reply := map[string]string{}
	for i := range 4 {
		for _, kind := range []string{"core", "stored"} {
			id := fmt.Sprintf("%s%d", kind, i)
			reply[id] = "judge.out.no." + kind + "." + id
			e.submit("judge", "", `{"id": "`+id+`", "cmd": ["true"], "reply_to": "`+reply[id]+`"}`)
		}
	}
	for range reply {
		r := wait(t, all)
		if r.Status != jobs.StatusOK || r.Attempt != 1 || reply[r.ID] == "" ||
			!strings.Contains(r.Error, "reply_to "+reply[r.ID]+": this worker's NATS user may not publish there") {
			t.Errorf("%+v", r)
		}
		delete(reply, r.ID)
	}
	// An allowed reply_to still gets its result there, after the
	// forbidden ones.
	e.submit("judge", "", `{"id": "yes", "cmd": ["true"], "reply_to": "judge.out.yes.r"}`)
	if r := wait(t, allowed); r.ID != "yes" || r.Error != "" {
		t.Errorf("%+v", r)
	}
}

// A cancel that lands outside a running step (here between taking the
// sandbox and fetching the job's object file) still ends the job cancelled, at once and
// for good: not internal_error, not run again.
func TestWorkerCancelOutsideStep(t *testing.T) {
	var e *e2e
	beforeRun = func(j *jobs.Job) {
		if j.Labels["cancel"] == "self" {
			e.nc.Publish(jobs.CancelSubject(j.ID), nil)
			e.nc.Flush()
			time.Sleep(300 * time.Millisecond) // the worker's subscription takes it
		}
	}
	defer func() { beforeRun = nil }()
	e = startE2E(t, nil)
	ctx := context.Background()
	bucket, err := e.js.CreateObjectStore(ctx, jetstream.ObjectStoreConfig{Bucket: "inputs"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bucket.PutBytes(ctx, "data.txt", []byte("x")); err != nil {
		t.Fatal(err)
	}
	all := e.results("corral.results.>")
	// Fetching the object fails on the cancelled context: before, that
	// error ended the job rejected.
	e.submit("default", "", `{"id": "selfcancel", "files": [{"path": "a", "object": "inputs/data.txt"}], "cmd": ["true"], "labels": {"cancel": "self"}}`)
	r := wait(t, all)
	if r.ID != "selfcancel" || r.Status != jobs.StatusCancelled || r.Attempt != 1 {
		t.Fatalf("%+v", r)
	}
	select {
	case r := <-all:
		t.Fatalf("a second result: %+v", r)
	case <-time.After(2 * time.Second):
	}
}

// A job published under corral.jobs. with more than one token, or with
// one that is not a queue name, names no queue: it gets a rejected result
// saying so, and leaves the stream.
func TestWorkerStrayJob(t *testing.T) {
	every := strayScanEvery
	strayScanEvery = 200 * time.Millisecond
	t.Cleanup(func() { strayScanEvery = every })
	e := startE2E(t, nil)
	all := e.results("corral.results.>")
	custom := e.results("judge.out.>")
	ctx := context.Background()
	for _, tc := range []struct{ subject, msgID, body string }{
		{"corral.jobs.judge.cpp", "", `{"id": "stray1", "cmd": ["true"], "labels": {"k": "v"}}`},
		{"corral.jobs.a.b.c", "stray2", `not even JSON`},
		{"corral.jobs.x.y", "", `{"id": "stray3", "cmd": ["true"], "reply_to": "judge.out.stray3"}`},
		{"corral.jobs.bad+q", "", `{"id": "stray4", "cmd": ["true"]}`},
		{"corral.jobs.bad+q", "", `{"id": "stray5", "cmd": ["true"]}`},
		{"corral.jobs." + strings.Repeat("q", 65), "", `{"id": "stray6", "cmd": ["true"]}`},
	} {
		m := nats.NewMsg(tc.subject)
		if tc.msgID != "" {
			m.Header.Set(jobs.HeaderMsgID, tc.msgID)
		}
		m.Data = []byte(tc.body)
		if _, err := e.js.PublishMsg(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	got := map[string]*jobs.Result{}
	for range 5 {
		r := wait(t, all)
		got[r.ID] = r
	}
	got["stray3"] = wait(t, custom) // judge's reply prefixes allow it
	for id, queue := range map[string]string{"stray1": "judge.cpp", "stray2": "a.b.c", "stray3": "x.y",
		"stray4": "bad+q", "stray5": "bad+q", "stray6": strings.Repeat("q", 65)} {
		r := got[id]
		if r == nil || r.Status != jobs.StatusRejected || r.Queue != queue || !strings.Contains(r.Error, "names no queue") || r.Attempt != 1 {
			t.Errorf("%s: %+v", id, r)
		}
	}
	if got["stray1"].Labels["k"] != "v" {
		t.Errorf("labels lost: %+v", got["stray1"])
	}
	stream, err := e.js.Stream(ctx, jobs.StreamJobs)
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		info, err := stream.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.State.Msgs == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d stray jobs left in %s", info.State.Msgs, jobs.StreamJobs)
		}
	}
}

// A queue's consumer deleted while the worker runs is made again: the
// next jobs run. Before, the worker fetched from nothing, silently.
func TestWorkerConsumerDeleted(t *testing.T) {
	e := startE2E(t, nil)
	all := e.results("corral.results.>")
	ctx := context.Background()
	if err := e.js.DeleteConsumer(ctx, jobs.StreamJobs, jobs.ConsumerName("default")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond) // a fetch or two notice it
	e.submit("default", "", `{"id": "afterdel", "cmd": ["true"]}`)
	select {
	case r := <-all:
		if r.ID != "afterdel" || r.Status != jobs.StatusOK {
			t.Fatalf("%+v", r)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no result after the consumer was deleted")
	}
}

// CORRAL_RESULTS deleted while the worker runs is made again, and the
// result stored, without running the job again.
func TestWorkerResultsStreamDeleted(t *testing.T) {
	e := startE2E(t, nil)
	ctx := context.Background()
	if err := e.js.DeleteStream(ctx, jobs.StreamResults); err != nil {
		t.Fatal(err)
	}
	e.submit("default", "", `{"id": "nores", "cmd": ["true"]}`)
	deadline := time.Now().Add(20 * time.Second)
	for {
		s, err := e.js.Stream(ctx, jobs.StreamResults)
		if err == nil {
			if m, err := s.GetLastMsgForSubject(ctx, jobs.ResultSubject("nores")); err == nil {
				var r jobs.Result
				if err := json.Unmarshal(m.Data, &r); err != nil || r.Status != jobs.StatusOK || r.Attempt != 1 {
					t.Fatalf("%s %v", m.Data, err)
				}
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no stored result: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// A fetch made after the queue's consumer was deleted gets no responders;
// the worker asks the server and learns the consumer is gone, as a pending
// fetch is told outright.
func TestConsumerGone(t *testing.T) {
	url, _ := natstest.Server(t)
	_, js := natstest.Connect(t, url)
	ctx := context.Background()
	if _, err := EnsureStreams(ctx, js, StreamConfig{}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := EnsureConsumer(ctx, js, "default", ConsumerConfig{}); err != nil {
		t.Fatal(err)
	}
	w := &Worker{js: js}
	q := QueueConfig{Name: "default"}
	if w.consumerGone(q, nats.ErrNoResponders) {
		t.Fatal("an existing consumer taken for gone")
	}
	if err := js.DeleteConsumer(ctx, jobs.StreamJobs, jobs.ConsumerName("default")); err != nil {
		t.Fatal(err)
	}
	if !w.consumerGone(q, nats.ErrNoResponders) || !w.consumerGone(q, jetstream.ErrConsumerDeleted) {
		t.Fatal("a deleted consumer not taken for gone")
	}
	if w.consumerGone(q, errors.New("nats: timeout")) {
		t.Fatal("a timeout taken for a gone consumer")
	}
}
