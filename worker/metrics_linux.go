package worker

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// register registers the worker's metrics with reg: its own counters, the
// slots and readiness read at scrape time, and the sandbox pool's figures.
// On an error none stays registered.
func (w *Worker) register(reg prometheus.Registerer) error {
	cs := append(w.metrics.collectors(),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: MetricSlots,
			Help: "Jobs this worker runs at once (--slots).",
		}, func() float64 { return float64(w.cfg.Slots) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: MetricSlotsBusy,
			Help: "Slots running a job now (a slot is free again once the job's processes are done, while its result goes out).",
		}, func() float64 { return float64(w.busy.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: MetricReady,
			Help: "1 while the worker pulls jobs; 0 while it warms its sandboxes or stops.",
		}, func() float64 {
			if w.Ready() {
				return 1
			}
			return 0
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        MetricBuildInfo,
			Help:        "Always 1; the label names the worker's version, as in results.",
			ConstLabels: prometheus.Labels{"version": w.cfg.Version},
		}, func() float64 { return 1 }),
		newPoolCollector(w.pool),
	)
	for i, c := range cs {
		if err := reg.Register(c); err != nil {
			for _, done := range cs[:i] {
				reg.Unregister(done)
			}
			return fmt.Errorf("metrics: %w", err)
		}
	}
	return nil
}

// poolCollector reports the sandbox pool when scraped: nothing on a job's
// path updates it.
type poolCollector struct {
	p                                                 *sandboxPool
	sandboxes, created, createSecs, resets, resetSecs *prometheus.Desc
}

func newPoolCollector(p *sandboxPool) *poolCollector {
	return &poolCollector{
		p: p,
		sandboxes: prometheus.NewDesc(MetricSandboxes,
			"Live sandboxes by image and state: idle (warm, ready for a job) or busy (running a job, or being reset after one).",
			[]string{"image", "state"}, nil),
		created: prometheus.NewDesc(MetricSandboxesCreated,
			"Sandboxes created (cold, off the jobs' path: ahead of jobs, or to replace a broken one).", nil, nil),
		createSecs: prometheus.NewDesc(MetricSandboxCreateSecs,
			"Time spent creating sandboxes, in seconds.", nil, nil),
		resets: prometheus.NewDesc(MetricSandboxResets,
			"Sandbox resets after a job, by layer: kept (the job left its writable layer unchanged) or fresh (a new layer).",
			[]string{"layer"}, nil),
		resetSecs: prometheus.NewDesc(MetricSandboxResetSecs,
			"Time spent resetting sandboxes after jobs (off the jobs' path), in seconds.", nil, nil),
	}
}

func (c *poolCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.sandboxes
	ch <- c.created
	ch <- c.createSecs
	ch <- c.resets
	ch <- c.resetSecs
}

func (c *poolCollector) Collect(ch chan<- prometheus.Metric) {
	idle, busy := c.p.sandboxCounts()
	for img, n := range idle {
		ch <- prometheus.MustNewConstMetric(c.sandboxes, prometheus.GaugeValue, float64(n), img, "idle")
	}
	for img, n := range busy {
		ch <- prometheus.MustNewConstMetric(c.sandboxes, prometheus.GaugeValue, float64(n), img, "busy")
	}
	ch <- prometheus.MustNewConstMetric(c.created, prometheus.CounterValue, float64(c.p.created.Load()))
	ch <- prometheus.MustNewConstMetric(c.createSecs, prometheus.CounterValue, float64(c.p.createNs.Load())/1e9)
	resets, kept := c.p.reset.Load(), c.p.resetKept.Load()
	ch <- prometheus.MustNewConstMetric(c.resets, prometheus.CounterValue, float64(kept), "kept")
	ch <- prometheus.MustNewConstMetric(c.resets, prometheus.CounterValue, float64(resets-kept), "fresh")
	ch <- prometheus.MustNewConstMetric(c.resetSecs, prometheus.CounterValue, float64(c.p.resetNs.Load())/1e9)
}
