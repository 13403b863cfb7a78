package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/corralhq/corral/jobs"
	"github.com/corralhq/corral/natstest"
)

// workerProc is `corral worker` running as a child process.
type workerProc struct {
	cmd  *exec.Cmd
	done chan error
	mu   sync.Mutex
	log  strings.Builder
}

// startWorkerProc starts a worker with its own data dir holding a busybox
// image named "default", and waits until it is pulling jobs.
func startWorkerProc(t *testing.T, url, data, config string, extra ...string) *workerProc {
	t.Helper()
	args := append([]string{"worker", "--nats", url, "--data", data, "--config", config, "--grace", "10s"}, extra...)
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "CORRAL_TEST_CLI=1")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	wp := &workerProc{cmd: cmd, done: make(chan error, 1)}
	started := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		once := sync.Once{}
		for sc.Scan() {
			wp.mu.Lock()
			wp.log.WriteString(sc.Text() + "\n")
			wp.mu.Unlock()
			if strings.Contains(sc.Text(), "worker started") {
				once.Do(func() { close(started) })
			}
		}
		wp.done <- cmd.Wait()
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-wp.done:
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
		}
	})
	select {
	case <-started:
	case err := <-wp.done:
		t.Fatalf("worker exited: %v\n%s", err, wp.logs())
	case <-time.After(30 * time.Second):
		t.Fatalf("worker did not start:\n%s", wp.logs())
	}
	return wp
}

func (wp *workerProc) logs() string {
	wp.mu.Lock()
	defer wp.mu.Unlock()
	return wp.log.String()
}

func workerTestSetup(t *testing.T) (url, data, config string, nc *nats.Conn, js jetstream.JetStream) {
	t.Helper()
	needRoot(t)
	data = dataDir(t)
	if _, stderr, code := corral(t, "image", "busybox", "default", "--data", data); code != 0 {
		t.Fatalf("image: %s", stderr)
	}
	url, _ = natstest.Server(t)
	nc, js = natstest.Connect(t, url)
	config = filepath.Join(data, "worker.json")
	// A short ack wait so that a killed worker's job comes back soon.
	os.WriteFile(config, []byte(`{"slots": 2, "consumer": {"ack_wait_ms": 2000, "max_deliver": 3}}`), 0o644)
	return url, data, config, nc, js
}

func publishJob(t *testing.T, js jetstream.JetStream, body string) {
	t.Helper()
	if _, err := js.Publish(context.Background(), jobs.JobSubject("default"), []byte(body)); err != nil {
		t.Fatal(err)
	}
}

func collectResults(t *testing.T, nc *nats.Conn) <-chan *jobs.Result {
	ch := make(chan *jobs.Result, 4096)
	sub, err := nc.Subscribe("corral.results.>", func(m *nats.Msg) {
		var r jobs.Result
		if err := json.Unmarshal(m.Data, &r); err != nil {
			t.Errorf("bad result: %v", err)
			return
		}
		ch <- &r
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sub.Unsubscribe() })
	nc.Flush()
	return ch
}

func nextResult(t *testing.T, ch <-chan *jobs.Result, within time.Duration) *jobs.Result {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(within):
		t.Fatalf("no result within %v", within)
		return nil
	}
}

// A worker killed with SIGKILL mid-job loses nothing: the job is
// redelivered and completes on another worker, attempt 2.
func TestWorkerKilledMidJob(t *testing.T) {
	url, data, config, nc, js := workerTestSetup(t)
	results := collectResults(t, nc)
	started := make(chan struct{}, 1)
	sub, _ := nc.Subscribe(jobs.OutputSubject("survivor"), func(*nats.Msg) {
		select {
		case started <- struct{}{}:
		default:
		}
	})
	defer sub.Unsubscribe()
	a := startWorkerProc(t, url, data, config)
	publishJob(t, js, `{"id": "survivor", "stream_output": true, "cmd": ["sh", "-c", "echo up; sleep 3; echo done"]}`)
	select {
	case <-started:
	case <-time.After(20 * time.Second):
		t.Fatalf("the job did not start:\n%s", a.logs())
	}
	a.cmd.Process.Kill()
	<-a.done
	b := startWorkerProc(t, url, data, config)
	r := nextResult(t, results, 40*time.Second)
	if r.ID != "survivor" || r.Status != jobs.StatusOK || r.Attempt != 2 || r.Steps[0].Stdout != "up\ndone\n" {
		t.Fatalf("%+v\n%s", r, b.logs())
	}
}

// SIGTERM drains: running jobs finish and publish, the worker exits 0.
func TestWorkerDrainsOnSIGTERM(t *testing.T) {
	url, data, config, nc, js := workerTestSetup(t)
	results := collectResults(t, nc)
	w := startWorkerProc(t, url, data, config)
	publishJob(t, js, `{"id": "drain-1", "cmd": ["sh", "-c", "sleep 1; echo finished"]}`)
	time.Sleep(300 * time.Millisecond) // let it be fetched
	w.cmd.Process.Signal(syscall.SIGTERM)
	r := nextResult(t, results, 20*time.Second)
	if r.ID != "drain-1" || r.Status != jobs.StatusOK || r.Steps[0].Stdout != "finished\n" {
		t.Fatalf("%+v", r)
	}
	select {
	case err := <-w.done:
		if err != nil {
			t.Fatalf("worker exit: %v\n%s", err, w.logs())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("worker did not exit")
	}
}

// A burst across two workers: exactly one ok result per job.
func TestTwoWorkersBurst(t *testing.T) {
	url, data, config, nc, js := workerTestSetup(t)
	results := collectResults(t, nc)
	startWorkerProc(t, url, data, config)
	// The second worker has its own data dir (its own mounts).
	data2 := dataDir(t)
	if _, stderr, code := corral(t, "image", "busybox", "default", "--data", data2); code != 0 {
		t.Fatalf("image: %s", stderr)
	}
	startWorkerProc(t, url, data2, config)
	n := 1000
	if testing.Short() {
		n = 100
	}
	for i := 0; i < n; i++ {
		publishJob(t, js, fmt.Sprintf(`{"id": "burst-%d", "cmd": ["true"]}`, i))
	}
	seen := map[string]int{}
	hosts := map[string]int{}
	for len(seen) < n {
		r := nextResult(t, results, 60*time.Second)
		if r.Status != jobs.StatusOK {
			t.Fatalf("%+v", r)
		}
		seen[r.ID]++
		hosts[r.Worker.Host]++
	}
	// Nothing more arrives.
	select {
	case r := <-results:
		t.Fatalf("an extra result: %+v", r)
	case <-time.After(2 * time.Second):
	}
	for id, c := range seen {
		if c != 1 {
			t.Errorf("%s: %d results", id, c)
		}
	}
}

func TestGoProcs(t *testing.T) {
	n := runtime.NumCPU()
	for _, c := range []struct{ flag, slots, want int }{
		{3, 100, 3}, // the flag wins
		{0, 1, 1},
		{0, 2, 1},
		{0, 4, 1},
		{0, 5, min(2, n)},
		{0, 1000, min(250, n)},
	} {
		if got := goProcs(c.flag, c.slots); got != c.want {
			t.Errorf("goProcs(%d, %d) = %d, want %d", c.flag, c.slots, got, c.want)
		}
	}
}
