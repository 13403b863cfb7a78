package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/corralhq/corral/isolate"
	"github.com/corralhq/corral/jobs"
	"github.com/corralhq/corral/netpool"
	"github.com/corralhq/corral/rootfs"
	"github.com/corralhq/corral/worker"
)

// workerFlags are the flags `worker` and `up` share.
type workerFlags struct {
	data    *string
	queues  listFlag
	slots   *int
	spare   *int
	image   *string
	config  *string
	warm    listFlag
	grace   *time.Duration
	logJSON *bool
	verbose *bool
	// egress networking
	egress       *bool
	workerID     *string
	egressSubnet *string
	egressDeny   listFlag
	dns          listFlag
	egressRate   *string
	egressDown   *string
	warmEgress   *int
	goProcs      *int
	freshLayers  *bool
	keepNetNS    *bool
	metrics      *string
}

func addWorkerFlags(fs *flag.FlagSet) *workerFlags {
	wf := &workerFlags{}
	wf.data = fs.String("data", defaultDataDir, "data directory: images, mount points (and, for up, the JetStream store)")
	fs.Var(&wf.queues, "queue", "queue to serve (repeatable; default: the config file's queues, else \"default\")")
	wf.slots = fs.Int("slots", 0, "jobs run at once, each in a warm sandbox (default: one per CPU)")
	wf.spare = fs.Int("spare", 0, "warm sandboxes kept beyond the slots, so a job never waits for the last one's reset (default 1; -1: none)")
	wf.image = fs.String("image", "", "default image of the queues (default \"default\")")
	wf.config = fs.String("config", "", "worker config file (JSON; see docs/worker.md); flags override it")
	fs.Var(&wf.warm, "warm", "keep N warm sandboxes of another image, IMAGE=N (repeatable)")
	wf.grace = fs.Duration("grace", 30*time.Second, "on SIGTERM, how long running jobs may finish before they are handed back (a job on its last delivery runs to its end)")
	wf.logJSON = fs.Bool("log-json", false, "log JSON lines instead of text")
	wf.egress = fs.Bool("egress", false, "serve network \"egress\" jobs: a bridge, NAT and deny rules (needs net.ipv4.ip_forward=1; see docs/network.md)")
	wf.workerID = fs.String("worker-id", "0", "1-4 of [a-z0-9], unique per host: names this worker's bridge, veths and nftables tables, and picks its /24")
	wf.egressSubnet = fs.String("egress-subnet", "", "subnet holding one /24 per worker (default 10.213.0.0/16)")
	fs.Var(&wf.egressDeny, "egress-deny", "CIDR denied to egress jobs, replacing the default private ranges (repeatable; \"none\" for none)")
	fs.Var(&wf.dns, "dns", "DNS server written into the sandboxes' /etc/resolv.conf (repeatable)")
	wf.warmEgress = fs.Int("warm-egress", 0, "with --egress, keep N warm sandboxes with their network attached (egress jobs then pay no network setup)")
	wf.egressRate = fs.String("egress-rate", "", "per-sandbox upload rate limit in bits/s, e.g. 10M (default: none)")
	wf.egressDown = fs.String("egress-download-rate", "", "per-sandbox download rate limit in bits/s, e.g. 50M (default: none)")
	wf.goProcs = fs.Int("go-procs", 0, "threads running this process's Go code at once (GOMAXPROCS; default: one per 4 slots, at most one per CPU; the GOMAXPROCS environment variable wins). The jobs run in their sandboxes and do not need them")
	wf.keepNetNS = fs.Bool("keep-netns", false, "keep each sandbox's network namespace across jobs, even after a job that made an AF_INET or AF_INET6 socket (default: the next job gets a new one, so it cannot read the last one's traffic counters; that costs about a millisecond per such job, see docs/sandbox.md)")
	wf.freshLayers = fs.Bool("fresh-layers", false, "build a new writable layer after every job, even one that changed no file in it (default: such a layer, checked inode by inode, serves the next job, and its IPC namespace too after a job without System V IPC calls; see docs/sandbox.md)")
	wf.metrics = fs.String("metrics", "", "serve Prometheus metrics on /metrics, and /healthz and /readyz, at this address, e.g. :9464 (default: off; see docs/worker.md)")
	wf.verbose = fs.Bool("v", false, "log each sandbox and more")
	return wf
}

// goProcs is the worker process's GOMAXPROCS for slots job slots: its Go
// code (the NATS client and, embedded, server, JSON, output capture) grows
// with the jobs in flight, not with the machine, and the scheduler's spare
// threads (spinning, hand-offs between them) take CPU from the jobs. On 2
// vCPUs with 2 slots, one thread instead of two saved 7-8 thousand context
// switches per 1000 jobs and gave 2 % more jobs/s (docs/benchmarks.md).
func goProcs(flag, slots int) int {
	if flag > 0 {
		return flag
	}
	return max(1, min((slots+3)/4, runtime.NumCPU()))
}

// fileConfig is the worker's JSON config file.
type fileConfig struct {
	Queues []struct {
		Name          string      `json:"name"`
		Image         string      `json:"image"`
		Defaults      jobs.Limits `json:"defaults"`
		Max           jobs.Limits `json:"max"`
		Seccomp       string      `json:"seccomp"`
		ReplyPrefixes []string    `json:"reply_prefixes"`
	} `json:"queues"`
	Slots int            `json:"slots"`
	Spare int            `json:"spare"`
	Warm  map[string]int `json:"warm"`
	// FreshLayers: a new writable layer after every job (--fresh-layers).
	FreshLayers bool `json:"fresh_layers"`
	// KeepNetNS: one network namespace per sandbox for all its jobs
	// (--keep-netns).
	KeepNetNS bool `json:"keep_netns"`
	// Consumer settings of every queue's consumer (used when the worker
	// creates it): ack_wait_ms, max_deliver, max_ack_pending.
	Consumer struct {
		AckWaitMs     int64 `json:"ack_wait_ms"`
		MaxDeliver    int   `json:"max_deliver"`
		MaxAckPending int   `json:"max_ack_pending"`
	} `json:"consumer"`
	// Streams: replicas, results_max_age_ms.
	Streams struct {
		Replicas        int   `json:"replicas"`
		ResultsMaxAgeMs int64 `json:"results_max_age_ms"`
	} `json:"streams"`
}

// config builds the worker config from the file and the flags.
func (wf *workerFlags) workerConfig(log *zap.Logger) (worker.Config, error) {
	var cfg worker.Config
	if *wf.config != "" {
		b, err := os.ReadFile(*wf.config)
		if err != nil {
			return cfg, err
		}
		var fc fileConfig
		dec := json.NewDecoder(strings.NewReader(string(b)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&fc); err != nil {
			return cfg, fmt.Errorf("%s: %w", *wf.config, err)
		}
		for _, q := range fc.Queues {
			cfg.Queues = append(cfg.Queues, worker.QueueConfig{
				Name: q.Name, Image: q.Image, Defaults: q.Defaults, Max: q.Max,
				Seccomp: jobs.Seccomp(q.Seccomp), ReplyPrefixes: q.ReplyPrefixes,
			})
		}
		cfg.Slots = fc.Slots
		cfg.Spare = fc.Spare
		cfg.Warm = fc.Warm
		cfg.Pool.FreshLayers = fc.FreshLayers
		cfg.Pool.KeepNetNS = fc.KeepNetNS
		cfg.Consumer = worker.ConsumerConfig{
			AckWait:       time.Duration(fc.Consumer.AckWaitMs) * time.Millisecond,
			MaxDeliver:    fc.Consumer.MaxDeliver,
			MaxAckPending: fc.Consumer.MaxAckPending,
		}
		cfg.Streams = worker.StreamConfig{
			Replicas:      fc.Streams.Replicas,
			ResultsMaxAge: time.Duration(fc.Streams.ResultsMaxAgeMs) * time.Millisecond,
		}
	}
	if len(wf.queues) > 0 {
		byName := map[string]worker.QueueConfig{}
		for _, q := range cfg.Queues {
			byName[q.Name] = q
		}
		cfg.Queues = nil
		for _, name := range wf.queues {
			q, ok := byName[name]
			if !ok {
				q = worker.QueueConfig{Name: name}
			}
			cfg.Queues = append(cfg.Queues, q)
		}
	}
	if len(cfg.Queues) == 0 {
		cfg.Queues = []worker.QueueConfig{{Name: jobs.DefaultQueue}}
	}
	if *wf.image != "" {
		for i := range cfg.Queues {
			cfg.Queues[i].Image = *wf.image
		}
	}
	if *wf.spare != 0 {
		cfg.Spare = *wf.spare
	}
	if *wf.slots > 0 {
		cfg.Slots = *wf.slots
	}
	for _, kv := range wf.warm {
		img, n, ok := strings.Cut(kv, "=")
		count, err := strconv.Atoi(n)
		if !ok || err != nil || count < 0 || img == "" {
			return cfg, fmt.Errorf("--warm %q: want IMAGE=N", kv)
		}
		if cfg.Warm == nil {
			cfg.Warm = map[string]int{}
		}
		cfg.Warm[img] = count
	}
	if *wf.freshLayers {
		cfg.Pool.FreshLayers = true
	}
	if *wf.keepNetNS {
		cfg.Pool.KeepNetNS = true
	}
	cfg.Grace = *wf.grace
	cfg.Version = version
	cfg.Log = log
	return cfg, nil
}

func (wf *workerFlags) logger() (*zap.Logger, error) {
	zc := zap.NewProductionConfig()
	zc.Encoding = "console"
	zc.EncoderConfig.EncodeTime = zapcore.ISO8601TimeEncoder
	if *wf.logJSON {
		zc.Encoding = "json"
	}
	zc.DisableStacktrace = true
	if *wf.verbose {
		zc.Level = zap.NewAtomicLevelAt(zap.DebugLevel)
	}
	return zc.Build()
}

// startWorker opens the image store and starts a worker on nc. The caller
// stops it and then calls cleanup.
func (wf *workerFlags) startWorker(ctx context.Context, nc *nats.Conn, log *zap.Logger) (w *worker.Worker, cleanup func(), err error) {
	cfg, err := wf.workerConfig(log)
	if err != nil {
		return nil, nil, err
	}
	if *wf.goProcs < 0 {
		return nil, nil, fmt.Errorf("--go-procs %d: want 1 or more (0: the default)", *wf.goProcs)
	}
	if os.Getenv("GOMAXPROCS") == "" {
		slots := cfg.Slots
		if slots <= 0 {
			slots = runtime.NumCPU()
		}
		runtime.GOMAXPROCS(goProcs(*wf.goProcs, slots))
	}
	log.Debug("go scheduler", zap.Int("gomaxprocs", runtime.GOMAXPROCS(0)))
	if err := rootfs.CleanStale(*wf.data); err != nil {
		log.Warn("cleaning up the mounts of an earlier run", zap.Error(err))
	}
	if err := isolate.CleanStaleCgroups(""); err != nil {
		log.Warn("cleaning up the cgroups of an earlier run", zap.Error(err))
	}
	if err := netpool.CleanStale(); err != nil {
		log.Warn("cleaning up the network of an earlier run", zap.Error(err))
	}
	store, err := rootfs.OpenStore(*wf.data)
	if err != nil {
		return nil, nil, err
	}
	for _, q := range cfg.Queues {
		img := q.Image
		if img == "" {
			img = "default"
		}
		if _, err := store.Get(img); err != nil {
			return nil, nil, fmt.Errorf("queue %s: %w (build it with 'corral image default' or 'corral image build %s --from DIR')", q.Name, err, img)
		}
	}
	var egress *netpool.Pool
	if *wf.egress {
		var dns []netip.Addr
		if egress, dns, err = wf.egressPool(ctx, log); err != nil {
			return nil, nil, err
		}
		cfg.Egress = egress
		cfg.WarmEgress = *wf.warmEgress
		cfg.Pool.EtcFiles = map[string][]byte{
			"resolv.conf": netpool.ResolvConf(dns),
			"hosts":       netpool.Hosts(),
		}
	}
	// stopExtras stops what the worker uses but does not own.
	stopExtras := func() {
		if egress != nil {
			if err := egress.Stop(); err != nil {
				log.Warn("stopping the egress pool", zap.Error(err))
			}
		}
	}
	// Metrics and health answer while the sandboxes warm (not ready yet).
	var ms *metricsServer
	if *wf.metrics != "" {
		if ms, err = listenMetrics(*wf.metrics, log); err != nil {
			stopExtras()
			return nil, nil, err
		}
		cfg.Metrics = ms.reg
		prev := stopExtras
		stopExtras = func() { ms.stop(); prev() }
	}
	mounter, err := rootfs.NewMounter(rootfs.RunDir(*wf.data))
	if err != nil {
		stopExtras()
		return nil, nil, err
	}
	cfg.Pool.Store, cfg.Pool.Mounter = store, mounter
	w, err = worker.New(nc, cfg)
	if err != nil {
		mounter.Close()
		stopExtras()
		return nil, nil, err
	}
	if ms != nil {
		ms.setReady(w.Ready)
	}
	if err := w.Start(ctx); err != nil {
		w.Stop()
		mounter.Close()
		stopExtras()
		return nil, nil, err
	}
	return w, func() { mounter.Close(); stopExtras() }, nil
}

func cmdWorker(ctx context.Context, args []string) error {
	fs := newFlagSet("worker", "corral worker --nats URL [--creds FILE] [--data DIR] [--queue Q]... [--slots N] [--image NAME]",
		`Pulls jobs from NATS JetStream (consumer corral-Q on stream CORRAL_JOBS) and
runs each in a warm sandbox, publishing results to each job's reply subject.
Creates the streams and consumers it needs if they are missing. SIGTERM stops
taking jobs, lets running ones finish within --grace, hands back the rest
(but lets a job on its last delivery run to its end: handed back, it would
end as internal_error), and exits 0.`)
	url := fs.String("nats", nats.DefaultURL, "NATS server URL")
	creds := fs.String("creds", "", "NATS credentials file")
	wf := addWorkerFlags(fs)
	if _, err := parseInterspersed(fs, args); err != nil {
		return err
	}
	log, err := wf.logger()
	if err != nil {
		return err
	}
	defer log.Sync()
	ctx, lost := withConnLoss(ctx, log)
	opts := []nats.Option{nats.Name("corral-worker"), nats.MaxReconnects(-1), nats.ClosedHandler(lost)}
	if *creds != "" {
		opts = append(opts, nats.UserCredentials(*creds))
	}
	nc, err := nats.Connect(*url, opts...)
	if err != nil {
		return fmt.Errorf("connect to %s: %w", *url, err)
	}
	defer nc.Close()
	w, cleanup, err := wf.startWorker(ctx, nc, log)
	if err != nil {
		return err
	}
	<-ctx.Done()
	log.Info("stopping: no new jobs; finishing running ones")
	w.Stop()
	cleanup()
	if err := context.Cause(ctx); errors.Is(err, errConnClosed) {
		return err
	}
	return nil
}

// errConnClosed ends a worker whose NATS connection closed for good.
var errConnClosed = errors.New("the NATS connection closed for good (see the log); exiting so that a supervisor restarts the worker")

// withConnLoss returns a context that ends, with errConnClosed as its
// cause, when the handler it returns runs: the connection's ClosedHandler.
// The connection reconnects on its own after network errors; it closes for
// good only on a fatal one (the server refusing the credentials, or a
// protocol error), and a worker left without it would look alive and do
// nothing.
func withConnLoss(ctx context.Context, log *zap.Logger) (context.Context, func(*nats.Conn)) {
	ctx, cancel := context.WithCancelCause(ctx)
	return ctx, func(nc *nats.Conn) {
		if ctx.Err() != nil {
			return // stopping: the deferred Close
		}
		log.Error("NATS connection closed", zap.Error(nc.LastError()))
		cancel(errConnClosed)
	}
}

// egressPool starts the egress network pool from the flags.
func (wf *workerFlags) egressPool(ctx context.Context, log *zap.Logger) (*netpool.Pool, []netip.Addr, error) {
	nc := netpool.Config{WorkerID: *wf.workerID}
	if *wf.egressSubnet != "" {
		p, err := netip.ParsePrefix(*wf.egressSubnet)
		if err != nil {
			return nil, nil, fmt.Errorf("--egress-subnet: %w", err)
		}
		nc.Subnet = p
	}
	if len(wf.egressDeny) > 0 {
		nc.Deny = []netip.Prefix{}
		for _, d := range wf.egressDeny {
			if d == "none" {
				continue
			}
			p, err := netip.ParsePrefix(d)
			if err != nil {
				return nil, nil, fmt.Errorf("--egress-deny %q: %w", d, err)
			}
			nc.Deny = append(nc.Deny, p)
		}
	}
	for _, d := range wf.dns {
		a, err := netip.ParseAddr(d)
		if err != nil {
			return nil, nil, fmt.Errorf("--dns %q: %w", d, err)
		}
		nc.DNS = append(nc.DNS, a)
	}
	for _, r := range []struct {
		flag string
		val  *string
		dst  *uint64
	}{{"egress-rate", wf.egressRate, &nc.RateBitsPerSec}, {"egress-download-rate", wf.egressDown, &nc.DownloadBitsPerSec}} {
		if *r.val == "" {
			continue
		}
		n, err := parseSize(*r.val)
		if err != nil {
			return nil, nil, fmt.Errorf("--%s: %w", r.flag, err)
		}
		*r.dst = uint64(n)
	}
	pool, err := netpool.New(nc)
	if err != nil {
		return nil, nil, err
	}
	if err := pool.Start(ctx); err != nil {
		return nil, nil, fmt.Errorf("egress: %w", err)
	}
	return pool, nc.DNS, nil
}
