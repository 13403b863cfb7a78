package worker

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/corralhq/corral/isolate"
	"github.com/corralhq/corral/jobs"
	"github.com/corralhq/corral/rootfs/rootfstest"
)

func TestMain(m *testing.M) {
	if isolate.IsInit() {
		isolate.RunInit()
	}
	os.Exit(m.Run())
}

// testSandbox is a real sandbox on the busybox image, loop-mounted.
func testSandbox(t *testing.T) *isolate.Sandbox {
	t.Helper()
	_, img := rootfstest.BusyboxImage(t)
	m := rootfstest.Mounter(t)
	lower, release, err := m.Acquire(img)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(release)
	sb, err := isolate.New(context.Background(), isolate.Config{Lower: lower, RunDir: m.Dir(), CgroupParent: "corral-worker-test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sb.Close() })
	return sb
}

func decode(t *testing.T, s string) *jobs.Job {
	t.Helper()
	j, err := jobs.Decode([]byte(s))
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	if err := j.Validate(jobs.MaxLimits()); err != nil {
		t.Fatalf("validate: %v", err)
	}
	return j
}

type memObjects struct {
	mu   sync.Mutex
	objs map[string][]byte
}

func (m *memObjects) Get(ctx context.Context, bucket, name string, max int64) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.objs[bucket+"/"+name]
	if !ok {
		return nil, ErrNoObject
	}
	if int64(len(b)) > max {
		return nil, ErrObjectTooBig
	}
	return b, nil
}

func (m *memObjects) Put(ctx context.Context, name string, r io.Reader) (string, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return "", err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.objs[jobs.ObjectBucket+"/"+name] = b
	return jobs.ObjectBucket + "/" + name, nil
}

func TestRunJob(t *testing.T) {
	sb := testSandbox(t)
	q := QueueConfig{InlineFileBytes: 1024, InlineTotalBytes: 4096}.WithDefaults()
	objs := &memObjects{objs: map[string][]byte{"in/data.txt": []byte("from the store\n")}}
	job := decode(t, `{
	  "id": "j1",
	  "files": [
	    {"path": "main.sh", "content": "echo hello $1; cat in.txt", "mode": "0755"},
	    {"path": "in.txt", "content_b64": "NDIK"},
	    {"path": "obj/data.txt", "object": "in/data.txt"}
	  ],
	  "steps": [
	    {"name": "build", "cmd": ["sh", "-c", "cat obj/data.txt > out.txt; head -c 3000 /dev/zero > big.bin"]},
	    {"cmd": ["./main.sh", "world"], "expect_stdout": "hello world\n42", "compare": "lines"},
	    {"cmd": ["sh", "-c", "echo $GREETING; exit 3"], "env": {"GREETING": "hi"}, "continue_on_failure": true},
	    {"cmd": ["false"]},
	    {"name": "never", "cmd": ["true"]}
	  ],
	  "collect": ["out.txt", "big.bin"]
	}`)
	out, err := runJob(context.Background(), sb, job, q, objs, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		name   string
		status jobs.Status
	}{{"build", jobs.StatusOK}, {"step-2", jobs.StatusOK}, {"step-3", jobs.StatusNonzeroExit}, {"step-4", jobs.StatusNonzeroExit}, {"never", jobs.StatusSkipped}}
	if len(out.Steps) != len(want) {
		t.Fatalf("%d steps: %+v", len(out.Steps), out.Steps)
	}
	for i, w := range want {
		if s := out.Steps[i]; s.Name != w.name || s.Status != w.status {
			t.Errorf("step %d: %s %s, want %s %s (%q)", i, s.Name, s.Status, w.name, w.status, s.Stderr)
		}
	}
	if m := out.Steps[1].Matched; m == nil || !*m {
		t.Errorf("step-2 not matched: %+v", out.Steps[1])
	}
	if out.Steps[2].Stdout != "hi\n" || out.Steps[2].ExitCode != 3 {
		t.Errorf("step-3: %+v", out.Steps[2])
	}
	if jobs.FinalStatus(out.Steps) != jobs.StatusNonzeroExit {
		t.Errorf("job status %s", jobs.FinalStatus(out.Steps))
	}
	if len(out.Files) != 2 {
		t.Fatalf("files %+v notes %v", out.Files, out.Notes)
	}
	for _, f := range out.Files {
		switch f.Path {
		case "out.txt":
			if f.Content != "from the store\n" || f.Size != 15 {
				t.Errorf("out.txt: %+v", f)
			}
		case "big.bin":
			if f.Object != "corral-files/j1/big.bin" || !bytes.Equal(objs.objs[f.Object], make([]byte, 3000)) {
				t.Errorf("big.bin should go to the object store: %+v", f)
			}
		}
	}
}

func TestRunJobExpectMismatchSkipsRest(t *testing.T) {
	sb := testSandbox(t)
	job := decode(t, `{"steps": [
	  {"cmd": ["echo", "1 2  3"], "expect_stdout": "1 2 3", "compare": "tokens"},
	  {"cmd": ["echo", "x"], "expect_stdout": "y"},
	  {"cmd": ["true"]}]}`)
	out, err := runJob(context.Background(), sb, job, QueueConfig{}.WithDefaults(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !*out.Steps[0].Matched || *out.Steps[1].Matched || out.Steps[1].Status != jobs.StatusOK || out.Steps[2].Status != jobs.StatusSkipped {
		t.Fatalf("%+v", out.Steps)
	}
}

func TestRunJobUnsafeFile(t *testing.T) {
	sb := testSandbox(t)
	// The first job plants a symlink; without a reset, the next job's file
	// write through it must be rejected (the worker resets between jobs;
	// this is defense in depth). It collects a file, so that its step is
	// not Last: the sandbox does not reset itself.
	plant := decode(t, `{"cmd": ["ln", "-s", "/etc", "link"], "collect": ["none"]}`)
	if _, err := runJob(context.Background(), sb, plant, QueueConfig{}.WithDefaults(), nil, nil); err != nil {
		t.Fatal(err)
	}
	job := decode(t, `{"files": [{"path": "link/passwd", "content": "x"}], "cmd": ["true"], "collect": ["link"]}`)
	_, err := runJob(context.Background(), sb, job, QueueConfig{}.WithDefaults(), nil, nil)
	var re *jobs.RejectError
	if !errors.As(err, &re) || !strings.Contains(re.Error(), "symlink") {
		t.Fatalf("want a rejection naming the symlink, got %v", err)
	}
	// Collecting the symlink itself is a note, not a file.
	job = decode(t, `{"cmd": ["true"], "collect": ["link"]}`)
	out, err := runJob(context.Background(), sb, job, QueueConfig{}.WithDefaults(), nil, nil)
	if err != nil || len(out.Files) != 0 || len(out.Notes) != 1 {
		t.Fatalf("%v %+v", err, out)
	}
}

func TestRunJobLiveOutputAndSeccomp(t *testing.T) {
	sb := testSandbox(t)
	var mu sync.Mutex
	var got bytes.Buffer
	job := decode(t, `{"cmd": ["sh", "-c", "echo live; unshare -n true"], "seccomp": "default"}`)
	out, err := runJob(context.Background(), sb, job, QueueConfig{}.WithDefaults(), nil, func(step, stream string, p []byte) {
		mu.Lock()
		defer mu.Unlock()
		got.WriteString(step + "/" + stream + ":" + string(p))
	})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(got.String(), "step-1/stdout:live\n") {
		t.Errorf("live output %q", got.String())
	}
	if out.Steps[0].Status != jobs.StatusNonzeroExit || !strings.Contains(out.Steps[0].Stderr, "not permitted") {
		t.Errorf("unshare under seccomp default: %+v", out.Steps[0])
	}
	// A queue whose default is strict: the shell cannot even fork. The
	// last step was Last: the sandbox resets itself, Reset waits for it.
	if err := sb.Reset(context.Background(), 0); err != nil {
		t.Fatal(err)
	}
	job = decode(t, `{"cmd": ["sh", "-c", "true | true"]}`)
	out, err = runJob(context.Background(), sb, job, QueueConfig{Seccomp: jobs.SeccompStrict}.WithDefaults(), nil, nil)
	if err != nil || out.Steps[0].Status == jobs.StatusOK {
		t.Fatalf("strict queue default not applied: %v %+v", err, out)
	}
}

// flakyObjects fails every Get as a server in trouble would.
type flakyObjects struct{ *memObjects }

func (flakyObjects) Get(context.Context, string, string, int64) ([]byte, error) {
	return nil, errors.New("nats: timeout")
}

// A missing object rejects the job; an object store that fails otherwise
// does not: the error is the worker's, and another attempt may succeed.
func TestRunJobObjectErrors(t *testing.T) {
	sb := testSandbox(t)
	job := decode(t, `{"files": [{"path": "in", "object": "inputs/missing"}], "cmd": ["true"]}`)
	_, err := runJob(context.Background(), sb, job, QueueConfig{}.WithDefaults(), &memObjects{objs: map[string][]byte{}}, nil)
	var re *jobs.RejectError
	if !errors.As(err, &re) || re.Field != "files[0].object" {
		t.Fatalf("missing object: want a rejection, got %v", err)
	}
	_, err = runJob(context.Background(), sb, job, QueueConfig{}.WithDefaults(), flakyObjects{}, nil)
	if err == nil || errors.As(err, &re) || !strings.Contains(err.Error(), "timeout") {
		t.Fatalf("failing store: want a plain error, got %v", err)
	}
}

// Files bigger than the job's disk_bytes reject the job: the job's doing,
// not the sandbox's (before: internal_error after three runs).
func TestRunJobFilesTooBig(t *testing.T) {
	sb := testSandbox(t)
	big := strings.Repeat("x", 300_000)
	job := decode(t, `{"files": [{"path": "big", "content": "`+big+`"}], "cmd": ["true"], "limits": {"disk_bytes": 65536}}`)
	if err := sb.Reset(context.Background(), 65536); err != nil {
		t.Fatal(err)
	}
	_, err := runJob(context.Background(), sb, job, QueueConfig{}.WithDefaults(), nil, nil)
	var re *jobs.RejectError
	if !errors.As(err, &re) || !strings.Contains(re.Reason, "disk_bytes") {
		t.Fatalf("want a rejection naming disk_bytes, got %v", err)
	}
}

// Thousands of collected fifos: the skipped ones are listed up to 100 and
// counted beyond; the sandbox survives (before: the init's reply outgrew
// its socket's buffer, the init died, internal_error after three runs).
func TestRunJobCollectManySkipped(t *testing.T) {
	sb := testSandbox(t)
	job := decode(t, `{"cmd": ["sh", "-c", "i=0; while [ $i -lt 3000 ]; do mkfifo f$i; i=$((i+1)); done"], "collect": ["f*"]}`)
	out, err := runJob(context.Background(), sb, job, QueueConfig{}.WithDefaults(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Notes) != 101 || !strings.Contains(out.Notes[100], "2900 more") {
		t.Fatalf("%d notes, last %q", len(out.Notes), out.Notes[len(out.Notes)-1])
	}
}
