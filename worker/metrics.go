package worker

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/corralhq/corral/jobs"
)

// Metric names, for the dashboards and alerts that use them.
const (
	MetricJobs              = "corral_jobs_total"
	MetricJobQueueSeconds   = "corral_job_queue_seconds"
	MetricJobRunSeconds     = "corral_job_run_seconds"
	MetricJobCPUSeconds     = "corral_job_cpu_seconds_total"
	MetricJobsHandedBack    = "corral_jobs_handed_back_total"
	MetricJobsDead          = "corral_jobs_dead_total"
	MetricFetchErrors       = "corral_fetch_errors_total"
	MetricSlots             = "corral_slots"
	MetricSlotsBusy         = "corral_slots_busy"
	MetricReady             = "corral_worker_ready"
	MetricBuildInfo         = "corral_build_info"
	MetricSandboxes         = "corral_sandboxes"
	MetricSandboxesCreated  = "corral_sandboxes_created_total"
	MetricSandboxCreateSecs = "corral_sandbox_create_seconds_total"
	MetricSandboxResets     = "corral_sandbox_resets_total"
	MetricSandboxResetSecs  = "corral_sandbox_reset_seconds_total"
)

// Why a job was handed back for another delivery
// (corral_jobs_handed_back_total's reason).
const (
	handBackShutdown      = "shutdown"       // the worker stopped mid-job
	handBackSandboxBroken = "sandbox_broken" // the sandbox failed, not the job
	handBackPublishFailed = "publish_failed" // the result did not reach the server
)

// timeBuckets spans a judge's milliseconds to an agent's hour, in seconds.
var timeBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600}

// metrics are the worker's own Prometheus metrics. They exist whether or not
// anything scrapes them: updating one is an atomic add.
type metrics struct {
	jobs        *prometheus.CounterVec   // queue, status
	queueWait   *prometheus.HistogramVec // queue
	run         *prometheus.HistogramVec // queue
	cpu         *prometheus.CounterVec   // queue
	handedBack  *prometheus.CounterVec   // queue, reason
	dead        *prometheus.CounterVec   // queue
	fetchErrors *prometheus.CounterVec   // queue
}

func newMetrics() *metrics {
	return &metrics{
		jobs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricJobs,
			Help: "Jobs whose result this worker published, by queue and status (PROTOCOL.md's statuses).",
		}, []string{"queue", "status"}),
		queueWait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    MetricJobQueueSeconds,
			Help:    "Time from a job's enqueueing (its stream timestamp) until this worker took it, in seconds (timing.queue_ms).",
			Buckets: timeBuckets,
		}, []string{"queue"}),
		run: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    MetricJobRunSeconds,
			Help:    "Wall time of a job's steps together, in seconds, for jobs that ran.",
			Buckets: timeBuckets,
		}, []string{"queue"}),
		cpu: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricJobCPUSeconds,
			Help: "CPU time (user + system) of the jobs' processes, in seconds.",
		}, []string{"queue"}),
		handedBack: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricJobsHandedBack,
			Help: "Jobs handed back (Nak) for another delivery, by reason: shutdown, sandbox_broken, publish_failed.",
		}, []string{"queue", "reason"}),
		dead: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricJobsDead,
			Help: "Jobs given internal_error and copied to CORRAL_DEAD (a failure inside the worker, or every delivery lost).",
		}, []string{"queue"}),
		fetchErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricFetchErrors,
			Help: "Failed pulls of jobs from the queue's consumer (the worker retries after 0.5 s).",
		}, []string{"queue"}),
	}
}

// queue makes the counters of rare events exist at 0 for queue q, so that
// a dashboard shows 0 rather than no data until the first one.
func (m *metrics) queue(q string) {
	m.dead.WithLabelValues(q)
	m.fetchErrors.WithLabelValues(q)
	for _, r := range []string{handBackShutdown, handBackSandboxBroken, handBackPublishFailed} {
		m.handedBack.WithLabelValues(q, r)
	}
}

// collectors are the metrics to register.
func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.jobs, m.queueWait, m.run, m.cpu, m.handedBack, m.dead, m.fetchErrors}
}

// result counts a published result.
func (m *metrics) result(res *jobs.Result) {
	m.jobs.WithLabelValues(res.Queue, string(res.Status)).Inc()
	if len(res.Steps) == 0 {
		return
	}
	var wall, cpu float64
	for i := range res.Steps {
		wall += res.Steps[i].Usage.WallTimeMs
		cpu += res.Steps[i].Usage.CPUTimeMs
	}
	m.run.WithLabelValues(res.Queue).Observe(wall / 1000)
	m.cpu.WithLabelValues(res.Queue).Add(cpu / 1000)
}
