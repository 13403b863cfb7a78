package jobs

import (
	"encoding/json"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// keys returns the sorted keys of a marshalled JSON object.
func keys(t *testing.T, b []byte) []string {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	return slices.Sorted(maps.Keys(m))
}

func TestSetOutput(t *testing.T) {
	tests := []struct {
		in        []byte
		text, b64 string
	}{
		{nil, "", ""},
		{[]byte("hi\n"), "hi\n", ""},
		{[]byte("héllo ✓"), "héllo ✓", ""},
		{[]byte{0xff, 0xfe}, "", "//4="},
		{[]byte("ok\xc3"), "", "b2vD"}, // cut in the middle of a rune
		{[]byte("a\x00b"), "a\x00b", ""},
	}
	for _, tt := range tests {
		var r StepResult
		r.SetStdout(tt.in)
		r.SetStderr(tt.in)
		if r.Stdout != tt.text || r.StdoutB64 != tt.b64 || r.Stderr != tt.text || r.StderrB64 != tt.b64 {
			t.Errorf("%q: got %+v", tt.in, r)
		}
		out, err := r.StdoutBytes()
		if err != nil || string(out) != string(tt.in) {
			t.Errorf("%q: StdoutBytes = %q, %v", tt.in, out, err)
		}
		errb, err := r.StderrBytes()
		if err != nil || string(errb) != string(tt.in) {
			t.Errorf("%q: StderrBytes = %q, %v", tt.in, errb, err)
		}
	}
	// Setting again replaces the other form.
	var r StepResult
	r.SetStdout([]byte{0xff})
	r.SetStdout([]byte("x"))
	if r.Stdout != "x" || r.StdoutB64 != "" {
		t.Errorf("got %+v", r)
	}
}

func TestStepResultJSON(t *testing.T) {
	always := []string{"exit_code", "name", "signal", "status", "stderr_truncated", "stdout_truncated", "usage"}
	with := func(extra ...string) []string {
		return slices.Sorted(slices.Values(append(slices.Clone(always), extra...)))
	}
	tests := []struct {
		name string
		r    StepResult
		keys []string
	}{
		{"zero", StepResult{}, with("stdout", "stderr")},
		{"text", StepResult{Stdout: "a", Stderr: "b"}, with("stdout", "stderr")},
		{"b64", StepResult{StdoutB64: "AA==", StderrB64: "AA=="}, with("stdout_b64", "stderr_b64")},
		{"mixed", StepResult{StdoutB64: "AA==", Stderr: "x"}, with("stdout_b64", "stderr")},
		{"both set", StepResult{Stdout: "x", StdoutB64: "AA=="}, with("stdout_b64", "stderr")},
		{"matched", StepResult{Matched: ptr(false)}, with("stdout", "stderr", "matched")},
		{"pids", StepResult{PidsLimitReached: true}, with("stdout", "stderr", "pids_limit_reached")},
	}
	for _, tt := range tests {
		for _, v := range []any{tt.r, &tt.r} {
			b, err := json.Marshal(v)
			if err != nil {
				t.Fatal(err)
			}
			if got := keys(t, b); !slices.Equal(got, tt.keys) {
				t.Errorf("%s: keys %q, want %q (%s)", tt.name, got, tt.keys, b)
			}
			var m map[string]json.RawMessage
			_ = json.Unmarshal(b, &m)
			if got := keys(t, m["usage"]); !slices.Equal(got, []string{"cpu_time_ms", "memory_peak_bytes", "sys_ms", "user_ms", "wall_time_ms"}) {
				t.Errorf("%s: usage keys %q", tt.name, got)
			}
		}
	}
}

func TestStepResultRoundTrip(t *testing.T) {
	r := StepResult{
		Name: "run", Status: StatusSignaled, ExitCode: -1, Signal: "SIGKILL",
		StdoutB64: "//4=", Stderr: "boom", StdoutTruncated: true,
		Usage:   Usage{CPUTimeMs: 1.5, UserMs: 1, SysMs: 0.5, WallTimeMs: 2.25, MemoryPeakBytes: 7340032},
		Matched: ptr(true), PidsLimitReached: true,
	}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var got StepResult
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, r) {
		t.Errorf("got %+v, want %+v", got, r)
	}
}

func TestResultJSON(t *testing.T) {
	// A rejected result: no steps, no files, no labels, no times.
	r := Result{ID: "x", Queue: DefaultQueue, Status: StatusRejected, Error: "id: bad", Attempt: 1}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"attempt", "error", "id", "queue", "status", "steps", "timing", "worker"}
	if got := keys(t, b); !slices.Equal(got, want) {
		t.Errorf("keys %q, want %q (%s)", got, want, b)
	}
	var m map[string]json.RawMessage
	_ = json.Unmarshal(b, &m)
	if string(m["steps"]) != "[]" {
		t.Errorf("steps = %s, want []", m["steps"])
	}
	if got := keys(t, m["worker"]); !slices.Equal(got, []string{"host", "version"}) {
		t.Errorf("worker keys %q", got)
	}
	if got := keys(t, m["timing"]); !slices.Equal(got, []string{"queue_ms", "setup_ms"}) {
		t.Errorf("timing keys %q", got)
	}

	// A full result, marshalled through a pointer too.
	now := time.Date(2026, 1, 2, 3, 4, 5, 600, time.UTC)
	r = Result{
		ID: "sub-42", Queue: "default", Status: StatusOK,
		Steps:   []StepResult{{Name: "run", Status: StatusOK, Stdout: "hi\n"}},
		Files:   []CollectedFile{{Path: "out.txt", Size: 3, Content: "42\n"}},
		Attempt: 1,
		Worker:  WorkerInfo{Host: "node-1", Version: "0.1.0"},
		Timing:  Timing{EnqueuedAt: now, StartedAt: now, FinishedAt: now, QueueMs: 3, SetupMs: 0.4},
		Labels:  map[string]string{"tenant": "t1"},
	}
	b, err = json.Marshal(&r)
	if err != nil {
		t.Fatal(err)
	}
	want = []string{"attempt", "error", "files", "id", "labels", "queue", "status", "steps", "timing", "worker"}
	if got := keys(t, b); !slices.Equal(got, want) {
		t.Errorf("keys %q, want %q (%s)", got, want, b)
	}
	_ = json.Unmarshal(b, &m)
	if got := keys(t, m["timing"]); !slices.Equal(got, []string{"enqueued_at", "finished_at", "queue_ms", "setup_ms", "started_at"}) {
		t.Errorf("timing keys %q", got)
	}
	var back Result
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, r) {
		t.Errorf("round trip:\ngot  %+v\nwant %+v", back, r)
	}
}

func TestDecodeProtocolResult(t *testing.T) {
	const example = `{
  "id": "sub-42", "queue": "default", "status": "ok",
  "steps": [{
    "name": "run", "status": "ok", "exit_code": 0, "signal": "",
    "stdout": "hi\n", "stderr": "", "stdout_truncated": false, "stderr_truncated": false,
    "usage": {"cpu_time_ms": 12, "user_ms": 9, "sys_ms": 3, "wall_time_ms": 15,
              "memory_peak_bytes": 7340032}
  }],
  "files": [{"path": "out.txt", "size": 3, "content": "42\n"}],
  "error": "",
  "attempt": 1,
  "worker": {"host": "node-1", "version": "0.1.0"},
  "timing": {"enqueued_at": "2026-01-02T03:04:05Z", "started_at": "2026-01-02T03:04:05.003Z", "finished_at": "2026-01-02T03:04:05.02Z",
             "queue_ms": 3, "setup_ms": 0.4},
  "labels": {"tenant": "t1"}
}`
	var r Result
	if err := json.Unmarshal([]byte(example), &r); err != nil {
		t.Fatal(err)
	}
	if r.Steps[0].Usage.MemoryPeakBytes != 7340032 || r.Timing.SetupMs != 0.4 || r.Files[0].Content != "42\n" {
		t.Errorf("got %+v", r)
	}
}

func TestCollectedFileJSON(t *testing.T) {
	tests := []struct {
		f    CollectedFile
		keys []string
	}{
		{CollectedFile{Path: "a"}, []string{"content", "path", "size"}},
		{CollectedFile{Path: "a", Size: 1, Content: "x"}, []string{"content", "path", "size"}},
		{CollectedFile{Path: "a", ContentB64: "AA=="}, []string{"content_b64", "path", "size"}},
		{CollectedFile{Path: "a", Object: "corral-files/x"}, []string{"object", "path", "size"}},
		{CollectedFile{Path: "a", Content: "x", Object: "corral-files/x"}, []string{"object", "path", "size"}},
	}
	for _, tt := range tests {
		b, err := json.Marshal(tt.f)
		if err != nil {
			t.Fatal(err)
		}
		if got := keys(t, b); !slices.Equal(got, tt.keys) {
			t.Errorf("%+v: keys %q, want %q", tt.f, got, tt.keys)
		}
	}
	var f CollectedFile
	f.SetContent([]byte{0, 0xff})
	if f.ContentB64 != "AP8=" || f.Content != "" || f.Size != 2 {
		t.Errorf("SetContent binary: %+v", f)
	}
	if b, err := f.Bytes(); err != nil || string(b) != "\x00\xff" {
		t.Errorf("Bytes = %q, %v", b, err)
	}
	f.SetContent([]byte("text"))
	if f.Content != "text" || f.ContentB64 != "" || f.Size != 4 {
		t.Errorf("SetContent text: %+v", f)
	}
}

func TestStatus(t *testing.T) {
	step := []Status{StatusOK, StatusNonzeroExit, StatusSignaled, StatusCPUTimeLimit, StatusWallTimeLimit,
		StatusMemoryLimit, StatusOutputLimit, StatusFileSizeLimit, StatusCancelled, StatusSkipped, StatusInternalError}
	wire := []string{"ok", "nonzero_exit", "signaled", "cpu_time_limit", "wall_time_limit",
		"memory_limit", "output_limit", "file_size_limit", "cancelled", "skipped", "internal_error"}
	for i, s := range step {
		if string(s) != wire[i] || !s.Valid() || !s.StepStatus() {
			t.Errorf("%q", s)
		}
	}
	for _, s := range []Status{StatusRejected, StatusExpired} {
		if !s.Valid() || s.StepStatus() {
			t.Errorf("%q", s)
		}
	}
	if StatusRejected != "rejected" || StatusExpired != "expired" {
		t.Error("job statuses")
	}
	if Status("OK").Valid() || Status("").Valid() {
		t.Error("bogus status valid")
	}
}

func TestFinalStatus(t *testing.T) {
	tests := []struct {
		steps []Status
		want  Status
	}{
		{nil, StatusInternalError},
		{[]Status{StatusOK}, StatusOK},
		{[]Status{StatusOK, StatusNonzeroExit}, StatusNonzeroExit},
		{[]Status{StatusNonzeroExit, StatusSkipped, StatusSkipped}, StatusNonzeroExit},
		{[]Status{StatusOK, StatusCancelled, StatusSkipped}, StatusCancelled},
	}
	for _, tt := range tests {
		var rs []StepResult
		for _, s := range tt.steps {
			rs = append(rs, StepResult{Status: s})
		}
		if got := FinalStatus(rs); got != tt.want {
			t.Errorf("FinalStatus(%v) = %s, want %s", tt.steps, got, tt.want)
		}
	}
}

func TestSucceeded(t *testing.T) {
	tests := []struct {
		r    StepResult
		want bool
	}{
		{StepResult{Status: StatusOK}, true},
		{StepResult{Status: StatusOK, Matched: ptr(true)}, true},
		{StepResult{Status: StatusOK, Matched: ptr(false)}, false},
		{StepResult{Status: StatusNonzeroExit, Matched: ptr(true)}, false},
	}
	for _, tt := range tests {
		if got := tt.r.Succeeded(); got != tt.want {
			t.Errorf("%+v: Succeeded = %v", tt.r, got)
		}
	}
}

// TestResultJSONFields: resultJSON, Result's wire form, has every field of
// Result, in the same order, with the same JSON name and options.
func TestResultJSONFields(t *testing.T) {
	rt, wt := reflect.TypeFor[Result](), reflect.TypeFor[resultJSON]()
	if rt.NumField() != wt.NumField() {
		t.Fatalf("Result has %d fields, resultJSON %d", rt.NumField(), wt.NumField())
	}
	for i := range rt.NumField() {
		rf, wf := rt.Field(i), wt.Field(i)
		if rf.Name != wf.Name || rf.Tag.Get("json") != wf.Tag.Get("json") {
			t.Errorf("field %d: Result.%s `json:%q`, resultJSON.%s `json:%q`", i, rf.Name, rf.Tag.Get("json"), wf.Name, wf.Tag.Get("json"))
		}
	}
}

// BenchmarkResultMarshal encodes a job's result, as the worker does for
// every job: that of /bin/true, and one with 64 KiB of output.
func BenchmarkResultMarshal(b *testing.B) {
	now := time.Date(2026, 11, 26, 3, 0, 0, 123456789, time.UTC)
	r := Result{
		ID: "job-0123456789", Queue: DefaultQueue, Status: StatusOK,
		Steps: []StepResult{{
			Name: "step-1", Status: StatusOK,
			Usage: Usage{CPUTimeMs: 0.412, UserMs: 0, SysMs: 0.412, WallTimeMs: 2.183, MemoryPeakBytes: 425984},
		}},
		Attempt: 1,
		Worker:  WorkerInfo{Host: "corral-1", Version: "dev"},
		Timing: Timing{
			EnqueuedAt: now, StartedAt: now.Add(210 * time.Microsecond), FinishedAt: now.Add(2600 * time.Microsecond),
			QueueMs: 0.21, SetupMs: 0.03,
		},
	}
	b.Run("true", func(b *testing.B) {
		for b.Loop() {
			if _, err := r.MarshalJSON(); err != nil {
				b.Fatal(err)
			}
		}
	})
	big := r
	big.Steps = []StepResult{r.Steps[0]}
	big.Steps[0].Stdout = strings.Repeat("0123456789 abcdef\n", 64<<10/18)
	b.Run("stdout-64KiB", func(b *testing.B) {
		for b.Loop() {
			if _, err := big.MarshalJSON(); err != nil {
				b.Fatal(err)
			}
		}
	})
}
