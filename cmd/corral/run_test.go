package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"github.com/corralhq/corral/natstest"
	"github.com/corralhq/corral/worker"
	"github.com/nats-io/nats.go"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/corralhq/corral/jobs"
)

// corralAt runs the CLI in dir with stdin and returns stdout, stderr and
// the exit code.
func corralAt(t *testing.T, dir string, stdin []byte, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "CORRAL_TEST_CLI=1")
	cmd.Dir = dir
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), errb.String(), code
}

// streamsOnly starts a NATS server with corral's streams and no worker, and
// connects to it.
func streamsOnly(t *testing.T) (string, *nats.Conn) {
	t.Helper()
	url, _ := natstest.Server(t)
	nc, js := natstest.Connect(t, url)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := worker.EnsureStreams(ctx, js, worker.StreamConfig{}); err != nil {
		t.Fatal(err)
	}
	return url, nc
}

// A job for a queue no worker has served is taken by the stream all the
// same: run says so at once, then waits (here until --timeout), instead of
// hanging without a word.
func TestRunNoWorkerForQueue(t *testing.T) {
	url, _ := streamsOnly(t)
	_, stderr, code := corral(t, "run", "--nats", url, "--queue", "typo", "--timeout", "1s", "--", "true")
	if code != 1 || !strings.Contains(stderr, `no worker has served queue "typo" yet`) || !strings.Contains(stderr, "no result within 1s") {
		t.Errorf("code %d, stderr %q", code, stderr)
	}
}

// A --file that makes the job just too big with its headers is refused by
// run itself, saying why; before, the raw "maximum payload exceeded" came
// from the client library.
func TestRunJobTooLargeWithHeaders(t *testing.T) {
	url, nc := streamsOnly(t)
	dir := t.TempDir()
	// The job's JSON is about 400 bytes more than the file: under the
	// max payload without the headers, over it with them.
	big := filepath.Join(dir, "big.txt")
	if err := os.WriteFile(big, []byte(strings.Repeat("x", int(nc.MaxPayload())-150)), 0o644); err != nil {
		t.Fatal(err)
	}
	_, stderr, code := corralAt(t, dir, nil, "run", "--nats", url, "--timeout", "2s", "--file", "big.txt", "--", "true")
	if code != 1 || !strings.Contains(stderr, "above the server's max payload") || strings.Contains(stderr, "maximum payload exceeded") {
		t.Errorf("code %d, stderr %q", code, stderr)
	}
}

// Errors found before talking to a worker need no root.
func TestRunLocalErrors(t *testing.T) {
	_, stderr, code := corral(t, "run", "--nats", "nats://127.0.0.1:1", "--", "true")
	if code != 1 || !strings.Contains(stderr, "corral up") || strings.Count(stderr, "\n") != 1 {
		t.Errorf("unreachable server: code %d, stderr %q", code, stderr)
	}
	_, stderr, code = corral(t, "run", "--nats", "nats://127.0.0.1:1", "--memory", "100G", "--", "true")
	if code != 1 || !strings.Contains(stderr, "memory_bytes") || !strings.Contains(stderr, "locally") {
		t.Errorf("limit above the maximum: code %d, stderr %q", code, stderr)
	}
	_, stderr, code = corral(t, "run", "--nats", "nats://127.0.0.1:1", "--collect", "../x", "--", "true")
	if code != 1 || !strings.Contains(stderr, "collect") {
		t.Errorf("collect ..: code %d, stderr %q", code, stderr)
	}
	_, stderr, code = corral(t, "run", "--help")
	if code != 0 || !strings.Contains(stderr, "Examples:") {
		t.Errorf("--help: code %d, stderr %q", code, stderr)
	}
	_, stderr, code = corral(t, "submit", "--nats", "nats://127.0.0.1:1", "-")
	if code != 1 || !strings.Contains(stderr, "corral up") {
		t.Errorf("submit, unreachable server: code %d, stderr %q", code, stderr)
	}
}

func TestRunAgainstWorker(t *testing.T) {
	url, data, config, nc, _ := workerTestSetup(t)
	startWorkerProc(t, url, data, config)
	results := collectResults(t, nc)
	nats := []string{"run", "--nats", url}
	run := func(t *testing.T, dir string, stdin []byte, args ...string) (string, string, int) {
		t.Helper()
		return corralAt(t, dir, stdin, append(append([]string{}, nats...), args...)...)
	}

	t.Run("exit code", func(t *testing.T) {
		stdout, stderr, code := run(t, "", nil, "--", "sh", "-c", "echo hi; echo oops >&2; exit 3")
		if stdout != "hi\n" || stderr != "oops\n" || code != 3 {
			t.Fatalf("stdout %q stderr %q code %d", stdout, stderr, code)
		}
	})

	t.Run("json", func(t *testing.T) {
		stdout, stderr, code := run(t, "", nil, "--json", "--label", "k=v", "--", "sh", "-c", "exit 2")
		var res jobs.Result
		if err := json.Unmarshal([]byte(stdout), &res); err != nil {
			t.Fatalf("%v: %q %q", err, stdout, stderr)
		}
		if code != 1 || res.Status != jobs.StatusNonzeroExit || res.Steps[0].ExitCode != 2 || res.Labels["k"] != "v" {
			t.Fatalf("code %d: %+v", code, res)
		}
	})

	t.Run("files and collect", func(t *testing.T) {
		src := t.TempDir()
		os.WriteFile(filepath.Join(src, "in.txt"), []byte("round trip\n"), 0o644)
		os.WriteFile(filepath.Join(src, "run.sh"), []byte("#!/bin/sh\nmkdir -p sub\ncp data.txt out.txt\necho $1 > sub/deep.txt\n"), 0o755)
		cwd := t.TempDir()
		stdout, stderr, code := run(t, cwd, nil,
			"--file", filepath.Join(src, "in.txt")+":data.txt", "--file", filepath.Join(src, "run.sh"),
			"--collect", "out.txt", "--collect", "sub/*.txt", "--", "./run.sh", "deep")
		if code != 0 {
			t.Fatalf("code %d stdout %q stderr %q", code, stdout, stderr)
		}
		if b, err := os.ReadFile(filepath.Join(cwd, "out.txt")); err != nil || string(b) != "round trip\n" {
			t.Errorf("out.txt: %q %v", b, err)
		}
		if b, err := os.ReadFile(filepath.Join(cwd, "sub", "deep.txt")); err != nil || string(b) != "deep\n" {
			t.Errorf("sub/deep.txt: %q %v", b, err)
		}
		// With --json the files stay in the result.
		cwd2 := t.TempDir()
		stdout, _, code = run(t, cwd2, nil, "--json", "--file", filepath.Join(src, "in.txt")+":data.txt",
			"--collect", "data.txt", "--", "true")
		if code != 0 || !strings.Contains(stdout, `"round trip\n"`) {
			t.Errorf("json collect: code %d %s", code, stdout)
		}
		if _, err := os.Stat(filepath.Join(cwd2, "data.txt")); err == nil {
			t.Error("--json wrote a collected file")
		}
	})

	t.Run("stdin", func(t *testing.T) {
		in := filepath.Join(t.TempDir(), "in.txt")
		os.WriteFile(in, []byte("one\ntwo\n"), 0o644)
		stdout, stderr, code := run(t, "", nil, "--stdin", in, "--", "wc", "-l")
		if strings.TrimSpace(stdout) != "2" || code != 0 {
			t.Fatalf("stdout %q stderr %q code %d", stdout, stderr, code)
		}
		stdout, _, code = run(t, "", []byte("piped\n"), "--stdin", "-", "--", "cat")
		if stdout != "piped\n" || code != 0 {
			t.Fatalf("stdin -: %q %d", stdout, code)
		}
	})

	t.Run("stream", func(t *testing.T) {
		stdout, stderr, code := run(t, "", nil, "--stream", "--", "sh", "-c", "echo a; sleep 0.3; echo b >&2; echo c")
		if stdout != "a\nc\n" || stderr != "b\n" || code != 0 {
			t.Fatalf("stdout %q stderr %q code %d", stdout, stderr, code)
		}
	})

	t.Run("limit", func(t *testing.T) {
		_, stderr, code := run(t, "", nil, "--wall", "300ms", "--", "sleep", "5")
		if code != 137 || !strings.Contains(stderr, "wall_time_limit") {
			t.Fatalf("stderr %q code %d", stderr, code)
		}
	})

	t.Run("rejected", func(t *testing.T) {
		stdout, stderr, code := run(t, "", nil, "--image", "no-such-image", "--", "true")
		t.Logf("stderr: %s", stderr)
		if code != 1 || stdout != "" || !strings.Contains(stderr, "rejected") || !strings.Contains(stderr, "image") {
			t.Fatalf("stdout %q stderr %q code %d", stdout, stderr, code)
		}
	})

	t.Run("interrupt cancels", func(t *testing.T) {
		cmd := exec.Command(os.Args[0], append(append([]string{}, nats...), "--stream", "--id", "to-interrupt", "--", "sh", "-c", "echo started; sleep 20")...)
		cmd.Env = append(os.Environ(), "CORRAL_TEST_CLI=1")
		var errb bytes.Buffer
		cmd.Stderr = &errb
		out, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 8)
		if _, err := io.ReadFull(out, buf); err != nil || string(buf) != "started\n" {
			t.Fatalf("%q %v %s", buf, err, errb.String())
		}
		cmd.Process.Signal(os.Interrupt)
		err := cmd.Wait()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 130 || !strings.Contains(errb.String(), "cancelled job to-interrupt") {
			t.Fatalf("%v: %s", err, errb.String())
		}
		for {
			r := nextResult(t, results, 10*time.Second)
			if r.ID == "to-interrupt" {
				if r.Status != jobs.StatusCancelled {
					t.Fatalf("%+v", r)
				}
				break
			}
		}
	})

	t.Run("timeout cancels", func(t *testing.T) {
		_, stderr, code := run(t, "", nil, "--timeout", "500ms", "--", "sleep", "10")
		if code != 1 || !strings.Contains(stderr, "cancelled job") {
			t.Fatalf("stderr %q code %d", stderr, code)
		}
	})
}

func TestSubmitJSONL(t *testing.T) {
	url, data, config, _, _ := workerTestSetup(t)
	startWorkerProc(t, url, data, config)

	const n = 50
	const malformed, badID, noID, slow = 10, 20, 30, 1
	var in bytes.Buffer
	lineOf := make([]int, n) // physical line number of job i
	line := 0
	for i := 0; i < n; i++ {
		if i == 25 {
			in.WriteString("\n") // blank: skipped
			line++
		}
		line++
		lineOf[i] = line
		switch {
		case i == malformed:
			in.WriteString(`{"id": "broken", "cmd": [` + "\n")
		case i == badID:
			in.WriteString(`{"id": "bad id!", "cmd": ["true"]}` + "\n")
		case i == noID || i == noID+1:
			fmt.Fprintf(&in, `{"cmd": ["echo", "%d"]}`+"\n", i)
		case i == slow:
			in.WriteString(`{"id": "job-1", "cmd": ["sh", "-c", "sleep 1; echo 1"]}` + "\n")
		default:
			fmt.Fprintf(&in, `{"id": "job-%d", "cmd": ["sh", "-c", "echo %d"]}`+"\n", i, i)
		}
	}
	file := filepath.Join(t.TempDir(), "jobs.jsonl")
	os.WriteFile(file, in.Bytes(), 0o644)

	stdout, stderr, code := corral(t, "submit", "--nats", url, "--inflight", "8", file)
	if code != 0 {
		t.Fatalf("code %d\nstderr %s\nstdout %s", code, stderr, stdout)
	}
	t.Logf("stderr: %s", stderr)
	lines := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
	if len(lines) != n {
		t.Fatalf("%d result lines, want %d:\n%s", len(lines), n, stdout)
	}
	for i, l := range lines {
		var res jobs.Result
		if err := json.Unmarshal([]byte(l), &res); err != nil {
			t.Fatalf("line %d: %v: %s", i+1, err, l)
		}
		switch {
		case i == malformed:
			if res.Status != jobs.StatusRejected || !strings.HasSuffix(res.ID, fmt.Sprintf("-%d", lineOf[i])) || !strings.HasPrefix(res.ID, "submit-") {
				t.Errorf("malformed line: %s", l)
			}
		case i == badID:
			if res.Status != jobs.StatusRejected || res.ID != "bad id!" || !strings.Contains(res.Error, "id") {
				t.Errorf("bad id: %s", l)
			}
		case i == noID || i == noID+1:
			want := fmt.Sprintf("-%d", lineOf[i])
			if res.Status != jobs.StatusOK || !strings.HasPrefix(res.ID, "submit-") || !strings.HasSuffix(res.ID, want) ||
				res.Steps[0].Stdout != fmt.Sprintf("%d\n", i) {
				t.Errorf("line %d without id: %s", i+1, l)
			}
		default:
			if res.Status != jobs.StatusOK || res.ID != fmt.Sprintf("job-%d", i) || res.Steps[0].Stdout != fmt.Sprintf("%d\n", i) {
				t.Errorf("line %d: %s", i+1, l)
			}
		}
	}
	if !strings.Contains(stderr, "50 jobs: 48 ok, 2 failed (2 rejected)") {
		t.Errorf("summary: %q", stderr)
	}
}

// Two lines with one id: the same job twice gets its result twice; another
// job under an id already used is rejected locally. Before, the stream
// dropped it as a duplicate and its line got the first job's result.
func TestSubmitDuplicateIDs(t *testing.T) {
	url, data, config, _, _ := workerTestSetup(t)
	startWorkerProc(t, url, data, config)
	same := `{"id": "dup", "cmd": ["echo", "first"]}`
	in := same + "\n" + `{"id": "dup", "cmd": ["echo", "second"]}` + "\n" + same + "\n"
	stdout, stderr, code := corralAt(t, "", []byte(in), "submit", "--nats", url, "-")
	t.Logf("stderr: %s", stderr)
	lines := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
	if code != 0 || len(lines) != 3 {
		t.Fatalf("code %d, stdout %s", code, stdout)
	}
	for i, l := range lines {
		var res jobs.Result
		if err := json.Unmarshal([]byte(l), &res); err != nil {
			t.Fatal(err)
		}
		if i == 1 {
			if res.Status != jobs.StatusRejected || !strings.Contains(res.Error, "line 1's") {
				t.Errorf("line 2: %s", l)
			}
		} else if res.Status != jobs.StatusOK || res.Steps[0].Stdout != "first\n" {
			t.Errorf("line %d: %s", i+1, l)
		}
	}
}

// A line too large to submit and a job whose result does not come within
// --timeout get local results in their places, and the exit code is 1.
func TestSubmitLocalFailures(t *testing.T) {
	url, data, config, nc, _ := workerTestSetup(t)
	startWorkerProc(t, url, data, config)
	results := collectResults(t, nc)
	big := `{"id": "big", "cmd": ["true"], "stdin": "` + strings.Repeat("x", int(nc.MaxPayload())) + `"}`
	in := big + "\n" + `{"id": "slowpoke", "cmd": ["sleep", "20"]}` + "\n" + `{"id": "quick", "cmd": ["true"]}`
	stdout, stderr, code := corralAt(t, "", []byte(in), "submit", "--nats", url, "--timeout", "1500ms", "-")
	t.Logf("stderr: %s", stderr)
	lines := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
	if code != 1 || len(lines) != 3 {
		t.Fatalf("code %d, stdout %s", code, stdout)
	}
	want := []struct {
		id, status, err string
	}{{"big", "internal_error", "max payload"}, {"slowpoke", "internal_error", "timeout"}, {"quick", "ok", ""}}
	for i, l := range lines {
		var res jobs.Result
		if err := json.Unmarshal([]byte(l), &res); err != nil {
			t.Fatal(err)
		}
		if res.ID != want[i].id || string(res.Status) != want[i].status || !strings.Contains(res.Error, want[i].err) {
			t.Errorf("line %d: %s", i+1, l)
		}
	}
	if !strings.Contains(stderr, "3 jobs: 1 ok, 2 failed (2 internal_error)") || !strings.Contains(stderr, "timed out") {
		t.Errorf("summary: %q", stderr)
	}
	// The job left waiting was cancelled.
	for {
		r := nextResult(t, results, 10*time.Second)
		if r.ID == "slowpoke" {
			if r.Status != jobs.StatusCancelled {
				t.Fatalf("%+v", r)
			}
			break
		}
	}
}
