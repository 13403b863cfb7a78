package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
)

// metricsServer serves a worker's metrics and health over HTTP:
//
//	/metrics  Prometheus text format: the worker's corral_* metrics and the
//	          process's go_* and process_* ones
//	/healthz  200 while the process runs
//	/readyz   200 while the worker pulls jobs, 503 while it warms its
//	          sandboxes or stops (a load balancer or Kubernetes takes it
//	          out of rotation)
type metricsServer struct {
	reg   *prometheus.Registry
	srv   *http.Server
	addr  string                      // where it listens
	ready atomic.Pointer[func() bool] // nil: not ready
}

// listenMetrics listens on addr at once, so that a taken port fails the
// start, and serves until stop. /readyz answers 503 until setReady.
func listenMetrics(addr string, log *zap.Logger) (*metricsServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics %s: %w", addr, err)
	}
	m := &metricsServer{reg: prometheus.NewRegistry(), addr: ln.Addr().String()}
	m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if f := m.ready.Load(); f == nil || !(*f)() {
			http.Error(w, "not ready: warming sandboxes or stopping", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	m.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := m.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Warn("metrics server", zap.Error(err))
		}
	}()
	log.Info("serving metrics", zap.String("addr", m.addr))
	return m, nil
}

// setReady makes /readyz ask ready.
func (m *metricsServer) setReady(ready func() bool) { m.ready.Store(&ready) }

// stop closes the listener and waits briefly for scrapes in progress.
func (m *metricsServer) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = m.srv.Shutdown(ctx)
}
