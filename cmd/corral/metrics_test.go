package main

import (
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/corralhq/corral/jobs"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// --metrics serves /metrics, /healthz and /readyz; /readyz follows the
// worker; a taken address fails the start.
func TestMetricsServer(t *testing.T) {
	m, err := listenMetrics("127.0.0.1:0", zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	defer m.stop()
	base := "http://" + m.addr
	if code, body := get(t, base+"/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("/healthz: %d %q", code, body)
	}
	if code, body := get(t, base+"/readyz"); code != 503 || !strings.Contains(body, "not ready") {
		t.Errorf("/readyz before the worker: %d %q", code, body)
	}
	var ready atomic.Bool
	ready.Store(true)
	m.setReady(ready.Load)
	if code, _ := get(t, base+"/readyz"); code != 200 {
		t.Errorf("/readyz of a ready worker: %d", code)
	}
	ready.Store(false)
	if code, _ := get(t, base+"/readyz"); code != 503 {
		t.Errorf("/readyz of a stopping worker: %d", code)
	}
	code, body := get(t, base+"/metrics")
	if code != 200 || !strings.Contains(body, "go_goroutines") || !strings.Contains(body, "process_resident_memory_bytes") {
		t.Errorf("/metrics: %d %.300q", code, body)
	}
	if code, _ := get(t, base+"/nothing"); code != 404 {
		t.Errorf("/nothing: %d", code)
	}
	if _, err := listenMetrics(m.addr, zap.NewNop()); err == nil || !strings.Contains(err.Error(), "--metrics "+m.addr) {
		t.Errorf("second listen on %s: %v", m.addr, err)
	}
}

// `corral worker --metrics` counts the jobs it ran, says it is ready while
// it pulls, and refuses to start on a taken address.
func TestWorkerMetricsFlag(t *testing.T) {
	url, data, config, nc, js := workerTestSetup(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	results := collectResults(t, nc)
	startWorkerProc(t, url, data, config, "--metrics", addr)
	if code, body := get(t, "http://"+addr+"/readyz"); code != 200 {
		t.Fatalf("/readyz of a started worker: %d %q", code, body)
	}
	publishJob(t, js, `{"id": "metered", "cmd": ["true"]}`)
	if r := nextResult(t, results, 20*time.Second); r.Status != jobs.StatusOK {
		t.Fatalf("%+v", r)
	}
	// The worker counts a result once the server has it (its PubAck),
	// which may come after the subscriber got it.
	var body string
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		_, body = get(t, "http://"+addr+"/metrics")
		if strings.Contains(body, `corral_jobs_total{queue="default",status="ok"} 1`) || time.Now().After(deadline) {
			break
		}
	}
	for _, want := range []string{
		`corral_jobs_total{queue="default",status="ok"} 1`,
		`corral_worker_ready 1`,
		`corral_slots 2`,
		`corral_build_info{version="` + version + `"} 1`,
		`corral_job_run_seconds_count{queue="default"} 1`,
		`go_goroutines`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}

	// The address is taken now: a second worker says so and exits.
	cmd := exec.Command(os.Args[0], "worker", "--nats", url, "--data", data, "--config", config, "--metrics", addr)
	cmd.Env = append(os.Environ(), "CORRAL_TEST_CLI=1")
	done := make(chan struct{})
	var out []byte
	go func() { out, err = cmd.CombinedOutput(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("a worker on a taken --metrics address did not exit:\n%s", out)
	}
	if err == nil || !strings.Contains(string(out), "--metrics "+addr) {
		t.Fatalf("exit %v:\n%s", err, out)
	}
}
