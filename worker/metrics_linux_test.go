package worker

import (
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/corralhq/corral/jobs"
	"github.com/corralhq/corral/rootfs/rootfstest"
)

// recorder keeps what was registered through it, to list every metric the
// worker declares (a family without samples yet is absent from Gather).
type recorder struct {
	*prometheus.Registry
	cs []prometheus.Collector
}

func (r *recorder) Register(c prometheus.Collector) error {
	r.cs = append(r.cs, c)
	return r.Registry.Register(c)
}

var fqName = regexp.MustCompile(`fqName: "([^"]+)"`)

// names lists the metric names the worker registered.
func (r *recorder) names() []string {
	var out []string
	for _, c := range r.cs {
		ch := make(chan *prometheus.Desc, 16)
		go func() { c.Describe(ch); close(ch) }()
		for d := range ch {
			if m := fqName.FindStringSubmatch(d.String()); m != nil {
				out = append(out, m[1])
			}
		}
	}
	sort.Strings(out)
	return out
}

// samples gathers the registry as name{label="value",...} → value; a
// histogram gives name_count and name_sum.
func samples(t *testing.T, reg prometheus.Gatherer) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			key := mf.GetName()
			if len(labels) > 0 {
				key += "{" + strings.Join(labels, ",") + "}"
			}
			switch {
			case m.Counter != nil:
				out[key] = m.Counter.GetValue()
			case m.Gauge != nil:
				out[key] = m.Gauge.GetValue()
			case m.Histogram != nil:
				name, rest, _ := strings.Cut(key, "{")
				if rest != "" {
					rest = "{" + rest
				}
				out[name+"_count"+rest] = float64(m.Histogram.GetSampleCount())
				out[name+"_sum"+rest] = m.Histogram.GetSampleSum()
			}
		}
	}
	return out
}

// The worker's metrics count what its jobs did, by queue and status, and
// report its slots, readiness and sandboxes.
func TestWorkerMetrics(t *testing.T) {
	beforeRun = func(j *jobs.Job) {
		if j.Labels["panic"] == "yes" {
			panic("boom")
		}
	}
	defer func() { beforeRun = nil }()
	reg := &recorder{Registry: prometheus.NewRegistry()}
	e := startE2E(t, func(c *Config) { c.Metrics = reg; c.Version = "v-test" })
	s := samples(t, reg)
	for k, want := range map[string]float64{
		`corral_worker_ready`:                                              1,
		`corral_slots`:                                                     2,
		`corral_slots_busy`:                                                0,
		`corral_build_info{version="v-test"}`:                              1,
		`corral_sandboxes{image="busybox",state="idle"}`:                   3, // 2 slots + 1 spare
		`corral_sandboxes{image="busybox",state="busy"}`:                   0,
		`corral_sandboxes_created_total`:                                   3,
		`corral_sandbox_resets_total{layer="kept"}`:                        0,
		`corral_sandbox_resets_total{layer="fresh"}`:                       0,
		`corral_jobs_total{queue="default",status="ok"}`:                   -1, // absent
		`corral_job_queue_seconds_count{queue="default"}`:                  -1,
		`corral_jobs_dead_total{queue="default"}`:                          0, // rare events exist at 0
		`corral_fetch_errors_total{queue="judge"}`:                         0,
		`corral_jobs_handed_back_total{queue="default",reason="shutdown"}`: 0,
	} {
		if got, ok := s[k]; (want == -1 && ok) || (want != -1 && got != want) {
			t.Errorf("before jobs: %s = %v (present %v), want %v", k, got, ok, want)
		}
	}
	if s["corral_sandbox_create_seconds_total"] <= 0 {
		t.Errorf("create seconds %v", s["corral_sandbox_create_seconds_total"])
	}

	all := e.results("corral.results.>")
	bodies := []string{
		`{"id": "m-ok1", "cmd": ["true"]}`,
		`{"id": "m-ok2", "cmd": ["true"]}`,
		`{"id": "m-ok3", "cmd": ["sh", "-c", "echo hi > out.txt"]}`,
		`{"id": "m-false", "cmd": ["false"]}`,
		`{"id": "m-bad", "cmd": `, // malformed: rejected
		`{"id": "m-panic", "cmd": ["true"], "labels": {"panic": "yes"}}`,
	}
	for _, b := range bodies {
		e.submit("default", "", b)
	}
	e.submit("judge", "", `{"id": "m-judge", "cmd": ["true"]}`)
	for range len(bodies) + 1 {
		wait(t, all)
	}
	// A result is counted once the server has it (the worker's PubAck),
	// which can be after the subscriber got it, and the resets run in the
	// background: wait for the seven results and for the five jobs that
	// gave their sandbox back healthy (the panic destroyed its own).
	deadline := time.Now().Add(10 * time.Second)
	for {
		s = samples(t, reg)
		var results float64
		for k, v := range s {
			if strings.HasPrefix(k, "corral_jobs_total{") {
				results += v
			}
		}
		resets := s[`corral_sandbox_resets_total{layer="kept"}`] + s[`corral_sandbox_resets_total{layer="fresh"}`]
		if (results >= 7 && resets >= 5) || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	for k, want := range map[string]float64{
		`corral_jobs_total{queue="default",status="ok"}`:             3,
		`corral_jobs_total{queue="default",status="nonzero_exit"}`:   1,
		`corral_jobs_total{queue="default",status="rejected"}`:       1,
		`corral_jobs_total{queue="default",status="internal_error"}`: 1,
		`corral_jobs_total{queue="judge",status="ok"}`:               1,
		`corral_jobs_dead_total{queue="default"}`:                    1,
		`corral_job_queue_seconds_count{queue="default"}`:            6, // every job taken
		`corral_job_queue_seconds_count{queue="judge"}`:              1,
		`corral_job_run_seconds_count{queue="default"}`:              4, // the ones whose steps ran
		`corral_job_run_seconds_count{queue="judge"}`:                1,
		`corral_slots_busy`:                          0,
		`corral_sandbox_resets_total{layer="kept"}`:  4, // true, true, false, judge's true
		`corral_sandbox_resets_total{layer="fresh"}`: 1, // out.txt written
	} {
		if got := s[k]; got != want {
			t.Errorf("%s = %v, want %v", k, got, want)
		}
	}
	if s[`corral_job_cpu_seconds_total{queue="default"}`] <= 0 || s[`corral_job_run_seconds_sum{queue="default"}`] <= 0 || s["corral_sandbox_reset_seconds_total"] <= 0 {
		t.Errorf("no time counted: %v", s)
	}
	if live := s[`corral_sandboxes{image="busybox",state="idle"}`] + s[`corral_sandboxes{image="busybox",state="busy"}`]; live < 2 || live > 3 {
		t.Errorf("%v live sandboxes", live)
	}

	e.w.Stop()
	if s = samples(t, reg); s["corral_worker_ready"] != 0 {
		t.Errorf("stopped worker: ready %v", s["corral_worker_ready"])
	}
	// Every metric is declared, with or without samples.
	want := []string{MetricBuildInfo, MetricFetchErrors, MetricJobCPUSeconds, MetricJobQueueSeconds, MetricJobRunSeconds, MetricJobs, MetricJobsDead, MetricJobsHandedBack,
		MetricReady, MetricSandboxCreateSecs, MetricSandboxResetSecs, MetricSandboxResets, MetricSandboxes, MetricSandboxesCreated, MetricSlots, MetricSlotsBusy}
	sort.Strings(want)
	if got := reg.names(); !slices.Equal(got, want) {
		t.Errorf("registered %v, want %v", got, want)
	}
}

// Two workers on one registry: the second fails with a clear error instead
// of double counting.
func TestWorkerMetricsRegisteredTwice(t *testing.T) {
	reg := prometheus.NewRegistry()
	e := startE2E(t, func(c *Config) { c.Metrics = reg })
	store, _ := rootfstest.BusyboxImage(t)
	_, err := New(e.nc, Config{Metrics: reg, Pool: PoolConfig{Store: store, Mounter: rootfstest.Mounter(t)}})
	if err == nil || !strings.Contains(err.Error(), "metrics") {
		t.Fatalf("second worker on one registry: %v", err)
	}
}
