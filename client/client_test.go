package client_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/corralhq/corral/client"
	"github.com/corralhq/corral/jobs"
	"github.com/corralhq/corral/natstest"
	"github.com/corralhq/corral/worker"
)

func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// fakeWorker consumes queue like a corral worker, without running anything:
// each job's result has one ok step per step whose stdout is the step's
// stdin. Results go to the job's reply subject, with JetStream under
// corral.results. (CORRAL_RESULTS captures it) and core NATS elsewhere.
type fakeWorker struct {
	jobs      atomic.Int64      // job messages handled
	headers   chan nats.Header  // headers of each job message
	published chan *jobs.Result // each result, once the server has it
}

func startWorker(t *testing.T, url, queue string) *fakeWorker {
	t.Helper()
	nc, js := natstest.Connect(t, url)
	ctx := testCtx(t)
	if _, err := worker.EnsureStreams(ctx, js, worker.StreamConfig{}); err != nil {
		t.Fatal(err)
	}
	cons, _, err := worker.EnsureConsumer(ctx, js, queue, worker.ConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	w := &fakeWorker{headers: make(chan nats.Header, 16), published: make(chan *jobs.Result, 16)}
	cc, err := cons.Consume(func(msg jetstream.Msg) {
		w.jobs.Add(1)
		w.headers <- msg.Headers()
		meta, _ := msg.Metadata()
		res := &jobs.Result{Queue: queue, Status: jobs.StatusOK, Attempt: int(meta.NumDelivered)}
		job, err := jobs.Decode(msg.Data())
		if err == nil {
			err = job.Validate(jobs.MaxLimits())
		}
		if err != nil {
			res.Status, res.Error = jobs.StatusRejected, err.Error()
			job = &jobs.Job{ID: jobs.Peek(msg.Data()).ID}
		}
		res.ID, res.Labels = job.ID, job.Labels
		for _, s := range job.Steps {
			res.Steps = append(res.Steps, jobs.StepResult{Name: s.Name, Status: jobs.StatusOK, Stdout: s.Stdin})
		}
		out := nats.NewMsg(job.ReplySubject())
		if job.Labels["reply"] == "refused" {
			// As a worker whose queue or NATS user refuses reply_to.
			out.Subject = jobs.ResultSubject(job.ID)
		}
		out.Header.Set(jobs.HeaderMsgID, jobs.ResultMsgID(job.ID))
		out.Data, _ = res.MarshalJSON()
		if strings.HasPrefix(out.Subject, jobs.SubjectResults) {
			_, err = js.PublishMsg(context.Background(), out)
		} else {
			err = nc.PublishMsg(out)
			if err == nil {
				err = nc.Flush()
			}
		}
		if err != nil {
			t.Errorf("fake worker: publish result: %v", err)
			return
		}
		w.published <- res
		_ = msg.Ack()
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { // before the connection closes
		cc.Stop()
		<-cc.Closed()
	})
	return w
}

func newClient(t *testing.T, url string, opts ...client.Option) *client.Client {
	t.Helper()
	nc, _ := natstest.Connect(t, url)
	c, err := client.New(nc, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestRun(t *testing.T) {
	url, _ := natstest.Server(t)
	w := startWorker(t, url, "judge")
	c := newClient(t, url, client.WithQueue("judge"))

	job := &jobs.Job{Cmd: []string{"cat"}, Stdin: "hi\n", Labels: map[string]string{"tenant": "t1"}}
	res, err := c.Run(testCtx(t), job)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if !jobs.ValidID(job.ID) || job.ReplyTo != "corral.results."+job.ID {
		t.Errorf("Run filled id %q, reply_to %q", job.ID, job.ReplyTo)
	}
	if res.ID != job.ID || res.Queue != "judge" || res.Status != jobs.StatusOK || res.Attempt != 1 || res.Labels["tenant"] != "t1" {
		t.Errorf("result = %+v", res)
	}
	if len(res.Steps) != 1 || res.Steps[0].Name != "step-1" || res.Steps[0].Stdout != "hi\n" {
		t.Errorf("steps = %+v", res.Steps)
	}
	if h := <-w.headers; h.Get(jobs.HeaderMsgID) != job.ID {
		t.Errorf("job message Nats-Msg-Id = %q, want %q", h.Get(jobs.HeaderMsgID), job.ID)
	}
}

func TestSubmitKeepsIDAndReplyTo(t *testing.T) {
	url, _ := natstest.Server(t)
	startWorker(t, url, jobs.DefaultQueue)
	c := newClient(t, url)
	ctx := testCtx(t)

	// Two jobs share a reply subject no stream captures; each Wait gets
	// its own job's result.
	var ps []*client.Pending
	for _, id := range []string{"a-1", "b-2"} {
		p, err := c.Submit(ctx, &jobs.Job{ID: id, Cmd: []string{"true"}, Stdin: id, ReplyTo: "app.results"})
		if err != nil {
			t.Fatalf("Submit %s: %v", id, err)
		}
		defer p.Close()
		if p.ID != id || p.Queue != "default" || p.Subject != "app.results" || p.Ack == nil || p.Ack.Stream != jobs.StreamJobs {
			t.Fatalf("Pending = %+v", p)
		}
		ps = append(ps, p)
	}
	for i := len(ps) - 1; i >= 0; i-- {
		res, err := ps[i].Wait(ctx)
		if err != nil {
			t.Fatalf("Wait %s: %v", ps[i].ID, err)
		}
		if res.ID != ps[i].ID || res.Steps[0].Stdout != ps[i].ID {
			t.Fatalf("Wait %s got the result of %s (%+v)", ps[i].ID, res.ID, res.Steps)
		}
	}
}

// A worker that may not use a job's reply_to answers on corral.results.ID:
// Wait gets that result too, as it arrives and, after Close, from the
// stream. Before, it waited until its context ended.
func TestWaitResultOnDefaultSubject(t *testing.T) {
	url, _ := natstest.Server(t)
	w := startWorker(t, url, jobs.DefaultQueue)
	c := newClient(t, url)
	ctx := testCtx(t)
	refused := map[string]string{"reply": "refused"}
	res, err := c.Run(ctx, &jobs.Job{ID: "r-1", Cmd: []string{"true"}, ReplyTo: "app.nowhere.r-1", Labels: refused})
	if err != nil || res.ID != "r-1" || res.Status != jobs.StatusOK {
		t.Fatalf("Run: %+v, %v", res, err)
	}
	p, err := c.Submit(ctx, &jobs.Job{ID: "r-2", Cmd: []string{"true"}, ReplyTo: "app.nowhere.r-2", Labels: refused})
	if err != nil {
		t.Fatal(err)
	}
	p.Close()
	<-w.published // r-1's
	<-w.published // r-2's, stored
	if res, err := p.Wait(ctx); err != nil || res.ID != "r-2" {
		t.Fatalf("Wait after Close: %+v, %v", res, err)
	}
}

func TestSubmitDuplicate(t *testing.T) {
	url, _ := natstest.Server(t)
	_, js := natstest.Connect(t, url)
	ctx := testCtx(t)
	if _, err := worker.EnsureStreams(ctx, js, worker.StreamConfig{}); err != nil {
		t.Fatal(err)
	}
	c := newClient(t, url)

	var acks []*jetstream.PubAck
	for range 2 {
		p, err := c.Submit(ctx, &jobs.Job{ID: "sub-42", Cmd: []string{"true"}})
		if err != nil {
			t.Fatal(err)
		}
		p.Close()
		acks = append(acks, p.Ack)
	}
	if acks[0].Duplicate || !acks[1].Duplicate || acks[0].Sequence != acks[1].Sequence {
		t.Fatalf("acks = %+v, %+v; want the second a duplicate of the first", *acks[0], *acks[1])
	}
	s, err := js.Stream(ctx, jobs.StreamJobs)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 1 {
		t.Fatalf("CORRAL_JOBS holds %d messages, want 1", info.State.Msgs)
	}
}

func TestWaitAfterResultPublished(t *testing.T) {
	url, _ := natstest.Server(t)
	w := startWorker(t, url, jobs.DefaultQueue)
	c := newClient(t, url)
	ctx := testCtx(t)

	p, err := c.Submit(ctx, &jobs.Job{ID: "late", Cmd: []string{"true"}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	<-w.published // the result is out before anyone waits
	res, err := p.Wait(ctx)
	if err != nil || res.ID != "late" {
		t.Fatalf("Wait = %+v, %v", res, err)
	}
	// Wait again returns the same result.
	if again, err := p.Wait(ctx); again != res || err != nil {
		t.Fatalf("second Wait = %p, %v; want %p", again, err, res)
	}
}

func TestStoredResultFallback(t *testing.T) {
	url, _ := natstest.Server(t)
	w := startWorker(t, url, jobs.DefaultQueue)
	c := newClient(t, url)
	ctx := testCtx(t)

	first, err := c.Run(ctx, &jobs.Job{ID: "retried", Cmd: []string{"true"}, Stdin: "x"})
	if err != nil {
		t.Fatal(err)
	}

	// A retried submit (say, after a crash) is dropped as a duplicate and
	// runs nowhere: its result, published before this subscription
	// existed, is only in CORRAL_RESULTS.
	p, err := c.Submit(ctx, &jobs.Job{ID: "retried", Cmd: []string{"true"}, Stdin: "x"})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if !p.Ack.Duplicate {
		t.Fatal("second submit was not a duplicate")
	}
	res, err := p.Wait(ctx)
	if err != nil {
		t.Fatalf("Wait: %v", err)
	}
	if res.ID != first.ID || res.Steps[0].Stdout != "x" {
		t.Fatalf("stored result = %+v, want %+v", res, first)
	}
	if n := w.jobs.Load(); n != 1 {
		t.Fatalf("worker got %d jobs, want 1", n)
	}

	// Without the fallback the duplicate's result never arrives.
	off := newClient(t, url, client.WithResultStream(""))
	p, err = off.Submit(ctx, &jobs.Job{ID: "retried", Cmd: []string{"true"}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if _, err := p.Wait(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait without fallback = %v, want a deadline error", err)
	}
}

func TestRunContextTimeout(t *testing.T) {
	url, _ := natstest.Server(t)
	_, js := natstest.Connect(t, url)
	if _, err := worker.EnsureStreams(testCtx(t), js, worker.StreamConfig{}); err != nil {
		t.Fatal(err)
	}
	c := newClient(t, url) // no worker: no result ever comes

	ctx, cancel := context.WithTimeout(testCtx(t), 200*time.Millisecond)
	defer cancel()
	res, err := c.Run(ctx, &jobs.Job{Cmd: []string{"sleep", "1"}})
	if res != nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Run = %v, %v; want a deadline error", res, err)
	}
}

func TestSubmitErrors(t *testing.T) {
	url, _ := natstest.Server(t)
	c := newClient(t, url)
	ctx := testCtx(t)

	for _, job := range []*jobs.Job{
		{ID: "bad id", Cmd: []string{"true"}},
		{ID: strings.Repeat("x", 65), Cmd: []string{"true"}},
		{Cmd: []string{"true"}, ReplyTo: "corral.jobs.default"},
		{Cmd: []string{"true"}, ReplyTo: "$JS.API.STREAM.LIST"},
		{Cmd: []string{"true"}, ReplyTo: "a.*"},
	} {
		if _, err := c.Submit(ctx, job); !errors.Is(err, jobs.ErrRejected) {
			t.Errorf("Submit(id %q, reply_to %q) = %v, want a rejection", job.ID, job.ReplyTo, err)
		}
	}
	// No worker has created CORRAL_JOBS yet.
	if _, err := c.Submit(ctx, &jobs.Job{Cmd: []string{"true"}}); !errors.Is(err, client.ErrNoStream) {
		t.Errorf("Submit without stream = %v, want ErrNoStream", err)
	}
	nc, _ := natstest.Connect(t, url)
	if _, err := client.New(nc, client.WithQueue("a.b")); err == nil {
		t.Error("New accepted queue a.b")
	}
	if _, err := client.New(nil); err == nil {
		t.Error("New accepted a nil connection")
	}
}

func TestCancel(t *testing.T) {
	url, _ := natstest.Server(t)
	nc, _ := natstest.Connect(t, url)
	sub, err := nc.SubscribeSync("corral.cancel.>")
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	c := newClient(t, url)
	if err := c.Cancel(testCtx(t), "sub-42"); err != nil {
		t.Fatalf("Cancel: %v", err)
	}
	msg, err := sub.NextMsgWithContext(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if msg.Subject != "corral.cancel.sub-42" {
		t.Fatalf("cancel subject = %q", msg.Subject)
	}
	if err := c.Cancel(testCtx(t), "a.b"); err == nil {
		t.Fatal("Cancel accepted id a.b")
	}
}

func TestOutput(t *testing.T) {
	url, _ := natstest.Server(t)
	c := newClient(t, url)
	type chunk struct {
		stream, step string
		seq          int
		data         string
	}
	got := make(chan chunk, 8)
	unsubscribe, err := c.Output(testCtx(t), "job-1", func(stream, step string, seq int, data []byte) {
		got <- chunk{stream, step, seq, string(data)}
	})
	if err != nil {
		t.Fatalf("Output: %v", err)
	}

	// A worker publishes chunks (core NATS, after Output has returned).
	nc, _ := natstest.Connect(t, url)
	want := []chunk{
		{"stdout", "build", 1, "compiling\n"},
		{"stderr", "build", 2, "warning\n"},
		{"stdout", "run", 3, "\x00\xffbinary"},
	}
	for _, ch := range want {
		m := nats.NewMsg("corral.output.job-1")
		m.Header.Set(jobs.HeaderStream, ch.stream)
		m.Header.Set(jobs.HeaderStep, ch.step)
		m.Header.Set(jobs.HeaderSeq, strconv.Itoa(ch.seq))
		m.Data = []byte(ch.data)
		if err := nc.PublishMsg(m); err != nil {
			t.Fatal(err)
		}
	}
	if err := nc.Publish("corral.output.job-2", []byte("other job")); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	for i, w := range want {
		if g := <-got; g != w {
			t.Fatalf("chunk %d = %+v, want %+v", i, g, w)
		}
	}
	unsubscribe()
	if _, err := c.Output(testCtx(t), "a b", func(string, string, int, []byte) {}); err == nil {
		t.Fatal("Output accepted id \"a b\"")
	}
}

func TestWaitAfterReconnect(t *testing.T) {
	url, srv := natstest.Server(t)
	_, js := natstest.Connect(t, url)
	ctx := testCtx(t)
	if _, err := worker.EnsureStreams(ctx, js, worker.StreamConfig{}); err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(url, nats.ReconnectWait(10*time.Millisecond), nats.MaxReconnects(-1))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	c, err := client.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	p, err := c.Submit(ctx, &jobs.Job{ID: "gap", Cmd: []string{"true"}})
	if err != nil {
		t.Fatal(err)
	}
	// The result goes out while the subscription cannot see it (as while
	// the connection is down).
	p.Close()
	out := nats.NewMsg(jobs.ResultSubject("gap"))
	out.Header.Set(jobs.HeaderMsgID, jobs.ResultMsgID("gap"))
	out.Data, _ = (&jobs.Result{ID: "gap", Queue: "default", Status: jobs.StatusOK}).MarshalJSON()
	if _, err := js.PublishMsg(ctx, out); err != nil {
		t.Fatal(err)
	}

	type outcome struct {
		res *jobs.Result
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		res, err := p.Wait(ctx)
		done <- outcome{res, err}
	}()
	// Drop the client's connection until Wait, listening by then, looks
	// the result up after a reconnect.
	reconnected := nc.StatusChanged(nats.CONNECTED)
	defer nc.RemoveStatusListener(reconnected)
	for {
		cid, err := nc.GetClientID()
		if err != nil {
			t.Fatal(err)
		}
		if err := srv.DisconnectClientByID(cid); err != nil {
			t.Fatal(err)
		}
		select {
		case <-reconnected:
		case <-ctx.Done():
			t.Fatal("no reconnect")
		}
		// Give the lookup a moment before cutting the connection again
		// (pacing only: the test waits on the result, not on a time).
		select {
		case o := <-done:
			if o.err != nil || o.res.ID != "gap" || o.res.Status != jobs.StatusOK {
				t.Fatalf("Wait = %+v, %v", o.res, o.err)
			}
			return
		case <-time.After(200 * time.Millisecond):
		case <-ctx.Done():
			t.Fatal("no result after reconnects")
		}
	}
}

func TestCancelAndOutputWithoutDeadline(t *testing.T) {
	url, _ := natstest.Server(t)
	nc, _ := natstest.Connect(t, url)
	c, err := client.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	stop, err := c.Output(context.Background(), "nodeadline", func(string, string, int, []byte) {})
	if err != nil {
		t.Fatalf("Output without a deadline: %v", err)
	}
	stop()
	if err := c.Cancel(context.Background(), "nodeadline"); err != nil {
		t.Fatalf("Cancel without a deadline: %v", err)
	}
}
