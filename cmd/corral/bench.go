package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/corralhq/corral/client"
	"github.com/corralhq/corral/jobs"
	"github.com/corralhq/corral/rootfs"
	"github.com/corralhq/corral/worker"
)

// benchWarmup is the number of jobs run before measuring (not counted).
const benchWarmup = 20

// benchFloorCap caps the runs of the --floor loops.
const benchFloorCap = 2000

// benchPayloads are the jobs --payload selects.
var benchPayloads = map[string]func() *jobs.Job{
	"true":   func() *jobs.Job { return &jobs.Job{Cmd: []string{"/bin/true"}} },
	"echo":   func() *jobs.Job { return &jobs.Job{Cmd: []string{"sh", "-c", "echo hello"}} },
	"python": func() *jobs.Job { return &jobs.Job{Cmd: []string{"python3", "-c", "print(1)"}} },
	"compile-c": func() *jobs.Job {
		return &jobs.Job{
			Files: []jobs.File{{Path: "main.c", Content: "#include <stdio.h>\nint main(void) { puts(\"hello\"); return 0; }\n"}},
			Steps: []jobs.Step{
				{Name: "compile", Cmd: []string{"cc", "-O0", "-o", "main", "main.c"}},
				{Name: "run", Cmd: []string{"./main"}},
			},
		}
	},
}

func cmdBench(ctx context.Context, args []string) error {
	fs := newFlagSet("bench", "corral bench [--nats URL | --embedded] [--jobs N] [--inflight K] [--slots S] [--payload true|echo|python|compile-c] [--floor [--rounds R]] [--fresh-layers] [--json] [--cpuprofile FILE]",
		`Measures throughput and latency of jobs end to end: publishes N jobs (after
20 warm-up jobs) keeping K in flight and reports jobs/s, publish-to-result
latency percentiles, the queue/setup/run split from the results (and of
the rest, publish to the stream's timestamp and the result's finished_at to
its arrival: exact with --embedded, one clock), the CPU per job of the
worker and its sandboxes and the memory per warm sandbox.
--embedded (the default without --nats) starts a NATS server and a worker in
this process, as 'corral up' does; --nats only submits to a running
deployment (no CPU or memory numbers then). --floor also times the bare
vfork+exec loop of /bin/true with the same parallelism, for comparison, and
(embedded) the same runs in as many warm sandboxes without the queue, the
most the jobs could reach on this machine, and says whether the fast path's targets are met (jobs/s at least 0.6 of the
floor's runs/s with several jobs in flight; latency p50 at most the floor's
p50 + 1.5 ms with one); --rounds splits the run into rounds, each followed by
its share of the floor, and judges by the median round.`)
	natsURL := fs.String("nats", "", "submit to the deployment at this NATS URL instead of an embedded one")
	embedded := fs.Bool("embedded", false, "start an embedded NATS server and worker (default when --nats is not given)")
	nJobs := fs.Int("jobs", 2000, "jobs measured (after 20 warm-up jobs)")
	inflight := fs.Int("inflight", 0, "jobs in flight at once (default 2 × slots)")
	slots := fs.Int("slots", 2, "slots of the embedded worker (with --nats: only sets the default --inflight)")
	payload := fs.String("payload", "true", "job to run: true, echo, python or compile-c")
	image := fs.String("image", "default", "image the embedded worker runs jobs in")
	data := fs.String("data", defaultDataDir, "data directory of the embedded worker's images")
	queue := fs.String("queue", jobs.DefaultQueue, "queue to submit to")
	floor := fs.Bool("floor", false, "also time the bare vfork+exec loop and print the ratios")
	rounds := fs.Int("rounds", 1, "with --floor: split the jobs into this many rounds, each followed by its share of the floor, and judge the targets by the median round (the machine's speed drifts between the jobs and a floor run after them)")
	cpuProfile := fs.String("cpuprofile", "", "write a pprof CPU profile of this process (with --embedded: the NATS server, the worker and the submitter) over the measured jobs to `FILE`")
	useClient := fs.Bool("client", false, "submit with the client package (Submit + Wait per job) instead of raw JetStream publishes and one subscription")
	timeout := fs.Duration("timeout", 2*time.Minute, "longest wait for one job's result")
	asJSON := fs.Bool("json", false, "print one JSON object with every number")
	verbose := fs.Bool("v", false, "log the embedded worker's events")
	freshLayers := fs.Bool("fresh-layers", false, "the embedded worker builds a new writable layer after every job, as 'corral worker --fresh-layers' (default: a layer the job left unchanged serves the next job)")
	if _, err := parseInterspersed(fs, args); err != nil {
		return err
	}
	mkJob, ok := benchPayloads[*payload]
	if !ok {
		return fmt.Errorf("--payload %q: want true, echo, python or compile-c", *payload)
	}
	if *nJobs <= 0 || *slots <= 0 {
		return errors.New("--jobs and --slots must be positive")
	}
	if *natsURL != "" && *embedded {
		return errors.New("--nats and --embedded exclude each other")
	}
	if *inflight <= 0 {
		*inflight = 2 * *slots
	}
	if !jobs.ValidQueue(*queue) {
		return fmt.Errorf("--queue %q: invalid queue name", *queue)
	}
	progress := isTerminal(os.Stderr)

	rep := &benchReport{
		Machine: benchMachineInfo(),
		Config: benchConfig{
			Mode: "embedded", Jobs: *nJobs, Inflight: *inflight, Slots: *slots, Payload: *payload,
			Image: *image, Queue: *queue, Warmup: benchWarmup, Submit: "raw",
		},
		Statuses: map[string]int{},
	}
	if *useClient {
		rep.Config.Submit = "client"
	}

	url := *natsURL
	var stopEmbedded func()
	var poolStats func() worker.PoolStats
	if url == "" {
		var err error
		url, stopEmbedded, poolStats, err = startBenchEmbedded(ctx, *data, *image, *queue, *slots, *freshLayers, *verbose)
		if err != nil {
			return err
		}
		defer stopEmbedded()
	} else {
		rep.Config.Mode = "nats"
		rep.Config.NatsURL = url
		rep.Config.Image = ""
		rep.Config.Slots = 0
	}

	nc, err := nats.Connect(url, nats.Name("corral-bench"), nats.MaxReconnects(-1))
	if err != nil {
		return fmt.Errorf("connect to %s: %w", url, err)
	}
	defer nc.Close()
	var sub benchSubmitter
	if *useClient {
		c, err := client.New(nc, client.WithQueue(*queue))
		if err != nil {
			return err
		}
		sub = &benchClientSubmitter{c: c}
	} else {
		rs, err := newBenchRawSubmitter(nc, *queue)
		if err != nil {
			return err
		}
		defer rs.close()
		sub = rs
	}

	// Warm-up: the worker's sandboxes start, caches fill; not counted.
	if progress {
		fmt.Fprintf(os.Stderr, "warm-up: %d jobs\n", benchWarmup)
	}
	if _, _, err := benchLoop(ctx, sub, mkJob, benchWarmup, min(*inflight, benchWarmup), *timeout, nil); err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}

	nRounds := 1
	if *floor && *rounds > 1 {
		nRounds = min(*rounds, *nJobs)
	}
	// The floor's parallelism is the jobs': never more runners than jobs
	// in flight (one job in flight is compared with one runner).
	floorThreads := min(*slots, *inflight)
	floorRuns := min(*nJobs, benchFloorCap)
	var done atomic.Int64
	stopProgress := func() {}
	if progress {
		stopProgress = showProgress(&done, *nJobs)
	}
	stopProfile := func() {}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			return err
		}
		stopProfile = func() { pprof.StopCPUProfile(); f.Close() }
	}
	// The CPU of the jobs is counted around their loops only: a floor run
	// between rounds is not theirs.
	var samples []benchSample
	var elapsed time.Duration
	var cpuSum benchCPUSample
	var roundFloors []floorRun
	var roundJobs []benchRoundRun
	for r := range nRounds {
		n := *nJobs/nRounds + boolInt(r < *nJobs%nRounds)
		var cpu0 benchCPUSample
		if rep.Config.Mode == "embedded" {
			cpu0 = sampleBenchCPU()
		}
		s, e, err := benchLoop(ctx, sub, mkJob, n, *inflight, *timeout, &done)
		if err != nil {
			stopProfile()
			stopProgress()
			return err
		}
		if rep.Config.Mode == "embedded" {
			cpuSum.add(cpu0, sampleBenchCPU())
		}
		samples = append(samples, s...)
		elapsed += e
		if nRounds > 1 {
			roundJobs = append(roundJobs, benchRoundRun{s, e})
			fr, err := vforkFloor(floorThreads, max(1, floorRuns/nRounds))
			if err != nil {
				stopProfile()
				stopProgress()
				return err
			}
			roundFloors = append(roundFloors, fr)
		}
	}
	stopProfile()
	stopProgress()
	decodeSamples(samples)
	rep.summarize(samples, elapsed)
	if rep.Config.Mode == "embedded" {
		rep.CPU = cpuReport(benchCPUSample{}, cpuSum, len(samples), elapsed, rep.stepsCPUPerJob)
		rep.Sandboxes = sandboxesReport(poolStats())
		rep.Memory = memoryReport()
	} else {
		rep.CPU = &benchCPU{Available: false, Note: "not measured with --nats: the worker runs elsewhere"}
		rep.Memory = &benchMemory{Available: false, Note: "not measured with --nats: the worker runs elsewhere"}
	}

	if *floor {
		runs, threads := floorRuns, floorThreads
		var vf floorRun
		if nRounds > 1 {
			// The floor of every round together.
			runs = 0
			for _, fr := range roundFloors {
				runs += len(fr.lat)
				vf.lat = append(vf.lat, fr.lat...)
				vf.elapsed += fr.elapsed
			}
		} else {
			if progress {
				fmt.Fprintf(os.Stderr, "floor: %d vfork+exec runs in %d threads, then os/exec\n", runs, threads)
			}
			var err error
			if vf, err = vforkFloor(threads, runs); err != nil {
				return err
			}
		}
		ge, err := goExecFloor(threads, runs)
		if err != nil {
			return err
		}
		f := &benchFloor{
			Runs: runs, Threads: threads,
			RunsPerS:  float64(runs) / vf.elapsed.Seconds(),
			LatencyMs: latencyStats(vf.lat),
			GoExec: benchFloorGo{
				RunsPerS:  float64(runs) / ge.elapsed.Seconds(),
				LatencyMs: latencyStats(ge.lat),
			},
		}
		if *natsURL == "" {
			if progress {
				fmt.Fprintf(os.Stderr, "floor: %d runs of /bin/true in %d warm sandboxes, no queue\n", runs, threads)
			}
			sf, err := sandboxFloor(ctx, *data, *image, threads, runs)
			if err != nil {
				return err
			}
			f.Sandboxes = &benchFloorSandboxes{
				RunsPerS:  float64(runs) / sf.elapsed.Seconds(),
				LatencyMs: latencyStats(sf.lat),
			}
			f.Sandboxes.RatioToFloor = round3(f.Sandboxes.RunsPerS / f.RunsPerS)
		}
		f.RatioJobsPerS = rep.JobsPerS / f.RunsPerS
		f.LatencyP50OverFloorMs = rep.LatencyMs.P50 - f.LatencyMs.P50
		if nRounds > 1 {
			var ratios, over []float64
			for i, rj := range roundJobs {
				fr := roundFloors[i]
				var lat []time.Duration
				for _, s := range rj.samples {
					if s.err == nil {
						lat = append(lat, s.latency)
					}
				}
				rd := benchRound{
					Jobs:          len(rj.samples),
					JobsPerS:      round3(float64(len(rj.samples)) / rj.elapsed.Seconds()),
					LatencyP50Ms:  latencyStats(lat).P50,
					FloorRunsPerS: round3(float64(len(fr.lat)) / fr.elapsed.Seconds()),
					FloorP50Ms:    latencyStats(fr.lat).P50,
				}
				rd.Ratio = round3(rd.JobsPerS / rd.FloorRunsPerS)
				rd.LatencyP50OverFloorMs = round3(rd.LatencyP50Ms - rd.FloorP50Ms)
				f.Rounds = append(f.Rounds, rd)
				ratios = append(ratios, rd.Ratio)
				over = append(over, rd.LatencyP50OverFloorMs)
			}
			// The median round (the lower middle one for an even count).
			f.RatioMedian = stats(ratios).P50
			f.LatencyP50OverFloorMedianMs = stats(over).P50
		}
		rep.Floor = f
	}

	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	rep.print(os.Stdout)
	return nil
}

// startBenchEmbedded starts a NATS server with JetStream on a random local
// port with a temporary store, and a worker on it, as `corral up` does.
func startBenchEmbedded(ctx context.Context, data, image, queue string, slots int, freshLayers, verbose bool) (url string, stop func(), pool func() worker.PoolStats, err error) {
	store, err := rootfs.OpenStore(data)
	if err != nil {
		return "", nil, nil, fmt.Errorf("image store %s: %w (build the default image with 'corral image default --data %s')", data, err, data)
	}
	if _, err := store.Get(image); err != nil {
		return "", nil, nil, fmt.Errorf("image %q is missing from %s: %w; build it with 'corral image default --data %s' (or pass --image NAME)", image, data, err, data)
	}
	tmp, err := os.MkdirTemp("", "corral-bench-nats-")
	if err != nil {
		return "", nil, nil, err
	}
	var stops []func()
	stop = func() {
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
	}
	defer func() {
		if err != nil {
			stop()
		}
	}()
	stops = append(stops, func() { os.RemoveAll(tmp) })
	srv, err := server.NewServer(&server.Options{
		ServerName: "corral-bench",
		Host:       "127.0.0.1",
		Port:       server.RANDOM_PORT,
		JetStream:  true,
		StoreDir:   tmp,
		NoSigs:     true,
		NoLog:      true,
	})
	if err != nil {
		return "", nil, nil, err
	}
	go srv.Start()
	stops = append(stops, func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	})
	if !srv.ReadyForConnections(10 * time.Second) {
		return "", nil, nil, errors.New("the embedded NATS server did not start")
	}
	url = srv.ClientURL()
	wnc, err := nats.Connect(url, nats.Name("corral-bench-worker"), nats.MaxReconnects(-1))
	if err != nil {
		return "", nil, nil, err
	}
	stops = append(stops, wnc.Close)

	zc := zap.NewProductionConfig()
	zc.Encoding = "console"
	zc.EncoderConfig.EncodeTime = zapcore.ISO8601TimeEncoder
	zc.DisableStacktrace = true
	zc.Level = zap.NewAtomicLevelAt(zap.WarnLevel)
	if verbose {
		zc.Level = zap.NewAtomicLevelAt(zap.DebugLevel)
	}
	log, err := zc.Build()
	if err != nil {
		return "", nil, nil, err
	}
	stops = append(stops, func() { log.Sync() })

	// The worker's own flags, with their defaults, set as a worker's
	// command line would.
	wf := addWorkerFlags(flag.NewFlagSet("bench-worker", flag.ContinueOnError))
	*wf.data, *wf.slots, *wf.image, *wf.verbose = data, slots, image, verbose
	*wf.freshLayers = freshLayers
	*wf.grace = 10 * time.Second
	wf.queues = listFlag{queue}
	w, cleanup, err := wf.startWorker(ctx, wnc, log)
	if err != nil {
		return "", nil, nil, err
	}
	stops = append(stops, func() {
		w.Stop()
		cleanup()
	})
	return url, stop, w.PoolStats, nil
}

// benchSample is one measured job.
type benchSample struct {
	latency    time.Duration // publish start → result received
	published  time.Time     // publish start, and result received (raw submitter)
	received   time.Time
	publishAck time.Duration // publish start → JetStream ack
	res        *jobs.Result  // nil on timeout
	// raw is the result as received, decoded into res by decodeSamples
	// after the timed run, so that the bench's own JSON work does not
	// take CPU from the jobs it measures.
	raw []byte
	err error
}

// decodeSamples decodes the raw results of samples.
func decodeSamples(samples []benchSample) {
	for i := range samples {
		s := &samples[i]
		if s.raw == nil {
			continue
		}
		var res jobs.Result
		if err := json.Unmarshal(s.raw, &res); err != nil {
			s.err = fmt.Errorf("result: %w", err)
		} else {
			s.res = &res
		}
		s.raw = nil
	}
}

// benchSubmitter runs one job and returns its sample.
type benchSubmitter interface {
	run(ctx context.Context, job *jobs.Job, timeout time.Duration) benchSample
}

// benchRawSubmitter publishes with JetStream and receives every result on one
// subscription to corral.results.>, routed by id.
type benchRawSubmitter struct {
	nc    *nats.Conn
	js    jetstream.JetStream
	queue string
	sub   *nats.Subscription

	mu      sync.Mutex
	pending map[string]chan benchRawResult
}

type benchRawResult struct {
	at   time.Time
	data []byte
}

func newBenchRawSubmitter(nc *nats.Conn, queue string) (*benchRawSubmitter, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	rs := &benchRawSubmitter{nc: nc, js: js, queue: queue, pending: map[string]chan benchRawResult{}}
	rs.sub, err = nc.Subscribe(jobs.SubjectResults+">", func(m *nats.Msg) {
		at := time.Now()
		id := strings.TrimPrefix(m.Subject, jobs.SubjectResults)
		rs.mu.Lock()
		ch := rs.pending[id]
		delete(rs.pending, id)
		rs.mu.Unlock()
		if ch != nil {
			ch <- benchRawResult{at: at, data: m.Data}
		}
	})
	if err != nil {
		return nil, err
	}
	if err := rs.sub.SetPendingLimits(-1, -1); err != nil {
		return nil, err
	}
	if err := nc.Flush(); err != nil {
		return nil, err
	}
	return rs, nil
}

func (rs *benchRawSubmitter) close() { rs.sub.Unsubscribe() }

func (rs *benchRawSubmitter) run(ctx context.Context, job *jobs.Job, timeout time.Duration) benchSample {
	job.ID = client.NewID()
	job.ReplyTo = jobs.ResultSubject(job.ID)
	data, err := json.Marshal(job)
	if err != nil {
		return benchSample{err: err}
	}
	ch := make(chan benchRawResult, 1)
	rs.mu.Lock()
	rs.pending[job.ID] = ch
	rs.mu.Unlock()
	forget := func() {
		rs.mu.Lock()
		delete(rs.pending, job.ID)
		rs.mu.Unlock()
	}
	msg := &nats.Msg{Subject: jobs.JobSubject(rs.queue), Data: data, Header: nats.Header{}}
	msg.Header.Set(jobs.HeaderMsgID, job.ID)
	t0 := time.Now()
	if _, err := rs.js.PublishMsg(ctx, msg, jetstream.WithExpectStream(jobs.StreamJobs)); err != nil {
		forget()
		return benchSample{err: fmt.Errorf("publish: %w", err)}
	}
	s := benchSample{publishAck: time.Since(t0)}
	tm := time.NewTimer(timeout)
	defer tm.Stop()
	select {
	case r := <-ch:
		s.latency = r.at.Sub(t0)
		s.published, s.received = t0, r.at
		s.raw = r.data
	case <-tm.C:
		forget()
		s.err = fmt.Errorf("no result for job %s within %s", job.ID, timeout)
	case <-ctx.Done():
		forget()
		s.err = ctx.Err()
	}
	return s
}

// benchClientSubmitter uses the client package: Submit then Wait per job.
type benchClientSubmitter struct{ c *client.Client }

func (cs *benchClientSubmitter) run(ctx context.Context, job *jobs.Job, timeout time.Duration) benchSample {
	t0 := time.Now()
	p, err := cs.c.Submit(ctx, job)
	if err != nil {
		return benchSample{err: err}
	}
	defer p.Close()
	s := benchSample{publishAck: time.Since(t0)}
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	res, err := p.Wait(wctx)
	s.latency = time.Since(t0)
	s.res, s.err = res, err
	return s
}

// benchLoop runs n jobs keeping k in flight and returns their samples in
// completion order and the elapsed time.
func benchLoop(ctx context.Context, sub benchSubmitter, mkJob func() *jobs.Job, n, k int, timeout time.Duration, done *atomic.Int64) ([]benchSample, time.Duration, error) {
	samples := make([]benchSample, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range max(1, min(k, n)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n || ctx.Err() != nil {
					return
				}
				samples[i] = sub.run(ctx, mkJob(), timeout)
				if done != nil {
					done.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err := ctx.Err(); err != nil {
		return nil, 0, err
	}
	return samples, elapsed, nil
}

// showProgress prints done/total on stderr every 200 ms until stopped.
func showProgress(done *atomic.Int64, total int) func() {
	stop := make(chan struct{})
	finished := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(finished)
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				fmt.Fprintf(os.Stderr, "\r%d/%d jobs in %.1fs          \n", done.Load(), total, time.Since(start).Seconds())
				return
			case <-t.C:
				d := done.Load()
				fmt.Fprintf(os.Stderr, "\r%d/%d jobs, %.0f jobs/s   ", d, total, float64(d)/time.Since(start).Seconds())
			}
		}
	}()
	return func() { close(stop); <-finished }
}

func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// --- report ---

type benchReport struct {
	Machine      benchMachine   `json:"machine"`
	Config       benchConfig    `json:"config"`
	JobsOK       int            `json:"jobs_ok"`
	JobsFailed   int            `json:"jobs_failed"`
	Statuses     map[string]int `json:"statuses"`
	Errors       []string       `json:"errors,omitempty"`
	ElapsedS     float64        `json:"elapsed_s"`
	JobsPerS     float64        `json:"jobs_per_s"`
	LatencyMs    benchStats     `json:"latency_ms"`
	PublishAckMs benchStats     `json:"publish_ack_ms"`
	SplitMs      benchSplit     `json:"split_ms"`
	CPU          *benchCPU      `json:"cpu"`
	Memory       *benchMemory   `json:"memory"`
	Floor        *benchFloor    `json:"floor,omitempty"`
	// Sandboxes is what the embedded worker's pool did (not with --nats).
	Sandboxes *benchSandboxes `json:"sandboxes,omitempty"`

	stepsCPUPerJob float64
}

// benchSandboxes is the cost of making and resetting sandboxes, both off
// the jobs' path, over the whole run (warm-up included).
type benchSandboxes struct {
	Created      int64   `json:"created"`
	CreateMsMean float64 `json:"create_ms_mean"`
	Resets       int64   `json:"resets"`
	ResetsKept   int64   `json:"resets_kept"` // resets that kept the layer the job left unchanged
	ResetMsMean  float64 `json:"reset_ms_mean"`
}

func sandboxesReport(s worker.PoolStats) *benchSandboxes {
	b := &benchSandboxes{Created: s.Created, Resets: s.Resets, ResetsKept: s.ResetsKept}
	if s.Created > 0 {
		b.CreateMsMean = round3(float64(s.CreateTime) / 1e6 / float64(s.Created))
	}
	if s.Resets > 0 {
		b.ResetMsMean = round3(float64(s.ResetTime) / 1e6 / float64(s.Resets))
	}
	return b
}

type benchMachine struct {
	Nproc         int    `json:"nproc"`
	Kernel        string `json:"kernel"`
	CgroupVersion int    `json:"cgroup_version"`
	Date          string `json:"date"`
	Hostname      string `json:"hostname"`
	GoVersion     string `json:"go_version"`
	CorralVersion string `json:"corral_version"`
}

type benchConfig struct {
	Mode     string `json:"mode"`
	NatsURL  string `json:"nats_url,omitempty"`
	Jobs     int    `json:"jobs"`
	Inflight int    `json:"inflight"`
	Slots    int    `json:"slots,omitempty"`
	Payload  string `json:"payload"`
	Image    string `json:"image,omitempty"`
	Queue    string `json:"queue"`
	Warmup   int    `json:"warmup"`
	Submit   string `json:"submit"`
}

type benchStats struct {
	N    int     `json:"n"`
	Mean float64 `json:"mean"`
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	Max  float64 `json:"max"`
}

// benchSplit is where a job's latency went, from its result: queue_ms
// (enqueued → worker started it), setup_ms, run (sum of steps' wall time)
// and other (the rest: publish, result delivery, worker bookkeeping). Of
// other, ToStream (publish → the stream's timestamp) and Back (the result's
// finished_at → received) compare this host's clock with the server's and
// the worker's: they are exact with --embedded.
type benchSplit struct {
	Queue    benchStats `json:"queue"`
	Setup    benchStats `json:"setup"`
	Run      benchStats `json:"run"`
	Other    benchStats `json:"other"`
	ToStream benchStats `json:"to_stream"`
	Back     benchStats `json:"back"`
}

type benchCPU struct {
	Available bool   `json:"available"`
	Note      string `json:"note,omitempty"`
	// Per job, in ms of CPU.
	WorkerNatsMsPerJob float64 `json:"worker_nats_ms_per_job,omitempty"`
	SandboxesMsPerJob  float64 `json:"sandboxes_ms_per_job,omitempty"`
	InitsMsPerJob      float64 `json:"inits_ms_per_job,omitempty"`
	TotalMsPerJob      float64 `json:"total_ms_per_job,omitempty"`
	StepsMsPerJob      float64 `json:"steps_cpu_ms_per_job,omitempty"`
	// Utilization is total CPU / (elapsed × nproc).
	Utilization float64 `json:"utilization,omitempty"`
	// MachineBusy is every CPU's busy time / (elapsed × nproc), from
	// /proc/stat: what the three above leave out (kernel threads: RCU,
	// softirqs, workqueues) plus anything else the machine ran. /proc/stat
	// counts in 10 ms ticks per CPU, so a short run can measure more than
	// the elapsed time; the share is capped at 1.
	MachineBusy float64 `json:"machine_busy,omitempty"`
	CgroupPath  string  `json:"cgroup_path,omitempty"`
}

type benchMemory struct {
	Available      bool    `json:"available"`
	Note           string  `json:"note,omitempty"`
	Sandboxes      int     `json:"warm_sandboxes"`
	USSKiBAvg      float64 `json:"uss_kib_avg"`
	PSSKiBAvg      float64 `json:"pss_kib_avg"`
	CgroupKiBAvg   float64 `json:"cgroup_kib_avg"`
	ProcessRSSKiB  int64   `json:"process_rss_kib"`
	ProcessNote    string  `json:"process_note,omitempty"`
	CgroupMemNotes string  `json:"cgroup_note,omitempty"`
}

type benchFloor struct {
	Runs      int          `json:"runs"`
	Threads   int          `json:"threads"`
	RunsPerS  float64      `json:"runs_per_s"`
	LatencyMs benchStats   `json:"latency_ms"`
	GoExec    benchFloorGo `json:"go_exec"`
	// Sandboxes: the same runs of /bin/true in warm sandboxes (as many as
	// the floor's threads), every layer on, without the queue (embedded
	// only): the sandboxes' ceiling on this machine.
	Sandboxes             *benchFloorSandboxes `json:"sandboxes,omitempty"`
	RatioJobsPerS         float64              `json:"ratio_jobs_per_s"`
	LatencyP50OverFloorMs float64              `json:"latency_p50_minus_floor_ms"`
	// With --rounds: each round's jobs against the floor run right after
	// them, and the medians, which the targets are judged by.
	Rounds                      []benchRound `json:"rounds,omitempty"`
	RatioMedian                 float64      `json:"ratio_median,omitempty"`
	LatencyP50OverFloorMedianMs float64      `json:"latency_p50_minus_floor_median_ms,omitempty"`
}

// benchRoundRun is what one round of --rounds measured of the jobs.
type benchRoundRun struct {
	samples []benchSample
	elapsed time.Duration
}

// benchRound is one round of --rounds.
type benchRound struct {
	Jobs                  int     `json:"jobs"`
	JobsPerS              float64 `json:"jobs_per_s"`
	LatencyP50Ms          float64 `json:"latency_p50_ms"`
	FloorRunsPerS         float64 `json:"floor_runs_per_s"`
	FloorP50Ms            float64 `json:"floor_p50_ms"`
	Ratio                 float64 `json:"ratio"`
	LatencyP50OverFloorMs float64 `json:"latency_p50_minus_floor_ms"`
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

type benchFloorGo struct {
	RunsPerS  float64    `json:"runs_per_s"`
	LatencyMs benchStats `json:"latency_ms"`
}

// benchFloorSandboxes is the floor's loop run in sandboxes (benchFloor).
type benchFloorSandboxes struct {
	RunsPerS  float64    `json:"runs_per_s"`
	LatencyMs benchStats `json:"latency_ms"`
	// RatioToFloor is RunsPerS over the floor's: the most the jobs' ratio
	// could be if the queue cost nothing.
	RatioToFloor float64 `json:"ratio_to_floor"`
}

func benchMachineInfo() benchMachine {
	m := benchMachine{
		Nproc:         runtime.NumCPU(),
		Date:          time.Now().UTC().Format(time.RFC3339),
		GoVersion:     runtime.Version(),
		CorralVersion: version,
		CgroupVersion: benchCgroupVersion(),
	}
	m.Hostname, _ = os.Hostname()
	var u syscall.Utsname
	if syscall.Uname(&u) == nil {
		m.Kernel = utsString(u.Sysname[:]) + " " + utsString(u.Release[:]) + " " + utsString(u.Machine[:])
	}
	return m
}

func utsString(b []int8) string {
	var sb strings.Builder
	for _, c := range b {
		if c == 0 {
			break
		}
		sb.WriteByte(byte(c))
	}
	return sb.String()
}

func benchCgroupVersion() int {
	var st syscall.Statfs_t
	const cgroup2Magic = 0x63677270
	if syscall.Statfs("/sys/fs/cgroup", &st) == nil && st.Type == cgroup2Magic {
		return 2
	}
	return 1
}

// stats returns mean and nearest-rank percentiles of vs (ms).
func stats(vs []float64) benchStats {
	if len(vs) == 0 {
		return benchStats{}
	}
	s := append([]float64(nil), vs...)
	sort.Float64s(s)
	var sum float64
	for _, v := range s {
		sum += v
	}
	pct := func(p float64) float64 {
		i := int(math.Ceil(p*float64(len(s)))) - 1
		return s[max(0, min(i, len(s)-1))]
	}
	return benchStats{N: len(s), Mean: round3(sum / float64(len(s))), P50: round3(pct(0.50)), P90: round3(pct(0.90)), P99: round3(pct(0.99)), Max: round3(s[len(s)-1])}
}

func latencyStats(ds []time.Duration) benchStats {
	vs := make([]float64, len(ds))
	for i, d := range ds {
		vs[i] = ms(d)
	}
	return stats(vs)
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }

func round3(v float64) float64 { return math.Round(v*1000) / 1000 }

func (r *benchReport) summarize(samples []benchSample, elapsed time.Duration) {
	var lat, ack, queue, setup, run, other, toStream, back []float64
	var stepsCPU float64
	errSeen := map[string]bool{}
	for _, s := range samples {
		if s.res == nil {
			r.JobsFailed++
			r.Statuses["no_result"]++
			if s.err != nil && !errSeen[s.err.Error()] && len(r.Errors) < 5 {
				errSeen[s.err.Error()] = true
				r.Errors = append(r.Errors, s.err.Error())
			}
			continue
		}
		res := s.res
		r.Statuses[string(res.Status)]++
		if res.Status == jobs.StatusOK {
			r.JobsOK++
		} else {
			r.JobsFailed++
			msg := res.Error
			for _, st := range res.Steps {
				if st.Status != jobs.StatusOK && st.Status != jobs.StatusSkipped {
					msg = strings.TrimSpace(msg + " " + st.Name + ": " + string(st.Status) + " " + firstLine(st.Stderr))
					break
				}
			}
			if msg != "" && !errSeen[msg] && len(r.Errors) < 5 {
				errSeen[msg] = true
				r.Errors = append(r.Errors, msg)
			}
		}
		l := ms(s.latency)
		lat = append(lat, l)
		ack = append(ack, ms(s.publishAck))
		var wall float64
		for _, st := range res.Steps {
			wall += st.Usage.WallTimeMs
			stepsCPU += st.Usage.CPUTimeMs
		}
		queue = append(queue, res.Timing.QueueMs)
		setup = append(setup, res.Timing.SetupMs)
		run = append(run, wall)
		other = append(other, l-res.Timing.QueueMs-res.Timing.SetupMs-wall)
		if !s.published.IsZero() && !res.Timing.EnqueuedAt.IsZero() && !res.Timing.FinishedAt.IsZero() {
			toStream = append(toStream, ms(res.Timing.EnqueuedAt.Sub(s.published)))
			back = append(back, ms(s.received.Sub(res.Timing.FinishedAt)))
		}
	}
	r.ElapsedS = round3(elapsed.Seconds())
	r.JobsPerS = round3(float64(len(samples)) / elapsed.Seconds())
	r.LatencyMs = stats(lat)
	r.PublishAckMs = stats(ack)
	r.SplitMs = benchSplit{Queue: stats(queue), Setup: stats(setup), Run: stats(run), Other: stats(other), ToStream: stats(toStream), Back: stats(back)}
	if len(samples) > 0 {
		r.stepsCPUPerJob = stepsCPU / float64(len(samples))
	}
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	if len(s) > 120 {
		s = s[:120]
	}
	return s
}

// --- CPU and memory of the embedded worker ---

// benchCPUSample is a snapshot of the CPU used so far (ns).
type benchCPUSample struct {
	self     int64 // this process: worker, NATS server and the bench client
	children int64 // reaped children (an init that exited)
	inits    int64 // live corral-init children
	cgroup   int64 // the sandboxes' cgroups
	cgPath   string
	cgErr    error
	machine  int64 // every CPU's busy time (/proc/stat), -1 when unreadable
}

// add adds the CPU used between a and b to s.
func (s *benchCPUSample) add(a, b benchCPUSample) {
	s.self += b.self - a.self
	s.children += b.children - a.children
	s.inits += b.inits - a.inits
	s.cgroup += b.cgroup - a.cgroup
	s.cgPath = b.cgPath
	if s.cgErr == nil {
		s.cgErr = a.cgErr
	}
	if s.cgErr == nil {
		s.cgErr = b.cgErr
	}
	if a.machine < 0 || b.machine < 0 || s.machine < 0 {
		s.machine = -1
	} else {
		s.machine += b.machine - a.machine
	}
}

func sampleBenchCPU() benchCPUSample {
	var s benchCPUSample
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		s.self = ru.Utime.Nano() + ru.Stime.Nano()
	}
	if syscall.Getrusage(syscall.RUSAGE_CHILDREN, &ru) == nil {
		s.children = ru.Utime.Nano() + ru.Stime.Nano()
	}
	for _, pid := range initChildren() {
		if t, err := procCPU(pid); err == nil {
			s.inits += t
		}
	}
	s.cgroup, s.cgPath, s.cgErr = sandboxCgroupCPU()
	s.machine = machineBusy()
	return s
}

// machineBusy returns the time all CPUs spent busy (user, nice, system,
// irq, softirq, steal) from /proc/stat, in ns; -1 when unreadable.
func machineBusy() int64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return -1
	}
	line, _, _ := bytes.Cut(b, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 9 || f[0] != "cpu" {
		return -1
	}
	var busy int64
	for _, i := range []int{1, 2, 3, 6, 7, 8} { // user nice system irq softirq steal
		v, err := strconv.ParseInt(f[i], 10, 64)
		if err != nil {
			return -1
		}
		busy += v
	}
	return busy * int64(time.Second) / clockTicks
}

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat times.
const clockTicks = 100

// procStat returns the fields of /proc/<pid>/stat after the comm, and the comm.
func procStat(pid int) (comm string, fields []string, err error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return "", nil, err
	}
	open, end := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
	if open < 0 || end < open {
		return "", nil, fmt.Errorf("/proc/%d/stat: bad format", pid)
	}
	return string(b[open+1 : end]), strings.Fields(string(b[end+1:])), nil
}

// procCPU returns utime+stime of pid in ns.
func procCPU(pid int) (int64, error) {
	_, f, err := procStat(pid)
	if err != nil {
		return 0, err
	}
	// After the comm: state(0) ppid(1) ... utime(11) stime(12).
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: short", pid)
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return (ut + st) * int64(time.Second) / clockTicks, nil
}

// initChildren lists the processes whose comm is corral-init and whose
// parent is this process.
func initChildren() []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	self := strconv.Itoa(os.Getpid())
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		comm, f, err := procStat(pid)
		if err != nil || comm != "corral-init" || len(f) < 2 || f[1] != self {
			continue
		}
		pids = append(pids, pid)
	}
	return pids
}

// sandboxCgroupCPU returns the CPU used by the cgroups of this process's
// sandboxes (corral/w<pid>): the parent's counter, which includes removed
// children.
func sandboxCgroupCPU() (int64, string, error) {
	owner := filepath.Join("corral", "w"+strconv.Itoa(os.Getpid()))
	if benchCgroupVersion() == 2 {
		dir := filepath.Join("/sys/fs/cgroup", owner)
		b, err := os.ReadFile(filepath.Join(dir, "cpu.stat"))
		if err != nil {
			return 0, dir, err
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			k, v, _ := strings.Cut(sc.Text(), " ")
			if k == "usage_usec" {
				n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				return n * 1000, dir, err
			}
		}
		return 0, dir, fmt.Errorf("%s/cpu.stat: no usage_usec", dir)
	}
	var lastErr error
	for _, mnt := range []string{"/sys/fs/cgroup/cpuacct", "/sys/fs/cgroup/cpu,cpuacct", "/sys/fs/cgroup/cpuacct,cpu"} {
		dir := filepath.Join(mnt, owner)
		b, err := os.ReadFile(filepath.Join(dir, "cpuacct.usage"))
		if err != nil {
			lastErr = err
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		return n, dir, err
	}
	return 0, "", lastErr
}

func cpuReport(a, b benchCPUSample, n int, elapsed time.Duration, stepsPerJob float64) *benchCPU {
	if n == 0 {
		return &benchCPU{Available: false, Note: "no jobs"}
	}
	per := func(ns int64) float64 { return round3(float64(ns) / 1e6 / float64(n)) }
	c := &benchCPU{
		Available:          true,
		WorkerNatsMsPerJob: per(b.self - a.self),
		InitsMsPerJob:      per((b.inits + b.children) - (a.inits + a.children)),
		StepsMsPerJob:      round3(stepsPerJob),
		CgroupPath:         b.cgPath,
		Note:               "worker+nats is this whole process (worker, NATS server and the bench client); inits are the corral-init processes, whose CPU /proc counts in 10 ms ticks",
	}
	total := (b.self - a.self) + (b.inits + b.children) - (a.inits + a.children)
	if a.cgErr == nil && b.cgErr == nil {
		c.SandboxesMsPerJob = per(b.cgroup - a.cgroup)
		total += b.cgroup - a.cgroup
	} else {
		err := b.cgErr
		if err == nil {
			err = a.cgErr
		}
		c.Note += fmt.Sprintf("; sandbox cgroups not read: %v", err)
	}
	c.TotalMsPerJob = per(total)
	c.Utilization = round3(float64(total) / float64(elapsed) / float64(runtime.NumCPU()))
	if a.machine >= 0 && b.machine >= 0 {
		c.MachineBusy = round3(min(1, float64(b.machine-a.machine)/float64(elapsed)/float64(runtime.NumCPU())))
	}
	return c
}

// memoryReport reads the memory of the warm sandboxes (each init's
// smaps_rollup, and its cgroup) and this process's RSS.
func memoryReport() *benchMemory {
	m := &benchMemory{Available: true}
	var uss, pss float64
	for _, pid := range initChildren() {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/smaps_rollup")
		if err != nil {
			continue
		}
		kv := kibFields(b)
		uss += float64(kv["Private_Clean"] + kv["Private_Dirty"])
		pss += float64(kv["Pss"])
		m.Sandboxes++
	}
	if m.Sandboxes > 0 {
		m.USSKiBAvg = round3(uss / float64(m.Sandboxes))
		m.PSSKiBAvg = round3(pss / float64(m.Sandboxes))
	} else {
		m.Note = "no corral-init child found"
	}
	if b, err := os.ReadFile("/proc/self/status"); err == nil {
		m.ProcessRSSKiB = kibFields(b)["VmRSS"]
		m.ProcessNote = "VmRSS of this process: worker, NATS server and bench client"
	}
	// The sandboxes' cgroups also hold their tmpfs pages and kernel memory.
	owner := filepath.Join("corral", "w"+strconv.Itoa(os.Getpid()))
	var total, count float64
	if benchCgroupVersion() == 2 {
		dirs, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", owner, "*", "memory.current"))
		for _, f := range dirs {
			if b, err := os.ReadFile(f); err == nil {
				if v, err := strconv.ParseFloat(strings.TrimSpace(string(b)), 64); err == nil {
					total += v
					count++
				}
			}
		}
	} else {
		dirs, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup/memory", owner, "*", "memory.usage_in_bytes"))
		for _, f := range dirs {
			if b, err := os.ReadFile(f); err == nil {
				if v, err := strconv.ParseFloat(strings.TrimSpace(string(b)), 64); err == nil {
					total += v
					count++
				}
			}
		}
	}
	if count > 0 {
		m.CgroupKiBAvg = round3(total / count / 1024)
		m.CgroupMemNotes = fmt.Sprintf("average memory charged to %d sandbox cgroups (job processes, tmpfs, kernel memory; not the init)", int(count))
	}
	return m
}

// kibFields parses "Key:   123 kB" lines.
func kibFields(b []byte) map[string]int64 {
	out := map[string]int64{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		if n, err := strconv.ParseInt(f[0], 10, 64); err == nil {
			out[strings.TrimSpace(k)] = n
		}
	}
	return out
}

// --- human output ---

func (r *benchReport) print(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	c := r.Config
	fmt.Fprintf(tw, "corral bench\t%s, payload %s, %d jobs, %d in flight", c.Mode, c.Payload, c.Jobs, c.Inflight)
	if c.Mode == "embedded" {
		fmt.Fprintf(tw, ", %d slots, image %s", c.Slots, c.Image)
	} else {
		fmt.Fprintf(tw, ", %s", c.NatsURL)
	}
	fmt.Fprintf(tw, ", submit %s\n", c.Submit)
	m := r.Machine
	fmt.Fprintf(tw, "machine\t%d CPUs, %s, cgroup v%d, %s\n", m.Nproc, m.Kernel, m.CgroupVersion, m.Date)
	keys := make([]string, 0, len(r.Statuses))
	for k := range r.Statuses {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %d", k, r.Statuses[k]))
	}
	fmt.Fprintf(tw, "statuses\t%s\n", strings.Join(parts, ", "))
	for _, e := range r.Errors {
		fmt.Fprintf(tw, "  error\t%s\n", e)
	}
	fmt.Fprintf(tw, "throughput\t%.1f jobs/s (%.2f s)\n", r.JobsPerS, r.ElapsedS)
	fmt.Fprintf(tw, "\t\tp50\tp90\tp99\tmean\tmax (ms)\n")
	row := func(name string, s benchStats) {
		fmt.Fprintf(tw, "\t%s\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\n", name, s.P50, s.P90, s.P99, s.Mean, s.Max)
	}
	row("latency (publish→result)", r.LatencyMs)
	row("publish ack", r.PublishAckMs)
	row("queue (timing.queue_ms)", r.SplitMs.Queue)
	row("setup (timing.setup_ms)", r.SplitMs.Setup)
	row("run (steps wall_time_ms)", r.SplitMs.Run)
	row("other (latency − the three)", r.SplitMs.Other)
	if r.SplitMs.ToStream.N > 0 {
		row("  of it: publish→enqueued_at", r.SplitMs.ToStream)
		row("  finished_at→received", r.SplitMs.Back)
	}
	if cpu := r.CPU; cpu != nil {
		if cpu.Available {
			fmt.Fprintf(tw, "CPU per job\t%.3f ms total: worker+nats %.3f, sandboxes %.3f, inits %.3f (steps report %.3f); %.0f%% of %d CPUs",
				cpu.TotalMsPerJob, cpu.WorkerNatsMsPerJob, cpu.SandboxesMsPerJob, cpu.InitsMsPerJob, cpu.StepsMsPerJob, cpu.Utilization*100, m.Nproc)
			if cpu.MachineBusy > 0 {
				fmt.Fprintf(tw, " (machine busy %.0f%%: the rest is kernel threads and other processes)", cpu.MachineBusy*100)
			}
			fmt.Fprintln(tw)
		} else {
			fmt.Fprintf(tw, "CPU per job\t%s\n", cpu.Note)
		}
	}
	if mem := r.Memory; mem != nil {
		if mem.Available {
			fmt.Fprintf(tw, "memory\t%d warm sandboxes: init USS %.0f KiB, PSS %.0f KiB avg; sandbox cgroup %.0f KiB avg; process RSS %d KiB\n",
				mem.Sandboxes, mem.USSKiBAvg, mem.PSSKiBAvg, mem.CgroupKiBAvg, mem.ProcessRSSKiB)
		} else {
			fmt.Fprintf(tw, "memory\t%s\n", mem.Note)
		}
	}
	if sb := r.Sandboxes; sb != nil {
		fmt.Fprintf(tw, "sandboxes\t%d created cold, %.1f ms each; %d resets (%d kept an unchanged layer), %.2f ms each (both off the jobs' path)\n",
			sb.Created, sb.CreateMsMean, sb.Resets, sb.ResetsKept, sb.ResetMsMean)
	}
	if f := r.Floor; f != nil {
		fmt.Fprintf(tw, "floor\tvfork+exec /bin/true, %d runs in %d threads: %.1f runs/s, p50 %.3f ms, p99 %.3f ms\n", f.Runs, f.Threads, f.RunsPerS, f.LatencyMs.P50, f.LatencyMs.P99)
		fmt.Fprintf(tw, "\tGo os/exec: %.1f runs/s, p50 %.3f ms, p99 %.3f ms\n", f.GoExec.RunsPerS, f.GoExec.LatencyMs.P50, f.GoExec.LatencyMs.P99)
		if sf := f.Sandboxes; sf != nil {
			fmt.Fprintf(tw, "\tin %d warm sandboxes, no queue: %.1f runs/s (%.3f of the floor: the most the jobs could reach), p50 %.3f ms\n", f.Threads, sf.RunsPerS, sf.RatioToFloor, sf.LatencyMs.P50)
		}
		fmt.Fprintf(tw, "vs floor\tjobs/s ÷ floor runs/s = %.3f; latency p50 − floor p50 = %.3f ms\n", f.RatioJobsPerS, f.LatencyP50OverFloorMs)
		ratio, over := f.RatioJobsPerS, f.LatencyP50OverFloorMs
		if len(f.Rounds) > 0 {
			var rs, overs []string
			for _, rd := range f.Rounds {
				rs = append(rs, fmt.Sprintf("%.3f", rd.Ratio))
				overs = append(overs, fmt.Sprintf("%.2f", rd.LatencyP50OverFloorMs))
			}
			fmt.Fprintf(tw, "rounds\t%d rounds, each against its own floor: jobs/s ÷ floor %s (median %.3f); p50 − floor p50 %s ms (median %.2f)\n",
				len(f.Rounds), strings.Join(rs, " "), f.RatioMedian, strings.Join(overs, " "), f.LatencyP50OverFloorMedianMs)
			ratio, over = f.RatioMedian, f.LatencyP50OverFloorMedianMs
		}
		// The fast path's targets (docs/benchmarks.md): throughput with
		// the slots busy, latency with one job in flight.
		if r.Config.Inflight == 1 {
			fmt.Fprintf(tw, "target	p50 − floor p50 ≤ %.1f ms: %s\n", benchTargetLatencyMs, metOrNot(over <= benchTargetLatencyMs))
		} else {
			fmt.Fprintf(tw, "target	jobs/s ≥ %.1f × floor: %s\n", benchTargetRatio, metOrNot(ratio >= benchTargetRatio))
		}
	}
	tw.Flush()
}

// The fast path's targets, against the floor measured in the same run.
const (
	benchTargetRatio     = 0.6
	benchTargetLatencyMs = 1.5
)

func metOrNot(ok bool) string {
	if ok {
		return "met"
	}
	return "not met"
}
