package main

// Tests of the deployment material in deploy/ (see deploy/README.md): the
// NATS accounts against a real server and the operations corral performs,
// the systemd unit and the Kubernetes manifests against the real command
// line of corral, the KEDA ScaledObject against the names corral uses and
// the server's monitoring output, the Grafana dashboard's queries against
// the worker's metric names.
//
// A test that needs a tool (systemd-analyze, sh) skips without it, except in
// CI (CI=true), where every requirement must be present and a missing one
// fails.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
	"go.yaml.in/yaml/v3"

	"github.com/corralhq/corral/client"
	"github.com/corralhq/corral/jobs"
	"github.com/corralhq/corral/worker"
)

// deployDir holds the deployment material, relative to this package.
const deployDir = "../../deploy"

func deployPath(parts ...string) string {
	return filepath.Join(append([]string{deployDir}, parts...)...)
}

// needTool returns the path of a tool a test needs. Without it the test is
// skipped, or fails in CI, where every requirement must be there.
func needTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("needs %s, which CI must have: %v", name, err)
		}
		t.Skipf("needs %s: %v", name, err)
	}
	return p
}

// opTimeout bounds every single NATS operation of the tests below.
const opTimeout = 10 * time.Second

func opCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	t.Cleanup(cancel)
	return ctx
}

// --- NATS --------------------------------------------------------------

// natsPasswords are given to the server through the environment, as
// corral-accounts.conf expects, and used by the test's connections.
var natsPasswords = map[string]string{
	"worker":    "test-worker-0f3a9c",
	"submitter": "test-submitter-7b21e4",
	"sys":       "test-sys-55d0aa",
}

// loadNATSConfig loads deploy/nats/nats-server.conf (and what it includes)
// as nats-server does, with the passwords set in the environment.
func loadNATSConfig(t *testing.T) *server.Options {
	t.Helper()
	for user, pw := range natsPasswords {
		t.Setenv("CORRAL_"+strings.ToUpper(user)+"_PASSWORD", pw)
	}
	opts, err := server.ProcessConfigFile(deployPath("nats", "nats-server.conf"))
	if err != nil {
		t.Fatalf("nats-server.conf: %v", err)
	}
	return opts
}

// startNATS starts the configured server in-process on random ports with
// its store in a temporary directory; it is shut down when the test ends.
func startNATS(t *testing.T, opts *server.Options) *server.Server {
	t.Helper()
	opts.Host, opts.Port = "127.0.0.1", server.RANDOM_PORT
	opts.HTTPHost, opts.HTTPPort = "127.0.0.1", server.RANDOM_PORT
	opts.StoreDir = t.TempDir() // registered first: removed after the shutdown
	opts.NoLog, opts.NoSigs = true, true
	srv, err := server.NewServer(opts)
	if err != nil {
		t.Fatalf("nats server: %v", err)
	}
	srv.Start()
	t.Cleanup(func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	})
	if !srv.ReadyForConnections(opTimeout) {
		t.Fatalf("nats server not ready after %v", opTimeout)
	}
	if !srv.JetStreamEnabled() {
		t.Fatal("nats server: JetStream is not enabled")
	}
	return srv
}

// natsUser is a connection as one user of the config, with the permission
// violations the server reported to it, in order.
type natsUser struct {
	name       string
	nc         *nats.Conn
	js         jetstream.JetStream
	violations chan string
}

func connectAs(t *testing.T, url, user string) *natsUser {
	t.Helper()
	u := &natsUser{name: user, violations: make(chan string, 1000)}
	nc, err := nats.Connect(url, nats.UserInfo(user, natsPasswords[user]), nats.Name("deploy-test-"+user),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			if errors.Is(err, nats.ErrPermissionViolation) {
				select {
				case u.violations <- err.Error():
				default:
				}
			}
		}))
	if err != nil {
		t.Fatalf("connect as %s: %v", user, err)
	}
	t.Cleanup(nc.Close)
	if u.js, err = jetstream.New(nc); err != nil {
		t.Fatal(err)
	}
	u.nc = nc
	return u
}

// waitViolation waits for the server's permission violation on subject. A
// violation on any other subject first fails the test: everything the test
// did before was meant to be allowed.
func (u *natsUser) waitViolation(t *testing.T, kind, subject string) {
	t.Helper()
	want := fmt.Sprintf("Permissions Violation for %s to %q", kind, subject)
	timeout := time.After(opTimeout)
	for {
		select {
		case v := <-u.violations:
			if strings.Contains(v, want) {
				return
			}
			t.Errorf("%s: unexpected permission violation (a permission the deployment needs is missing): %s", u.name, v)
		case <-timeout:
			t.Fatalf("%s: no permission violation for %s to %q within %v: it is allowed and must not be", u.name, kind, subject, opTimeout)
		}
	}
}

// allowedSoFar fails the test if the server refused anything this user did
// so far: it publishes to a subject no user may use and waits for that
// violation, which the server reports after every earlier one.
func (u *natsUser) allowedSoFar(t *testing.T) {
	t.Helper()
	const sentinel = "deploy.test.sentinel"
	if err := u.nc.Publish(sentinel, nil); err != nil {
		t.Fatal(err)
	}
	u.waitViolation(t, "Publish", sentinel)
}

// deniedPublish checks that u may not publish to subject.
func (u *natsUser) deniedPublish(t *testing.T, subject string) {
	t.Helper()
	if err := u.nc.Publish(subject, []byte("{}")); err != nil {
		t.Fatal(err)
	}
	u.waitViolation(t, "Publish", subject)
}

// deniedRequest checks that a JetStream API call by u fails and that the
// server refused its request subject.
func (u *natsUser) deniedRequest(t *testing.T, subject string, call func(ctx context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := call(ctx); err == nil {
		t.Errorf("%s: %s succeeded; it must be denied", u.name, subject)
	}
	u.waitViolation(t, "Publish", subject)
}

// deniedSubscribe checks that u may not subscribe to subject.
func (u *natsUser) deniedSubscribe(t *testing.T, subject string) {
	t.Helper()
	sub, err := u.nc.SubscribeSync(subject)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := u.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	u.waitViolation(t, "Subscription", subject)
}

// TestDeployNATSConfig loads deploy/nats/nats-server.conf into a real
// server, then does as the worker and as a submitter everything corral
// does, and checks what a submitter must not do. It runs twice: with the
// server's present JetStream ack subjects and with the v2 ones
// ($JS.ACK.<domain>.<account hash>...) that a later server makes the default.
func TestDeployNATSConfig(t *testing.T) {
	for _, ackV2 := range []bool{false, true} {
		t.Run(fmt.Sprintf("ack_v2=%v", ackV2), func(t *testing.T) {
			opts := loadNATSConfig(t)
			checkNATSOptions(t, opts)
			if ackV2 {
				opts.FeatureFlags = map[string]bool{server.FeatureFlagJsAckFormatV2: true}
			}
			srv := startNATS(t, opts)
			exerciseNATS(t, srv)
		})
	}
}

// checkNATSOptions checks the settings the rest of deploy/ relies on.
func checkNATSOptions(t *testing.T, opts *server.Options) {
	t.Helper()
	if !opts.JetStream {
		t.Error("JetStream is not enabled")
	}
	if opts.StoreDir == "" {
		t.Error("JetStream has no store_dir")
	}
	if opts.HTTPPort != 8222 {
		t.Errorf("monitoring port %d, want 8222 (keda-scaledobject.yaml reads it)", opts.HTTPPort)
	}
	if opts.SystemAccount != "SYS" {
		t.Errorf("system account %q, want SYS", opts.SystemAccount)
	}
	if opts.MaxPayload < 1<<20 {
		t.Errorf("max_payload %d, want at least the default 1 MiB", opts.MaxPayload)
	}
	users := map[string]*server.User{}
	for _, u := range opts.Users {
		users[u.Username] = u
	}
	for _, name := range []string{"worker", "submitter"} {
		u := users[name]
		switch {
		case u == nil:
			t.Errorf("no user %s", name)
		case u.Account == nil || u.Account.Name != natsAccount:
			t.Errorf("user %s is not in account %s", name, natsAccount)
		case u.Permissions == nil || u.Permissions.Publish == nil || u.Permissions.Subscribe == nil:
			t.Errorf("user %s has no publish and subscribe permissions: it may do anything", name)
		}
	}
}

// natsAccount is the account of corral's users in corral-accounts.conf.
const natsAccount = "CORRAL"

// exerciseNATS runs corral's operations against srv as the worker and as a
// submitter, and the submitter's and worker's denials.
func exerciseNATS(t *testing.T, srv *server.Server) {
	url := srv.ClientURL()
	w := connectAs(t, url, "worker")
	s := connectAs(t, url, "submitter")
	sys := connectAs(t, url, "sys")
	if _, err := sys.nc.Request("$SYS.REQ.SERVER.PING", nil, opTimeout); err != nil {
		t.Errorf("sys: server ping: %v", err)
	}

	// The worker's start: streams, object store, consumers, twice (the
	// second time they exist and are looked up).
	var cons jetstream.Consumer
	for range 2 {
		ms, err := worker.EnsureStreams(opCtx(t), w.js, worker.StreamConfig{})
		if err != nil {
			t.Fatalf("worker: EnsureStreams: %v", err)
		}
		for _, m := range ms {
			t.Errorf("worker: EnsureStreams: %s", m)
		}
		if _, err := worker.EnsureObjectStore(opCtx(t), w.js); err != nil {
			t.Fatalf("worker: EnsureObjectStore: %v", err)
		}
		if cons, ms, err = worker.EnsureConsumer(opCtx(t), w.js, jobs.DefaultQueue, worker.ConsumerConfig{}); err != nil {
			t.Fatalf("worker: EnsureConsumer: %v", err)
		}
		for _, m := range ms {
			t.Errorf("worker: EnsureConsumer: %s", m)
		}
		if _, err := worker.EnsureAdvisoryConsumer(opCtx(t), w.js, jobs.DefaultQueue); err != nil {
			t.Fatalf("worker: EnsureAdvisoryConsumer: %v", err)
		}
		if _, err := worker.EnsureStrayConsumer(opCtx(t), w.js); err != nil {
			t.Fatalf("worker: EnsureStrayConsumer: %v", err)
		}
	}
	cancels := make(chan *nats.Msg, 10)
	if _, err := w.nc.ChanSubscribe(jobs.SubjectCancel+"*", cancels); err != nil {
		t.Fatal(err)
	}
	if err := w.nc.Flush(); err != nil {
		t.Fatal(err)
	}

	// A submitter, through corral's Go client: live output, submit (PubAck).
	c, err := client.New(s.nc)
	if err != nil {
		t.Fatal(err)
	}
	id := "deploy-" + client.NewID()[:8]
	output := make(chan []byte, 10)
	unsub, err := c.Output(opCtx(t), id, func(_, _ string, _ int, data []byte) { output <- data })
	if err != nil {
		t.Fatalf("submitter: output: %v", err)
	}
	defer unsub()
	job := &jobs.Job{ID: id, Cmd: []string{"true"}, StreamOutput: true}
	p, err := c.Submit(opCtx(t), job)
	if err != nil {
		t.Fatalf("submitter: submit: %v", err)
	}
	defer p.Close()
	if p.Ack.Stream != jobs.StreamJobs || p.Ack.Duplicate {
		t.Errorf("submitter: PubAck %+v, want a new message in %s", p.Ack, jobs.StreamJobs)
	}

	// What KEDA reads: the queue's consumer and its pending job in the
	// account named by the ScaledObject.
	checkKEDAMonitoring(t, srv)

	// The worker takes the job, reports progress, streams output, sees the
	// cancel, publishes the result and acks.
	batch, err := cons.Fetch(1, jetstream.FetchMaxWait(opTimeout))
	if err != nil {
		t.Fatalf("worker: fetch: %v", err)
	}
	var msg jetstream.Msg
	for m := range batch.Messages() {
		msg = m
	}
	if msg == nil {
		t.Fatalf("worker: fetched no job: %v", batch.Error())
	}
	if got := jobs.Peek(msg.Data()); got.ID != id {
		t.Fatalf("worker: fetched job %q, want %q", got.ID, id)
	}
	if err := msg.InProgress(); err != nil {
		t.Errorf("worker: in progress: %v", err)
	}
	out := nats.NewMsg(jobs.OutputSubject(id))
	out.Header.Set(jobs.HeaderStream, jobs.OutputStdout)
	out.Header.Set(jobs.HeaderSeq, "1")
	out.Data = []byte("hello\n")
	if err := w.nc.PublishMsg(out); err != nil {
		t.Fatal(err)
	}
	select {
	case b := <-output:
		if string(b) != "hello\n" {
			t.Errorf("submitter: live output %q", b)
		}
	case <-time.After(opTimeout):
		t.Error("submitter: no live output")
	}
	if err := c.Cancel(opCtx(t), id); err != nil {
		t.Errorf("submitter: cancel: %v", err)
	}
	select {
	case m := <-cancels:
		if m.Subject != jobs.CancelSubject(id) {
			t.Errorf("worker: cancel on %s", m.Subject)
		}
	case <-time.After(opTimeout):
		t.Error("worker: no cancel")
	}
	res := jobs.Result{ID: id, Queue: jobs.DefaultQueue, Status: jobs.StatusOK, Steps: []jobs.StepResult{}}
	data, err := json.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	rm := nats.NewMsg(jobs.ResultSubject(id))
	rm.Header.Set(jobs.HeaderMsgID, jobs.ResultMsgID(id))
	rm.Data = data
	if ack, err := w.js.PublishMsg(opCtx(t), rm); err != nil || ack.Stream != jobs.StreamResults {
		t.Fatalf("worker: publish result: %v %+v", err, ack)
	}
	// A reply_to outside corral.results.>: the worker asks which stream,
	// if any, captures it before publishing.
	if _, err := w.js.StreamNameBySubject(opCtx(t), "corral.results"); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Errorf("worker: which stream captures corral.results: %v", err)
	}
	if err := msg.DoubleAck(opCtx(t)); err != nil {
		t.Errorf("worker: ack: %v", err)
	}
	got, err := p.Wait(opCtx(t))
	if err != nil || got.ID != id || got.Status != jobs.StatusOK {
		t.Errorf("submitter: result %+v, %v", got, err)
	}

	// The same job again: a duplicate, whose result the client reads back
	// from CORRAL_RESULTS.
	p2, err := c.Submit(opCtx(t), &jobs.Job{ID: id, Cmd: []string{"true"}})
	if err != nil {
		t.Fatalf("submitter: submit again: %v", err)
	}
	defer p2.Close()
	if !p2.Ack.Duplicate {
		t.Error("submitter: the same job id again is not a duplicate")
	}
	if got, err := p2.Wait(opCtx(t)); err != nil || got.ID != id {
		t.Errorf("submitter: stored result %+v, %v", got, err)
	}

	// A job on a single-token subject that is no queue name: the worker
	// finds it in the stream's subjects and takes it through a consumer of
	// that subject alone (it then rejects it, as above).
	if _, err := s.js.Publish(opCtx(t), jobs.SubjectJobs+"bad+q", []byte(`{"cmd": ["true"]}`)); err != nil {
		t.Fatalf("submitter: publish to corral.jobs.bad+q: %v", err)
	}
	stray, err := worker.StraySubjects(opCtx(t), w.js)
	if err != nil || !slices.Equal(stray, []string{jobs.SubjectJobs + "bad+q"}) {
		t.Fatalf("worker: stray subjects %q, %v", stray, err)
	}
	sc, err := worker.EnsureStraySubjectConsumer(opCtx(t), w.js, stray[0])
	if err != nil {
		t.Fatalf("worker: consumer of %s: %v", stray[0], err)
	}
	sb, err := sc.Fetch(1, jetstream.FetchMaxWait(opTimeout))
	if err != nil {
		t.Fatalf("worker: fetch from %s: %v", stray[0], err)
	}
	for m := range sb.Messages() {
		if err := m.Term(); err != nil {
			t.Errorf("worker: term the stray job: %v", err)
		}
	}

	// A submitter's own consumer on CORRAL_RESULTS.
	rc, err := s.js.CreateConsumer(opCtx(t), jobs.StreamResults, jetstream.ConsumerConfig{
		FilterSubject: jobs.ResultSubject(id), AckPolicy: jetstream.AckExplicitPolicy,
	})
	if err != nil {
		t.Fatalf("submitter: consumer on %s: %v", jobs.StreamResults, err)
	}
	rb, err := rc.Fetch(1, jetstream.FetchMaxWait(opTimeout))
	if err != nil {
		t.Fatalf("submitter: fetch result: %v", err)
	}
	n := 0
	for m := range rb.Messages() {
		n++
		if err := m.DoubleAck(opCtx(t)); err != nil {
			t.Errorf("submitter: ack result: %v", err)
		}
	}
	if n != 1 {
		t.Errorf("submitter: fetched %d results, want 1 (%v)", n, rb.Error())
	}
	if err := s.js.DeleteConsumer(opCtx(t), jobs.StreamResults, rc.CachedInfo().Name); err != nil {
		t.Errorf("submitter: delete its consumer: %v", err)
	}

	// A job that could not be run: read it by sequence, keep a copy in
	// CORRAL_DEAD, remove it (the worker's bury).
	p3, err := c.Submit(opCtx(t), &jobs.Job{ID: id + "-2", Cmd: []string{"true"}})
	if err != nil {
		t.Fatalf("submitter: submit: %v", err)
	}
	p3.Close()
	stream, err := w.js.Stream(opCtx(t), jobs.StreamJobs)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := stream.GetMsg(opCtx(t), p3.Ack.Sequence)
	if err != nil {
		t.Fatalf("worker: get job by sequence: %v", err)
	}
	dm := nats.NewMsg(jobs.DeadSubject(jobs.DefaultQueue))
	dm.Data = raw.Data
	dm.Header.Set(jobs.HeaderMsgID, "dead-"+strconv.FormatUint(raw.Sequence, 10))
	if ack, err := w.js.PublishMsg(opCtx(t), dm); err != nil || ack.Stream != jobs.StreamDead {
		t.Errorf("worker: dead copy: %v %+v", err, ack)
	}
	if err := stream.DeleteMsg(opCtx(t), raw.Sequence); err != nil {
		t.Errorf("worker: remove the dead job: %v", err)
	}

	exerciseAdvisory(t, w, s)
	exerciseObjects(t, w, s)

	w.allowedSoFar(t)
	s.allowedSoFar(t)

	// What a submitter must not do.
	s.deniedRequest(t, "$JS.API.STREAM.DELETE."+jobs.StreamJobs, func(ctx context.Context) error {
		return s.js.DeleteStream(ctx, jobs.StreamJobs)
	})
	s.deniedRequest(t, "$JS.API.STREAM.PURGE."+jobs.StreamResults, func(ctx context.Context) error {
		st, err := s.js.Stream(ctx, jobs.StreamResults)
		if err != nil {
			return err
		}
		return st.Purge(ctx)
	})
	s.deniedRequest(t, "$JS.API.STREAM.CREATE.EVIL", func(ctx context.Context) error {
		_, err := s.js.CreateStream(ctx, jetstream.StreamConfig{Name: "EVIL", Subjects: []string{"corral.cancel.>"}})
		return err
	})
	consumer := jobs.ConsumerName(jobs.DefaultQueue)
	s.deniedRequest(t, "$JS.API.CONSUMER.INFO."+jobs.StreamJobs+"."+consumer, func(ctx context.Context) error {
		_, err := s.js.Consumer(ctx, jobs.StreamJobs, consumer)
		return err
	})
	next := "$JS.API.CONSUMER.MSG.NEXT." + jobs.StreamJobs + "." + consumer
	s.deniedRequest(t, next, func(ctx context.Context) error {
		_, err := s.nc.RequestWithContext(ctx, next, []byte(`{"batch":1,"no_wait":true}`))
		return err
	})
	s.deniedPublish(t, jobs.ResultSubject("forged"))
	s.deniedPublish(t, jobs.OutputSubject("forged"))
	s.deniedPublish(t, jobs.DeadSubject(jobs.DefaultQueue))
	s.deniedPublish(t, "$JS.ACK."+jobs.StreamJobs+"."+consumer+".1.1.1.0.0")
	s.deniedPublish(t, "$O."+jobs.ObjectBucket+".C.forged")
	s.deniedSubscribe(t, jobs.SubjectJobs+">")
	s.deniedSubscribe(t, "corral.cancel.*")
	// ... nor the worker anything beyond its own.
	w.deniedRequest(t, "$JS.API.STREAM.DELETE."+jobs.StreamResults, func(ctx context.Context) error {
		return w.js.DeleteStream(ctx, jobs.StreamResults)
	})
	w.deniedPublish(t, jobs.JobSubject(jobs.DefaultQueue))
	w.deniedSubscribe(t, jobs.SubjectResults+">")

	// The denied calls changed nothing.
	for _, name := range []string{jobs.StreamJobs, jobs.StreamResults} {
		if _, err := w.js.Stream(opCtx(t), name); err != nil {
			t.Errorf("stream %s after the denied calls: %v", name, err)
		}
	}
	if _, err := stream.GetLastMsgForSubject(opCtx(t), jobs.ResultSubject("forged")); !errors.Is(err, jetstream.ErrMsgNotFound) {
		t.Errorf("a forged result was stored: %v", err)
	}
}

// exerciseAdvisory runs a job out of deliveries on queue "dlq" and takes the
// server's max-deliveries advisory from CORRAL_ADVISORIES, as the worker does.
func exerciseAdvisory(t *testing.T, w, s *natsUser) {
	t.Helper()
	const queue = "dlq"
	cons, _, err := worker.EnsureConsumer(opCtx(t), w.js, queue, worker.ConsumerConfig{AckWait: 200 * time.Millisecond, MaxDeliver: 1})
	if err != nil {
		t.Fatalf("worker: EnsureConsumer %s: %v", queue, err)
	}
	adv, err := worker.EnsureAdvisoryConsumer(opCtx(t), w.js, queue)
	if err != nil {
		t.Fatalf("worker: EnsureAdvisoryConsumer %s: %v", queue, err)
	}
	qc, err := client.New(s.nc, client.WithQueue(queue))
	if err != nil {
		t.Fatal(err)
	}
	p, err := qc.Submit(opCtx(t), &jobs.Job{Cmd: []string{"true"}})
	if err != nil {
		t.Fatalf("submitter: submit to %s: %v", queue, err)
	}
	p.Close()
	// The only delivery is never acked; the next fetch makes the server give
	// up on the job and announce it.
	deadline := time.Now().Add(opTimeout)
	for time.Now().Before(deadline) {
		b, err := cons.Fetch(1, jetstream.FetchMaxWait(300*time.Millisecond))
		if err != nil {
			t.Fatalf("worker: fetch %s: %v", queue, err)
		}
		for range b.Messages() {
		}
		ab, err := adv.Fetch(1, jetstream.FetchMaxWait(300*time.Millisecond))
		if err != nil {
			t.Fatalf("worker: fetch advisories: %v", err)
		}
		for m := range ab.Messages() {
			var a struct {
				Stream    string `json:"stream"`
				Consumer  string `json:"consumer"`
				StreamSeq uint64 `json:"stream_seq"`
			}
			if err := json.Unmarshal(m.Data(), &a); err != nil {
				t.Fatalf("advisory: %v", err)
			}
			if a.Stream != jobs.StreamJobs || a.Consumer != jobs.ConsumerName(queue) || a.StreamSeq != p.Ack.Sequence {
				t.Errorf("advisory %+v, want job %d of %s", a, p.Ack.Sequence, jobs.ConsumerName(queue))
			}
			if err := m.DoubleAck(opCtx(t)); err != nil {
				t.Errorf("worker: ack advisory: %v", err)
			}
			return
		}
	}
	t.Errorf("worker: no max-deliveries advisory in %s within %v", jobs.StreamAdvisories, opTimeout)
}

// exerciseObjects moves files through object stores both ways: a job input
// the submitter puts into corral-inputs and the worker reads, a collected
// file the worker puts into corral-files and the submitter reads. Each is
// larger than the server's first flow-control window (1 MiB), and each is
// written twice (replacing purges the old chunks).
func exerciseObjects(t *testing.T, w, s *natsUser) {
	t.Helper()
	blob := make([]byte, 3<<20)
	rand.Read(blob)
	in, err := s.js.CreateObjectStore(opCtx(t), jetstream.ObjectStoreConfig{Bucket: "corral-inputs", Storage: jetstream.FileStorage})
	if err != nil {
		t.Fatalf("submitter: create bucket corral-inputs: %v", err)
	}
	for range 2 {
		if _, err := in.PutBytes(opCtx(t), "input.bin", blob); err != nil {
			t.Fatalf("submitter: put input: %v", err)
		}
	}
	wi, err := w.js.ObjectStore(opCtx(t), "corral-inputs")
	if err != nil {
		t.Fatalf("worker: open corral-inputs: %v", err)
	}
	if got, err := wi.GetBytes(opCtx(t), "input.bin"); err != nil || !bytes.Equal(got, blob) {
		t.Errorf("worker: read input: %d bytes, %v", len(got), err)
	}
	files, err := worker.EnsureObjectStore(opCtx(t), w.js)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := files.PutBytes(opCtx(t), "job-1/out.bin", blob); err != nil {
			t.Fatalf("worker: put collected file: %v", err)
		}
	}
	sf, err := s.js.ObjectStore(opCtx(t), jobs.ObjectBucket)
	if err != nil {
		t.Fatalf("submitter: open %s: %v", jobs.ObjectBucket, err)
	}
	if got, err := sf.GetBytes(opCtx(t), "job-1/out.bin"); err != nil || !bytes.Equal(got, blob) {
		t.Errorf("submitter: read collected file: %d bytes, %v", len(got), err)
	}
}

// checkKEDAMonitoring reads the server's /jsz as KEDA's nats-jetstream
// scaler does, with the account, stream and consumer of each trigger in
// keda-scaledobject.yaml, and checks that it finds the consumer with the
// job just submitted (num_pending + num_ack_pending, KEDA's lag).
func checkKEDAMonitoring(t *testing.T, srv *server.Server) {
	t.Helper()
	triggers := kedaTriggers(t)
	if len(triggers) == 0 {
		t.Fatal("keda-scaledobject.yaml has no nats-jetstream trigger")
	}
	for _, md := range triggers {
		if md["stream"] != jobs.StreamJobs || md["consumer"] != jobs.ConsumerName(jobs.DefaultQueue) {
			continue // other queues: no job submitted to them here
		}
		url := fmt.Sprintf("http://%s/jsz?acc=%s&consumers=true&config=true", srv.MonitorAddr(), md["account"])
		req, err := http.NewRequestWithContext(opCtx(t), http.MethodGet, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("monitoring: %v", err)
		}
		var jsz struct {
			Accounts []struct {
				Name    string `json:"name"`
				Streams []struct {
					Name      string `json:"name"`
					Consumers []struct {
						Name          string `json:"name"`
						NumPending    int    `json:"num_pending"`
						NumAckPending int    `json:"num_ack_pending"`
					} `json:"consumer_detail"`
				} `json:"stream_detail"`
			} `json:"account_details"`
		}
		err = json.NewDecoder(resp.Body).Decode(&jsz)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("monitoring: %v", err)
		}
		lag := -1
		for _, a := range jsz.Accounts {
			for _, s := range a.Streams {
				for _, c := range s.Consumers {
					if a.Name == md["account"] && s.Name == md["stream"] && c.Name == md["consumer"] {
						lag = c.NumPending + c.NumAckPending
					}
				}
			}
		}
		if lag < 1 {
			t.Errorf("KEDA would not see the job: account %q stream %q consumer %q in %s: lag %d",
				md["account"], md["stream"], md["consumer"], url, lag)
		}
		return
	}
	t.Errorf("no trigger in keda-scaledobject.yaml for %s consumer %s", jobs.StreamJobs, jobs.ConsumerName(jobs.DefaultQueue))
}

// --- YAML and the corral command line ------------------------------------

// yamlDoc is one document of a YAML file.
type yamlDoc struct {
	file string
	obj  map[string]any
}

// yamlDocs returns every non-empty document of every .yaml file below dir.
func yamlDocs(t *testing.T, dir string) []yamlDoc {
	t.Helper()
	var docs []yamlDoc
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !(strings.HasSuffix(path, ".yaml") || strings.HasSuffix(path, ".yml")) {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		dec := yaml.NewDecoder(bytes.NewReader(b))
		for {
			var obj map[string]any
			err := dec.Decode(&obj)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
			if obj != nil {
				docs = append(docs, yamlDoc{file: path, obj: obj})
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return docs
}

// dig follows keys (string) and indexes (int) into decoded YAML or JSON,
// returning nil where the path does not exist.
func dig(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

func digStr(v any, path ...any) string {
	s, _ := dig(v, path...).(string)
	return s
}

func digList(v any, path ...any) []any {
	l, _ := dig(v, path...).([]any)
	return l
}

func digMap(v any, path ...any) map[string]any {
	m, _ := dig(v, path...).(map[string]any)
	return m
}

// strList converts a YAML list of scalars to strings.
func strList(t *testing.T, where string, l []any) []string {
	t.Helper()
	var out []string
	for _, v := range l {
		s, ok := v.(string)
		if !ok {
			t.Fatalf("%s: %v is not a string (quote it)", where, v)
		}
		out = append(out, s)
	}
	return out
}

// findDoc returns the document of kind and name, or fails the test.
func findDoc(t *testing.T, docs []yamlDoc, kind, name string) yamlDoc {
	t.Helper()
	for _, d := range docs {
		if digStr(d.obj, "kind") == kind && digStr(d.obj, "metadata", "name") == name {
			return d
		}
	}
	t.Fatalf("no %s %q in deploy/", kind, name)
	return yamlDoc{}
}

// kedaTriggers returns the metadata of the nats-jetstream triggers of
// keda-scaledobject.yaml.
func kedaTriggers(t *testing.T) []map[string]string {
	t.Helper()
	var out []map[string]string
	for _, d := range yamlDocs(t, deployPath("kubernetes")) {
		if digStr(d.obj, "kind") != "ScaledObject" {
			continue
		}
		for _, tr := range digList(d.obj, "spec", "triggers") {
			if digStr(tr, "type") != "nats-jetstream" {
				continue
			}
			md := map[string]string{}
			for k, v := range digMap(tr, "metadata") {
				s, ok := v.(string)
				if !ok {
					t.Errorf("%s: trigger metadata %s: %v is not a string (KEDA wants strings)", d.file, k, v)
				}
				md[k] = s
			}
			out = append(out, md)
		}
	}
	return out
}

// helpFlags returns the flags of `corral SUB...` as its --help lists them,
// each with whether it takes a value (Go's flag package prints a type word
// after every flag but a boolean one).
func helpFlags(t *testing.T, sub ...string) map[string]bool {
	t.Helper()
	_, stderr, code := corral(t, append(slices.Clone(sub), "--help")...)
	if code != 0 {
		t.Fatalf("corral %s --help: exit %d\n%s", strings.Join(sub, " "), code, stderr)
	}
	flags := map[string]bool{}
	re := regexp.MustCompile(`(?m)^  -([A-Za-z0-9][A-Za-z0-9_-]*)( \S+)?(\t|$)`)
	for _, m := range re.FindAllStringSubmatch(stderr, -1) {
		flags[m[1]] = m[2] != ""
	}
	if len(flags) == 0 {
		t.Fatalf("corral %s --help lists no flags:\n%s", strings.Join(sub, " "), stderr)
	}
	return flags
}

// checkArgs validates the arguments of `corral SUB...` with corral's own
// command line: it runs `corral SUB... ARGS... --help`, which parses every
// flag in ARGS in order (an unknown flag or an invalid value makes it exit 1)
// and reaches the final --help, exiting 0, only when all of them parsed. It
// returns the positional arguments among ARGS, told apart with the flags
// --help lists.
func checkArgs(t *testing.T, where string, sub, args []string) (positional []string) {
	t.Helper()
	cmdline := append(append(slices.Clone(sub), args...), "--help")
	_, stderr, code := corral(t, cmdline...)
	if code != 0 {
		lines := strings.SplitN(stderr, "\n", 4)
		t.Errorf("%s: corral %s does not accept %q (exit %d): %s",
			where, strings.Join(sub, " "), args, code, strings.Join(lines[:min(3, len(lines))], " | "))
		return nil
	}
	flags := helpFlags(t, sub...)
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			return append(positional, args[i+1:]...)
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			positional = append(positional, a)
			continue
		}
		name, _, inline := strings.Cut(strings.TrimLeft(a, "-"), "=")
		takesValue, ok := flags[name]
		if !ok {
			t.Errorf("%s: flag %s is not in corral %s --help", where, a, strings.Join(sub, " "))
			continue
		}
		if takesValue && !inline {
			i++
		}
	}
	return positional
}

// flagValue returns the value of the last --name in args (corral's flags
// take the last one), or "".
func flagValue(args []string, name string) string {
	v := ""
	for i, a := range args {
		n, val, inline := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "-") || n != name {
			continue
		}
		if inline {
			v = val
		} else if i+1 < len(args) {
			v = args[i+1]
		}
	}
	return v
}

// workerConfig builds the worker's config from worker args as corral does
// (flags over the config file), reading the config file from configFile
// instead of the path in args. The args must have passed checkArgs.
func workerConfig(t *testing.T, where string, args []string, configFile string) worker.Config {
	t.Helper()
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	wf := addWorkerFlags(fs)
	takes := helpFlags(t, "worker")
	// Keep the flags addWorkerFlags defines (the others, like --nats, are
	// cmdWorker's own), with their values.
	var kept []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		name, _, inline := strings.Cut(strings.TrimLeft(a, "-"), "=")
		n := 1
		if takes[name] && !inline {
			n = 2
		}
		if fs.Lookup(name) != nil && strings.HasPrefix(a, "-") {
			kv := args[i:min(i+n, len(args))]
			if name == "config" {
				kv = []string{"--config", configFile}
			}
			kept = append(kept, kv...)
		}
		i += n - 1
	}
	if err := fs.Parse(kept); err != nil {
		t.Fatalf("%s: %v", where, err)
	}
	cfg, err := wf.workerConfig(zap.NewNop())
	if err != nil {
		t.Fatalf("%s: worker config: %v", where, err)
	}
	return cfg
}

// checkQueues checks the queues of a worker config against the rest of
// deploy/: every queue keeps its results under prefixes the NATS user
// "worker" may publish to (else a job's reply_to could name a subject the
// server refuses, and its result would never arrive).
func checkQueues(t *testing.T, where string, cfg worker.Config) {
	t.Helper()
	opts := loadNATSConfig(t)
	var allow []string
	for _, u := range opts.Users {
		if u.Username == "worker" && u.Permissions != nil && u.Permissions.Publish != nil {
			allow = u.Permissions.Publish.Allow
		}
	}
	for _, q := range cfg.Queues {
		if len(q.ReplyPrefixes) == 0 {
			t.Errorf("%s: queue %s has no reply_prefixes: a job may ask for any reply_to, and the NATS user worker may publish only under its allowed subjects", where, q.Name)
		}
		for _, p := range q.ReplyPrefixes {
			// A prefix allows every subject below it, and itself unless it
			// ends with a dot (jobs.ReplySubjectAllowed).
			base := strings.TrimSuffix(p, ".")
			subjects := []string{base + ".>"}
			if base == p {
				subjects = append(subjects, base)
			}
			for _, subj := range subjects {
				if !slices.ContainsFunc(allow, func(a string) bool { return server.SubjectMatchesFilter(subj, a) }) {
					t.Errorf("%s: queue %s: reply prefix %q allows results on %s, which the NATS user worker may not publish to (corral-accounts.conf)", where, q.Name, p, subj)
				}
			}
		}
	}
}

// --- systemd -------------------------------------------------------------

// unitFile is a parsed systemd unit: section → key → values, in order.
type unitFile map[string]map[string][]string

// parseUnit reads a unit file as systemd does for the syntax used here:
// [Section], Key=Value, comments (# ;), a backslash continuing a line.
func parseUnit(t *testing.T, path string) unitFile {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	u := unitFile{}
	section := ""
	cont := ""
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if cont == "" && (line == "" || line[0] == '#' || line[0] == ';') {
			continue
		}
		if strings.HasSuffix(line, "\\") {
			cont += strings.TrimSuffix(line, "\\") + " "
			continue
		}
		line, cont = cont+line, ""
		if strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]") {
			section = line[1 : len(line)-1]
			if u[section] == nil {
				u[section] = map[string][]string{}
			}
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || section == "" {
			t.Fatalf("%s: not a Key=Value line in a section: %q", path, line)
		}
		k = strings.TrimSpace(k)
		u[section][k] = append(u[section][k], strings.TrimSpace(v))
	}
	return u
}

// one returns the single value of key in section, or fails.
func (u unitFile) one(t *testing.T, section, key string) string {
	t.Helper()
	v := u[section][key]
	if len(v) != 1 {
		t.Fatalf("[%s] %s: %d values, want one", section, key, len(v))
	}
	return v[0]
}

// parseEnvFile reads an EnvironmentFile of KEY=value lines.
func parseEnvFile(t *testing.T, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("%s: not KEY=value: %q", path, line)
		}
		env[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	return env
}

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// systemdArgv splits an Exec*= command line as systemd does, then
// substitutes the environment: a word that is exactly $NAME becomes the
// value's whitespace-separated words, ${NAME} anywhere becomes the value,
// $$ a dollar. Specifiers (%) and command prefixes (-@:+!) are not used by
// the unit and are refused here.
func systemdArgv(line string, env map[string]string) ([]string, error) {
	if line != "" && strings.ContainsRune("-@:+!", rune(line[0])) {
		return nil, fmt.Errorf("command prefix %q not supported by this test", line[0])
	}
	var words []string
	var cur strings.Builder
	inWord := false
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case c == ' ' || c == '\t':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		case c == '"' || c == '\'':
			j := strings.IndexByte(line[i+1:], c)
			if j < 0 {
				return nil, fmt.Errorf("unterminated quote in %q", line)
			}
			q := line[i+1 : i+1+j]
			if strings.ContainsRune(q, '\\') {
				return nil, fmt.Errorf("backslash in a quoted word not supported by this test: %q", q)
			}
			cur.WriteString(q)
			inWord = true
			i += j + 1
		case c == '\\':
			return nil, fmt.Errorf("backslash not supported by this test: %q", line)
		case c == '%':
			if i+1 < len(line) && line[i+1] == '%' {
				cur.WriteByte('%')
				i++
				inWord = true
				continue
			}
			return nil, fmt.Errorf("specifier %%%c not supported by this test", line[i+1])
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	var argv []string
	braced := regexp.MustCompile(`\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)
	for _, w := range words {
		if strings.HasPrefix(w, "$") && envName.MatchString(w[1:]) {
			argv = append(argv, strings.Fields(env[w[1:]])...)
			continue
		}
		argv = append(argv, braced.ReplaceAllStringFunc(w, func(m string) string {
			if m == "$$" {
				return "$"
			}
			return env[m[2:len(m)-1]]
		}))
	}
	return argv, nil
}

// parseTimespan reads a systemd time span such as 90s, 10min or 1min 30s.
func parseTimespan(t *testing.T, s string) time.Duration {
	t.Helper()
	var total time.Duration
	re := regexp.MustCompile(`^(\d+)\s*(ms|s|sec|min|m|h)?$`)
	for _, part := range strings.Fields(s) {
		m := re.FindStringSubmatch(part)
		if m == nil {
			t.Fatalf("time span %q: cannot read %q", s, part)
		}
		n, _ := strconv.Atoi(m[1])
		unit := map[string]time.Duration{"": time.Second, "s": time.Second, "sec": time.Second, "ms": time.Millisecond, "min": time.Minute, "m": time.Minute, "h": time.Hour}[m[2]]
		total += time.Duration(n) * unit
	}
	return total
}

// corralBin is where the unit expects the corral binary.
const corralBin = "/usr/local/bin/corral"

// corralSub splits a corral command line after the binary into its
// subcommand path and its arguments.
func corralSub(args []string) (sub, rest []string) {
	if len(args) >= 2 && args[0] == "image" {
		return args[:2], args[2:]
	}
	if len(args) == 0 {
		return nil, nil
	}
	return args[:1], args[1:]
}

// TestDeploySystemdUnit checks deploy/systemd/corral-worker.service: its
// settings, every corral command line in it (with the example environment
// file substituted as systemd would) against corral's own flag parsing, the
// worker config it points at, the image it builds before the worker starts,
// and the whole unit with systemd-analyze verify.
func TestDeploySystemdUnit(t *testing.T) {
	unitPath := deployPath("systemd", "corral-worker.service")
	u := parseUnit(t, unitPath)
	env := parseEnvFile(t, deployPath("systemd", "corral-worker.env"))

	for key, want := range map[string]string{
		"Delegate": "yes", "KillMode": "mixed", "Restart": "on-failure", "User": "root",
		"EnvironmentFile": "/etc/corral/corral-worker.env", "NoNewPrivileges": "yes",
	} {
		if got := u.one(t, "Service", key); got != want {
			t.Errorf("[Service] %s=%s, want %s", key, got, want)
		}
	}
	if n, err := strconv.Atoi(u.one(t, "Service", "LimitNOFILE")); err != nil || n < 65536 {
		t.Errorf("LimitNOFILE=%s, want at least 65536", u.one(t, "Service", "LimitNOFILE"))
	}
	// Options that break the sandboxes' /proc, cgroups, loop devices or
	// namespaces, or the data directory's modes (the unit's comments).
	for _, key := range []string{"ProtectKernelTunables", "ProtectKernelLogs", "ProtectProc", "ProcSubset",
		"ProtectControlGroups", "PrivateDevices", "DeviceAllow", "DevicePolicy", "ProtectClock",
		"RestrictNamespaces", "CapabilityBoundingSet", "SystemCallFilter", "SystemCallArchitectures",
		"PrivateNetwork", "RestrictAddressFamilies", "UMask"} {
		if v, ok := u["Service"][key]; ok {
			t.Errorf("[Service] %s=%s would break corral's sandboxes (see the unit's comments)", key, v[0])
		}
	}

	argv, err := systemdArgv(u.one(t, "Service", "ExecStart"), env)
	if err != nil {
		t.Fatalf("ExecStart: %v", err)
	}
	if len(argv) < 2 || argv[0] != corralBin || argv[1] != "worker" {
		t.Fatalf("ExecStart runs %q, want %s worker ...", argv, corralBin)
	}
	args := argv[2:]
	if pos := checkArgs(t, "ExecStart", []string{"worker"}, args); len(pos) > 0 {
		t.Errorf("ExecStart: stray arguments %q", pos)
	}
	if c := flagValue(args, "config"); c != "/etc/corral/worker.json" {
		t.Errorf("ExecStart: --config %q, want /etc/corral/worker.json (deploy/systemd/worker.json installed)", c)
	}
	if flagValue(args, "metrics") == "" {
		t.Error("ExecStart: no --metrics: nothing to scrape")
	}
	cfg := workerConfig(t, "ExecStart", args, deployPath("systemd", "worker.json"))
	checkQueues(t, "deploy/systemd/worker.json", cfg)
	if stop := parseTimespan(t, u.one(t, "Service", "TimeoutStopSec")); stop <= cfg.Grace {
		t.Errorf("TimeoutStopSec=%v is not above --grace %v: systemd would kill jobs the worker is still letting finish", stop, cfg.Grace)
	}
	data := flagValue(args, "data")
	if data == "" {
		data = defaultDataDir
	}

	// ExecStartPre: corral commands, and the shell line that builds the
	// default image when it is missing, run with a stand-in corral that
	// records its arguments.
	built := map[string]bool{}
	for _, line := range u["Service"]["ExecStartPre"] {
		pre, err := systemdArgv(line, env)
		if err != nil {
			t.Fatalf("ExecStartPre: %v", err)
		}
		var calls [][]string
		switch {
		case len(pre) > 0 && pre[0] == corralBin:
			calls = [][]string{pre[1:]}
		case len(pre) == 3 && pre[0] == "/bin/sh" && pre[1] == "-c":
			calls = runWithStandIn(t, pre[2], env)
		default:
			t.Fatalf("ExecStartPre runs %q: neither corral nor /bin/sh -c", pre)
		}
		for _, call := range calls {
			sub, rest := corralSub(call)
			pos := checkArgs(t, "ExecStartPre "+strings.Join(call, " "), sub, rest)
			if len(sub) == 2 && (sub[1] == "default" || sub[1] == "build" || sub[1] == "busybox") {
				if d := flagValue(rest, "data"); d != data {
					t.Errorf("ExecStartPre builds into --data %q, the worker reads %q", d, data)
				}
				name := sub[1] // image default / busybox default to their own name
				if len(pos) > 0 {
					name = pos[0]
				}
				built[name] = true
			}
		}
	}
	for _, q := range cfg.Queues {
		img := orDefault(q.Image, "default")
		if !built[img] {
			t.Errorf("queue %s needs image %q, which no ExecStartPre builds (the worker would not start)", q.Name, img)
		}
	}

	verifyUnit(t, unitPath)
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// runWithStandIn runs a /bin/sh -c script of the unit with a stand-in for
// corral that records each call and answers `image inspect` with "missing",
// and returns the calls' arguments.
func runWithStandIn(t *testing.T, script string, env map[string]string) [][]string {
	t.Helper()
	sh := needTool(t, "sh")
	dir := t.TempDir()
	stub, log := filepath.Join(dir, "corral"), filepath.Join(dir, "calls")
	err := os.WriteFile(stub, []byte(`#!/bin/sh
for a in "$@"; do printf 'a:%s\n' "$a"; done >> "$STUB_LOG"
echo end >> "$STUB_LOG"
if [ "$1" = image ] && [ "$2" = inspect ]; then exit 1; fi
exit 0
`), 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(script, corralBin) {
		t.Fatalf("ExecStartPre script does not run %s: %q", corralBin, script)
	}
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, sh, "-c", strings.ReplaceAll(script, corralBin, stub))
	cmd.Env = append(os.Environ(), "STUB_LOG="+log)
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ExecStartPre script: %v\n%s", err, out)
	}
	b, err := os.ReadFile(log)
	if err != nil {
		t.Fatalf("ExecStartPre script ran no corral: %v", err)
	}
	var calls [][]string
	var cur []string
	for _, l := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		if l == "end" {
			calls, cur = append(calls, cur), nil
		} else {
			cur = append(cur, strings.TrimPrefix(l, "a:"))
		}
	}
	return calls
}

// verifyUnit runs systemd-analyze verify on a copy of the unit whose
// binary and environment file point at files that exist here. Any warning
// fails the test (an unknown key or a bad value is only a warning there).
func verifyUnit(t *testing.T, unitPath string) {
	t.Helper()
	sa := needTool(t, "systemd-analyze")
	dir := t.TempDir()
	bin := filepath.Join(dir, "corral")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	envFile, err := filepath.Abs(deployPath("systemd", "corral-worker.env"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(unitPath)
	if err != nil {
		t.Fatal(err)
	}
	unit := strings.ReplaceAll(string(b), corralBin, bin)
	unit = strings.ReplaceAll(unit, "/etc/corral/corral-worker.env", envFile)
	copyPath := filepath.Join(dir, filepath.Base(unitPath))
	if err := os.WriteFile(copyPath, []byte(unit), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, sa, "--man=no", "verify", copyPath).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// --- Kubernetes ----------------------------------------------------------

// k8sRef expands Kubernetes' $(NAME) references to earlier environment
// variables in a container's env, command and args ($$ is a dollar).
var k8sRef = regexp.MustCompile(`\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

func k8sExpand(s string, env map[string]string) string {
	return k8sRef.ReplaceAllStringFunc(s, func(m string) string {
		if m == "$$" {
			return "$"
		}
		if v, ok := env[m[2:len(m)-1]]; ok {
			return v
		}
		return m // Kubernetes leaves an unknown reference as it is
	})
}

// containerEnv resolves a container's env as the kubelet does, reading
// secretKeyRef and configMapKeyRef from the documents in deploy/.
func containerEnv(t *testing.T, docs []yamlDoc, ns string, c any) map[string]string {
	t.Helper()
	env := map[string]string{}
	for _, e := range digList(c, "env") {
		name := digStr(e, "name")
		switch {
		case dig(e, "valueFrom", "secretKeyRef") != nil:
			ref := digMap(e, "valueFrom", "secretKeyRef")
			d := findDoc(t, docs, "Secret", digStr(ref, "name"))
			if got := digStr(d.obj, "metadata", "namespace"); got != ns {
				t.Errorf("env %s: Secret %s is in namespace %q, the pod in %q", name, digStr(ref, "name"), got, ns)
			}
			v, ok := digMap(d.obj, "stringData")[digStr(ref, "key")].(string)
			if !ok {
				t.Errorf("env %s: Secret %s has no stringData key %q", name, digStr(ref, "name"), digStr(ref, "key"))
			}
			env[name] = v
		case dig(e, "valueFrom", "configMapKeyRef") != nil:
			ref := digMap(e, "valueFrom", "configMapKeyRef")
			d := findDoc(t, docs, "ConfigMap", digStr(ref, "name"))
			env[name] = digStr(d.obj, "data", digStr(ref, "key"))
		default:
			env[name] = k8sExpand(digStr(e, "value"), env)
		}
	}
	return env
}

// namedContainer returns the container called name in list, or fails.
func namedContainer(t *testing.T, list []any, name string) any {
	t.Helper()
	for _, c := range list {
		if digStr(c, "name") == name {
			return c
		}
	}
	t.Fatalf("no container %q", name)
	return nil
}

// volumeAt returns the volume a container mounts at path, or nil.
func volumeAt(pod, c any, path string) map[string]any {
	for _, m := range digList(c, "volumeMounts") {
		if digStr(m, "mountPath") != path {
			continue
		}
		for _, v := range digList(pod, "volumes") {
			if digStr(v, "name") == digStr(m, "name") {
				return v.(map[string]any)
			}
		}
	}
	return nil
}

// labelsMatch reports whether every selector label is among labels.
func labelsMatch(selector, labels map[string]any) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// TestDeployKubernetes checks deploy/kubernetes: every document is a
// Kubernetes object in corral's namespace; the worker container's command
// line, with its env resolved from the Secret, passes corral's own flag
// parsing and its config file (from the ConfigMap) loads; the init
// container builds every image the queues need into the data volume; the
// grace period, probes, metrics port, Service, PodMonitor and KEDA
// ScaledObject agree with the worker and with corral's stream and consumer
// names.
func TestDeployKubernetes(t *testing.T) {
	docs := yamlDocs(t, deployPath("kubernetes"))
	ns := ""
	for _, d := range docs {
		for _, f := range []string{"apiVersion", "kind"} {
			if digStr(d.obj, f) == "" {
				t.Errorf("%s: a document without %s", d.file, f)
			}
		}
		if digStr(d.obj, "metadata", "name") == "" {
			t.Errorf("%s: a %s without metadata.name", d.file, digStr(d.obj, "kind"))
		}
		if digStr(d.obj, "kind") == "Namespace" {
			if ns != "" {
				t.Errorf("%s: a second Namespace", d.file)
			}
			ns = digStr(d.obj, "metadata", "name")
			if digStr(d.obj, "metadata", "labels", "pod-security.kubernetes.io/enforce") != "privileged" {
				t.Errorf("%s: namespace %s does not allow privileged pods (pod-security.kubernetes.io/enforce)", d.file, ns)
			}
		}
	}
	if ns == "" {
		t.Fatal("no Namespace in deploy/kubernetes")
	}
	for _, d := range docs {
		if k := digStr(d.obj, "kind"); k != "Namespace" && digStr(d.obj, "metadata", "namespace") != ns {
			t.Errorf("%s: %s %s is not in namespace %s", d.file, k, digStr(d.obj, "metadata", "name"), ns)
		}
	}

	dep := findDoc(t, docs, "Deployment", "corral-worker")
	pod := dig(dep.obj, "spec", "template", "spec")
	podLabels := digMap(dep.obj, "spec", "template", "metadata", "labels")
	if !labelsMatch(digMap(dep.obj, "spec", "selector", "matchLabels"), podLabels) {
		t.Error("Deployment: selector does not match the pod labels")
	}
	anti := dig(pod, "affinity", "podAntiAffinity", "requiredDuringSchedulingIgnoredDuringExecution", 0)
	if digStr(anti, "topologyKey") != "kubernetes.io/hostname" || !labelsMatch(digMap(anti, "labelSelector", "matchLabels"), podLabels) {
		t.Error("Deployment: no required anti-affinity keeping one worker per node (sandbox slots map to fixed host uids)")
	}

	// The worker container: /bin/sh prepares the cgroups, then execs
	// corral worker with the container's args.
	wc := namedContainer(t, digList(pod, "containers"), "worker")
	command := strList(t, "worker command", digList(wc, "command"))
	if len(command) != 4 || command[0] != "/bin/sh" || command[1] != "-c" {
		t.Fatalf("worker command %q, want /bin/sh -c SCRIPT NAME", command)
	}
	script := command[2]
	lines := strings.Split(strings.TrimSpace(script), "\n")
	if last := strings.TrimSpace(lines[len(lines)-1]); last != `exec corral worker "$@"` {
		t.Errorf("worker script ends with %q, want exec corral worker \"$@\" (the args below)", last)
	}
	if out, err := exec.Command(needTool(t, "sh"), "-n", "-c", script).CombinedOutput(); err != nil {
		t.Errorf("worker script: sh -n: %v\n%s", err, out)
	}
	env := containerEnv(t, docs, ns, wc)
	var args []string
	for _, a := range strList(t, "worker args", digList(wc, "args")) {
		a = k8sExpand(a, env)
		if strings.Contains(a, "$(") {
			t.Errorf("worker args: unresolved reference in %q", a)
		}
		args = append(args, a)
	}
	if pos := checkArgs(t, "worker container", []string{"worker"}, args); len(pos) > 0 {
		t.Errorf("worker container: stray arguments %q", pos)
	}
	if u := flagValue(args, "nats"); !strings.HasPrefix(u, "nats://worker:") {
		t.Errorf("worker --nats %q: want the NATS user worker (deploy/nats/corral-accounts.conf)", u)
	}
	if dig(wc, "securityContext", "privileged") != true {
		t.Error("worker container is not privileged: corral cannot make namespaces, mounts and cgroups")
	}
	if volumeAt(pod, wc, "/dev") == nil {
		t.Error("worker container does not mount the host's /dev: loop devices made after it started would be missing")
	}

	// Its config file, from the ConfigMap mounted where --config points.
	config := flagValue(args, "config")
	cv := volumeAt(pod, wc, filepath.Dir(config))
	if cv == nil || digStr(cv, "configMap", "name") == "" {
		t.Fatalf("worker --config %s: no ConfigMap mounted at %s", config, filepath.Dir(config))
	}
	cm := findDoc(t, docs, "ConfigMap", digStr(cv, "configMap", "name"))
	configFile := filepath.Join(t.TempDir(), "worker.json")
	if err := os.WriteFile(configFile, []byte(digStr(cm.obj, "data", filepath.Base(config))), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := workerConfig(t, "worker container", args, configFile)
	checkQueues(t, "ConfigMap "+digStr(cm.obj, "metadata", "name"), cfg)

	grace, ok := dig(pod, "terminationGracePeriodSeconds").(int)
	if !ok || time.Duration(grace)*time.Second <= cfg.Grace {
		t.Errorf("terminationGracePeriodSeconds %v is not above --grace %v: the kubelet would kill jobs the worker is still letting finish", dig(pod, "terminationGracePeriodSeconds"), cfg.Grace)
	}

	// The data volume and the images built into it before the worker starts.
	data := cmpFlag(args, "data", defaultDataDir)
	dv := volumeAt(pod, wc, data)
	if dv == nil || (dig(dv, "emptyDir") == nil && dig(dv, "hostPath") == nil) {
		t.Fatalf("worker --data %s: no emptyDir or hostPath volume mounted there", data)
	}
	built := map[string]bool{}
	for _, ic := range digList(pod, "initContainers") {
		argv := append(strList(t, "init command", digList(ic, "command")), strList(t, "init args", digList(ic, "args"))...)
		if len(argv) < 3 || argv[0] != "corral" || argv[1] != "image" {
			continue
		}
		sub, rest := corralSub(argv[1:])
		pos := checkArgs(t, "init container "+digStr(ic, "name"), sub, rest)
		if d := cmpFlag(rest, "data", defaultDataDir); d != data || volumeAt(pod, ic, d) == nil || digStr(volumeAt(pod, ic, d), "name") != digStr(dv, "name") {
			t.Errorf("init container %s builds into %s, not the worker's data volume at %s", digStr(ic, "name"), d, data)
		}
		name := sub[1]
		if len(pos) > 0 {
			name = pos[0]
		}
		built[name] = true
	}
	for _, q := range cfg.Queues {
		if img := orDefault(q.Image, "default"); !built[img] {
			t.Errorf("queue %s needs image %q, which no init container builds (the worker would not start)", q.Name, img)
		}
	}

	// Metrics: the port --metrics listens on, the probes, the Service and
	// the PodMonitor.
	metrics := flagValue(args, "metrics")
	_, portStr, err := net.SplitHostPort(metrics)
	if err != nil {
		t.Fatalf("worker --metrics %q: %v", metrics, err)
	}
	port, _ := strconv.Atoi(portStr)
	portName := ""
	for _, p := range digList(wc, "ports") {
		if dig(p, "containerPort") == port {
			portName = digStr(p, "name")
		}
	}
	if portName == "" {
		t.Fatalf("worker container declares no port %d (--metrics %s)", port, metrics)
	}
	probePort := func(p any) bool { return p == portName || p == port }
	for probe, path := range map[string]string{"readinessProbe": "/readyz", "livenessProbe": "/healthz"} {
		if digStr(wc, probe, "httpGet", "path") != path || !probePort(dig(wc, probe, "httpGet", "port")) {
			t.Errorf("worker %s: want httpGet %s on port %s", probe, path, portName)
		}
	}
	for _, d := range docs {
		switch digStr(d.obj, "kind") {
		case "Service":
			if !labelsMatch(digMap(d.obj, "spec", "selector"), podLabels) {
				t.Errorf("%s: Service %s does not select the worker pods", d.file, digStr(d.obj, "metadata", "name"))
			}
			if !slices.ContainsFunc(digList(d.obj, "spec", "ports"), func(p any) bool { return probePort(dig(p, "targetPort")) }) {
				t.Errorf("%s: Service %s does not target the metrics port", d.file, digStr(d.obj, "metadata", "name"))
			}
		case "PodMonitor":
			if !labelsMatch(digMap(d.obj, "spec", "selector", "matchLabels"), podLabels) {
				t.Errorf("%s: PodMonitor does not select the worker pods", d.file)
			}
			if digStr(d.obj, "spec", "podMetricsEndpoints", 0, "port") != portName {
				t.Errorf("%s: PodMonitor does not scrape port %s", d.file, portName)
			}
		}
	}

	// KEDA: scales this Deployment on the consumers of the queues it serves.
	so := findDoc(t, docs, "ScaledObject", "corral-worker")
	ref := digMap(so.obj, "spec", "scaleTargetRef")
	if orDefault(digStr(ref, "kind"), "Deployment") != "Deployment" || digStr(ref, "name") != digStr(dep.obj, "metadata", "name") {
		t.Errorf("ScaledObject scales %v, want Deployment %s", ref, digStr(dep.obj, "metadata", "name"))
	}
	minR, _ := dig(so.obj, "spec", "minReplicaCount").(int)
	maxR, _ := dig(so.obj, "spec", "maxReplicaCount").(int)
	if maxR < 1 || minR > maxR {
		t.Errorf("ScaledObject replicas %d to %d", minR, maxR)
	}
	want := map[string]bool{}
	for _, q := range cfg.Queues {
		want[jobs.ConsumerName(q.Name)] = true
	}
	triggers := kedaTriggers(t)
	if len(triggers) != len(digList(so.obj, "spec", "triggers")) {
		t.Error("ScaledObject has triggers other than nats-jetstream")
	}
	for _, md := range triggers {
		if md["stream"] != jobs.StreamJobs {
			t.Errorf("KEDA trigger: stream %q, want %s", md["stream"], jobs.StreamJobs)
		}
		if !want[md["consumer"]] {
			t.Errorf("KEDA trigger: consumer %q is not one of the worker's queues' (%v)", md["consumer"], want)
		}
		delete(want, md["consumer"])
		if md["account"] != natsAccount {
			t.Errorf("KEDA trigger: account %q, want %s (deploy/nats/corral-accounts.conf)", md["account"], natsAccount)
		}
		if n, err := strconv.Atoi(md["lagThreshold"]); err != nil || n < 1 {
			t.Errorf("KEDA trigger: lagThreshold %q", md["lagThreshold"])
		}
		if !strings.HasSuffix(md["natsServerMonitoringEndpoint"], ":8222") || strings.Contains(md["natsServerMonitoringEndpoint"], "/") {
			t.Errorf("KEDA trigger: natsServerMonitoringEndpoint %q, want HOST:8222", md["natsServerMonitoringEndpoint"])
		}
	}
	for c := range want {
		t.Errorf("KEDA: no trigger for consumer %s: its queue's jobs would not scale the workers", c)
	}
}

// cmpFlag returns the value of --name in args, or def.
func cmpFlag(args []string, name, def string) string {
	return orDefault(flagValue(args, name), def)
}

// TestDeployNATSHelmValues checks deploy/nats/helm-values.yaml against the
// accounts file it loads: the include, and an environment variable from a
// Secret for every password the accounts file reads.
func TestDeployNATSHelmValues(t *testing.T) {
	docs := yamlDocs(t, deployPath("nats"))
	if len(docs) != 1 {
		t.Fatalf("%d YAML documents in deploy/nats, want helm-values.yaml's one", len(docs))
	}
	v := docs[0].obj
	if dig(v, "config", "jetstream", "enabled") != true {
		t.Error("helm values: JetStream is not enabled")
	}
	if dig(v, "config", "monitor", "port") != 8222 {
		t.Error("helm values: monitoring is not on port 8222 (KEDA reads it)")
	}
	included := false
	for k, val := range digMap(v, "config", "merge") {
		if strings.HasSuffix(k, "$include") && val == "corral-accounts.conf" {
			included = true
		}
	}
	if !included {
		t.Error("helm values: config.merge does not include corral-accounts.conf")
	}
	accounts, err := os.ReadFile(deployPath("nats", "corral-accounts.conf"))
	if err != nil {
		t.Fatal(err)
	}
	vars := regexp.MustCompile(`(?m)^[^#\n]*:\s*\$([A-Z_][A-Z0-9_]*)`).FindAllStringSubmatch(string(accounts), -1)
	if len(vars) == 0 {
		t.Fatal("corral-accounts.conf reads no password from the environment")
	}
	for _, m := range vars {
		if digStr(v, "container", "env", m[1], "valueFrom", "secretKeyRef", "key") == "" {
			t.Errorf("helm values: container.env has no %s from a Secret (corral-accounts.conf reads it)", m[1])
		}
	}
}

// --- Grafana -------------------------------------------------------------

// workerMetricNames are the metrics the worker exports (worker/metrics.go),
// each with its type. TestDashboardMetricsExist in the worker package checks
// the dashboard against the real registry.
var workerMetricNames = map[string]string{
	"corral_jobs_total":                   "counter",
	"corral_job_queue_seconds":            "histogram",
	"corral_job_run_seconds":              "histogram",
	"corral_job_cpu_seconds_total":        "counter",
	"corral_jobs_handed_back_total":       "counter",
	"corral_jobs_dead_total":              "counter",
	"corral_fetch_errors_total":           "counter",
	"corral_slots":                        "gauge",
	"corral_slots_busy":                   "gauge",
	"corral_sandboxes":                    "gauge",
	"corral_sandboxes_created_total":      "counter",
	"corral_sandbox_create_seconds_total": "counter",
	"corral_sandbox_resets_total":         "counter",
	"corral_sandbox_reset_seconds_total":  "counter",
	"corral_worker_ready":                 "gauge",
	"corral_build_info":                   "gauge",
}

// metricType returns the type of a series name as PromQL sees it: a
// histogram's _bucket, _sum and _count series are counters.
func metricType(name string) (string, bool) {
	if typ, ok := workerMetricNames[name]; ok {
		return typ, typ != "histogram"
	}
	for _, s := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, s); ok && workerMetricNames[base] == "histogram" {
			return "counter", true
		}
	}
	return "", false
}

// TestDeployGrafanaDashboard checks deploy/grafana/corral-dashboard.json:
// an importable dashboard whose every query goes to the ${DS_PROMETHEUS}
// input, names only metrics the worker exports, applies rate and increase
// only to counters, takes quantiles from _bucket series aggregated by le,
// and has balanced brackets.
func TestDeployGrafanaDashboard(t *testing.T) {
	b, err := os.ReadFile(deployPath("grafana", "corral-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash map[string]any
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("corral-dashboard.json: %v", err)
	}
	if v, _ := dig(dash, "schemaVersion").(float64); v < 36 {
		t.Errorf("schemaVersion %v, want 36 or later", dig(dash, "schemaVersion"))
	}
	if digStr(dash, "title") == "" || digStr(dash, "uid") == "" {
		t.Error("dashboard without title or uid")
	}
	if digStr(dash, "__inputs", 0, "name") != "DS_PROMETHEUS" || digStr(dash, "__inputs", 0, "pluginId") != "prometheus" {
		t.Error("dashboard: no DS_PROMETHEUS datasource input")
	}
	// The same scan as the worker package's test: every corral_ name in the
	// file must be a worker metric.
	for _, n := range regexp.MustCompile(`\bcorral_[a-z_]+`).FindAllString(string(b), -1) {
		if _, ok := metricType(n); !ok {
			t.Errorf("dashboard uses %s, which the worker does not export", n)
		}
	}

	var exprs []string
	ids := map[float64]bool{}
	var walkPanels func(list []any)
	walkPanels = func(list []any) {
		for _, p := range list {
			id, _ := dig(p, "id").(float64)
			if ids[id] {
				t.Errorf("panel id %v used twice", id)
			}
			ids[id] = true
			if dig(p, "gridPos", "w") == nil || dig(p, "gridPos", "h") == nil {
				t.Errorf("panel %q has no gridPos", digStr(p, "title"))
			}
			walkPanels(digList(p, "panels"))
			if digStr(p, "type") == "row" {
				continue
			}
			if digStr(p, "datasource", "uid") != "${DS_PROMETHEUS}" {
				t.Errorf("panel %q: datasource %v, want uid ${DS_PROMETHEUS}", digStr(p, "title"), dig(p, "datasource"))
			}
			targets := digList(p, "targets")
			if len(targets) == 0 {
				t.Errorf("panel %q has no query", digStr(p, "title"))
			}
			for _, tg := range targets {
				if digStr(tg, "datasource", "uid") != "${DS_PROMETHEUS}" {
					t.Errorf("panel %q: a query's datasource %v", digStr(p, "title"), dig(tg, "datasource"))
				}
				exprs = append(exprs, digStr(tg, "expr"))
			}
		}
	}
	walkPanels(digList(dash, "panels"))
	for _, v := range digList(dash, "templating", "list") {
		if digStr(v, "datasource", "uid") != "${DS_PROMETHEUS}" {
			t.Errorf("variable %s: datasource %v", digStr(v, "name"), dig(v, "datasource"))
		}
	}

	rateOf := regexp.MustCompile(`\b(rate|irate|increase)\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)`)
	quantile := regexp.MustCompile(`histogram_quantile\(\s*[0-9.]+\s*,\s*sum\s+by\s*\(([^)]*)\)\s*\(\s*rate\(\s*([a-z_]+)`)
	used := map[string]bool{}
	for _, e := range exprs {
		if e == "" {
			t.Error("an empty query")
			continue
		}
		if !balanced(e) {
			t.Errorf("unbalanced brackets: %s", e)
		}
		for _, m := range rateOf.FindAllStringSubmatch(e, -1) {
			typ, known := metricType(m[2])
			if !known {
				// Not corral's (go_*, process_*): counters end in _total.
				typ = map[bool]string{true: "counter"}[strings.HasSuffix(m[2], "_total")]
			}
			if typ != "counter" {
				t.Errorf("%s of %s, which is not a counter: %s", m[1], m[2], e)
			}
		}
		if strings.Contains(e, "histogram_quantile") {
			m := quantile.FindStringSubmatch(e)
			if m == nil || !strings.HasSuffix(m[2], "_bucket") || !slices.Contains(strings.Fields(strings.ReplaceAll(m[1], ",", " ")), "le") {
				t.Errorf("histogram_quantile needs sum by (le) (rate(..._bucket[...])): %s", e)
			}
		}
		for _, n := range regexp.MustCompile(`\bcorral_[a-z_]+`).FindAllString(e, -1) {
			base := n
			for _, s := range []string{"_bucket", "_sum", "_count"} {
				if b, ok := strings.CutSuffix(n, s); ok && workerMetricNames[b] == "histogram" {
					base = b
				}
			}
			used[base] = true
		}
	}
	// What the dashboard is for: every job, slot and sandbox metric shows.
	for n := range workerMetricNames {
		if !used[n] {
			t.Errorf("the dashboard does not show %s", n)
		}
	}
}

// balanced reports whether (), [] and {} nest properly in a PromQL
// expression, ignoring quoted strings.
func balanced(e string) bool {
	var stack []byte
	pair := map[byte]byte{')': '(', ']': '[', '}': '{'}
	inQuote := byte(0)
	for i := 0; i < len(e); i++ {
		c := e[i]
		switch {
		case inQuote != 0:
			if c == '\\' {
				i++
			} else if c == inQuote {
				inQuote = 0
			}
		case c == '"' || c == '\'' || c == '`':
			inQuote = c
		case c == '(' || c == '[' || c == '{':
			stack = append(stack, c)
		case pair[c] != 0:
			if len(stack) == 0 || stack[len(stack)-1] != pair[c] {
				return false
			}
			stack = stack[:len(stack)-1]
		}
	}
	return len(stack) == 0 && inQuote == 0
}
