package jobs

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
)

// protocolJob is the example job of PROTOCOL.md.
const protocolJob = `{
  "id": "sub-42",
  "image": "python",
  "files": [{"path": "main.py", "content": "print(input())"}],
  "steps": [
    {"name": "run", "cmd": ["python3", "main.py"], "stdin": "hi\n",
     "limits": {"cpu_time_ms": 2000, "wall_time_ms": 5000, "memory_bytes": 268435456}}
  ],
  "network": "none",
  "reply_to": "corral.results.sub-42",
  "stream_output": false,
  "collect": ["out.txt"],
  "labels": {"tenant": "t1"}
}`

func TestDecodeProtocolExample(t *testing.T) {
	j, err := Decode([]byte(protocolJob))
	if err != nil {
		t.Fatal(err)
	}
	want := &Job{
		ID:      "sub-42",
		Image:   "python",
		Files:   []File{{Path: "main.py", Content: "print(input())"}},
		Steps:   []Step{{Name: "run", Cmd: []string{"python3", "main.py"}, Stdin: "hi\n", Limits: Limits{CPUTimeMs: 2000, WallTimeMs: 5000, MemoryBytes: 268435456}}},
		Network: NetworkNone,
		ReplyTo: "corral.results.sub-42",
		Collect: []string{"out.txt"},
		Labels:  map[string]string{"tenant": "t1"},
	}
	if !reflect.DeepEqual(j, want) {
		t.Errorf("got  %+v\nwant %+v", j, want)
	}
	if err := j.Validate(MaxLimits()); err != nil {
		t.Error(err)
	}
	if got := j.ReplySubject(); got != "corral.results.sub-42" {
		t.Errorf("ReplySubject = %q", got)
	}
}

func TestShorthand(t *testing.T) {
	j, err := Decode([]byte(`{"id":"s","cmd":["cat"],"env":{"A":"1"},"cwd":"/tmp","stdin_b64":"aGkK",
		"limits":{"pids":8},"expect_stdout":"hi","compare":"exact"}`))
	if err != nil {
		t.Fatal(err)
	}
	want := []Step{{
		Name:         "step-1",
		Cmd:          []string{"cat"},
		Env:          map[string]string{"A": "1"},
		Cwd:          "/tmp",
		StdinB64:     "aGkK",
		Limits:       Limits{Pids: 8},
		ExpectStdout: ptr("hi"),
		Compare:      CompareExact,
	}}
	if !reflect.DeepEqual(j.Steps, want) {
		t.Errorf("steps: got %+v, want %+v", j.Steps, want)
	}
	if j.hasShorthand() {
		t.Error("shorthand fields left after Normalize")
	}
	if err := j.Validate(MaxLimits()); err != nil {
		t.Error(err)
	}
	// Marshalled again, the job is in the steps form and decodes the same.
	b, err := json.Marshal(j)
	if err != nil {
		t.Fatal(err)
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(b, &top); err != nil {
		t.Fatal(err)
	}
	if _, ok := top["cmd"]; ok || top["steps"] == nil {
		t.Errorf("marshalled job is not in the steps form: %s", b)
	}
	j2, err := Decode(b)
	if err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	if !reflect.DeepEqual(j2.Steps, j.Steps) {
		t.Errorf("round trip: got %+v, want %+v", j2.Steps, j.Steps)
	}
}

func TestShorthandEmptyExpectation(t *testing.T) {
	// An empty expect_stdout is an expectation (of no output), not absent.
	j, err := Decode([]byte(`{"cmd":["true"],"expect_stdout":""}`))
	if err != nil {
		t.Fatal(err)
	}
	if e := j.Steps[0].ExpectStdout; e == nil || *e != "" {
		t.Errorf("ExpectStdout = %v", e)
	}
}

func TestStepNames(t *testing.T) {
	j, err := Decode([]byte(`{"steps":[{"cmd":["a"]},{"name":"build","cmd":["b"]},{"cmd":["c"]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range j.Steps {
		names = append(names, s.Name)
	}
	if got := strings.Join(names, ","); got != "step-1,build,step-3" {
		t.Errorf("names = %s", got)
	}
}

func TestNormalize(t *testing.T) {
	j := &Job{Cmd: []string{"x"}, Limits: Limits{Pids: 1}}
	if err := j.Normalize(); err != nil {
		t.Fatal(err)
	}
	if len(j.Steps) != 1 || j.Steps[0].Name != "step-1" || j.Steps[0].Limits.Pids != 1 || j.Cmd != nil || j.Limits != (Limits{}) {
		t.Errorf("normalised: %+v", j)
	}
	// Errors keep naming the field the submitter wrote.
	j.Steps[0].Cmd = nil
	if err := j.Validate(MaxLimits()); err == nil || err.Error() != "cmd: must not be empty" {
		t.Errorf("got %v", err)
	}
	j = &Job{Cwd: "/x", Steps: []Step{{Cmd: []string{"x"}}}}
	if err := j.Normalize(); err == nil || err.Error() != "cwd: the single-step shorthand cannot be mixed with steps" {
		t.Errorf("mixed: %v", err)
	}
}

func TestFileMode(t *testing.T) {
	tests := []struct {
		json string
		want FileMode
		ok   bool
	}{
		{`493`, 0o755, true},
		{`"0755"`, 0o755, true},
		{`"755"`, 0o755, true},
		{`"0"`, 0, true},
		{`0`, 0, true},
		{`"04755"`, 0o4755, true},
		{`null`, 0, true},
		{`"0o755"`, 0, false},
		{`"8"`, 0, false},
		{`""`, 0, false},
		{`-1`, 0, false},
		{`1.0`, 1, true},
		{`4.2e2`, 420, true},
		{`1.5`, 0, false},
		{`1e300`, 0, false},
		{`"0x1ff"`, 0, false},
		{`[]`, 0, false},
	}
	for _, tt := range tests {
		var m FileMode
		err := json.Unmarshal([]byte(tt.json), &m)
		if (err == nil) != tt.ok || m != tt.want {
			t.Errorf("%s: got %#o, %v; want %#o, ok %v", tt.json, m, err, tt.want, tt.ok)
		}
	}
	b, err := json.Marshal(File{Path: "a", Mode: 0o755})
	if err != nil || string(b) != `{"path":"a","mode":"0755"}` {
		t.Errorf("marshal: %s, %v", b, err)
	}
	if p := (&File{}).Perm(); p != 0o644 {
		t.Errorf("default Perm = %v", p)
	}
	if p := (&File{Mode: 0o700}).Perm(); p != 0o700 {
		t.Errorf("Perm = %v", p)
	}
	if s := FileMode(0o755).String(); s != "0755" {
		t.Errorf("String = %s", s)
	}
}

func TestFileBytes(t *testing.T) {
	tests := []struct {
		f    File
		want string
	}{
		{File{Content: "abc"}, "abc"},
		{File{ContentB64: "AP8="}, "\x00\xff"},
		{File{Object: "b/n"}, ""},
	}
	for _, tt := range tests {
		b, err := tt.f.Bytes()
		if err != nil || string(b) != tt.want {
			t.Errorf("%+v: %q, %v", tt.f, b, err)
		}
	}
}

func TestStepHelpers(t *testing.T) {
	s := Step{}
	if s.WorkDir() != "/work" {
		t.Errorf("WorkDir = %s", s.WorkDir())
	}
	s.Cwd = "/tmp"
	if s.WorkDir() != "/tmp" {
		t.Errorf("WorkDir = %s", s.WorkDir())
	}
	for _, tt := range []struct {
		s    Step
		want string
	}{{Step{Stdin: "hi"}, "hi"}, {Step{StdinB64: "AP8="}, "\x00\xff"}, {Step{}, ""}} {
		b, err := tt.s.StdinBytes()
		if err != nil || string(b) != tt.want {
			t.Errorf("StdinBytes(%+v) = %q, %v", tt.s, b, err)
		}
	}
	if CompareLines != Compare("").OrDefault() || NetworkNone != Network("").OrDefault() ||
		SeccompStrict != Seccomp("").OrDefault(SeccompStrict) || SeccompDefault != SeccompDefault.OrDefault(SeccompStrict) {
		t.Error("OrDefault")
	}
}

func TestExpired(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	j := &Job{}
	if j.Expired(now) {
		t.Error("a job without expires_at expired")
	}
	j.ExpiresAt = now
	if !j.Expired(now) || j.Expired(now.Add(-time.Nanosecond)) {
		t.Error("Expired at the boundary")
	}
	d, err := Decode([]byte(`{"cmd":["x"],"expires_at":"2026-01-02T05:04:05+02:00"}`))
	if err != nil {
		t.Fatal(err)
	}
	if !d.ExpiresAt.Equal(now) {
		t.Errorf("ExpiresAt = %v", d.ExpiresAt)
	}
}

func TestJobMarshalOmitsEmpty(t *testing.T) {
	b, err := json.Marshal(&Job{Steps: []Step{{Cmd: []string{"x"}}}})
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != `{"steps":[{"cmd":["x"]}]}` {
		t.Errorf("got %s", b)
	}
}

func TestPeek(t *testing.T) {
	tests := []struct {
		data string
		want Envelope
	}{
		{`{"id":"a","reply_to":"x.y","labels":{"k":"v"},"bogus":1}`, Envelope{ID: "a", ReplyTo: "x.y", Labels: map[string]string{"k": "v"}}},
		{`{"id":1,"reply_to":["x"],"labels":{"k":1}}`, Envelope{}},
		{`{"id":"a.b"}`, Envelope{ID: "a.b"}},
		{`not json`, Envelope{}},
		{``, Envelope{}},
		{`[]`, Envelope{}},
	}
	for _, tt := range tests {
		if got := Peek([]byte(tt.data)); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Peek(%s) = %+v, want %+v", tt.data, got, tt.want)
		}
	}
}

func TestSubjects(t *testing.T) {
	got := []string{
		JobSubject("q"), ResultSubject("i"), OutputSubject("i"), CancelSubject("i"),
		DeadSubject("q"), ConsumerName("q"), ResultMsgID("i"),
		StreamJobsSubjects, StreamResultsSubjects, StreamDeadSubjects,
	}
	want := []string{
		"corral.jobs.q", "corral.results.i", "corral.output.i", "corral.cancel.i",
		"corral.dead.q", "corral-q", "result-i",
		"corral.jobs.>", "corral.results.>", "corral.dead.>",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %q", got)
	}
	for _, tt := range []struct {
		subject, queue string
		ok             bool
	}{
		{"corral.jobs.default", "default", true},
		{"corral.jobs.", "", false},
		{"corral.jobs.a.b", "a.b", false},
		{"corral.results.x", "", false},
	} {
		q, ok := QueueOf(tt.subject)
		if q != tt.queue || ok != tt.ok {
			t.Errorf("QueueOf(%q) = %q, %v", tt.subject, q, ok)
		}
	}
}

func ptr[T any](v T) *T { return &v }

func BenchmarkDecodeValidate(b *testing.B) {
	data := []byte(protocolJob)
	for b.Loop() {
		j, err := Decode(data)
		if err != nil {
			b.Fatal(err)
		}
		if err := j.Validate(MaxLimits()); err != nil {
			b.Fatal(err)
		}
	}
}

// Decode cleans paths that name the same place ("./a//b" is "a/b", "/work/"
// is "/work") and takes whole numbers however they are written.
func TestDecodeCleansAndTakesWholeNumbers(t *testing.T) {
	j, err := Decode([]byte(`{"files":[{"path":"./src//main.c","content":""}],"cmd":["x"],"cwd":"/work/./src/","limits":{"wall_time_ms":2e3,"cpu_time_ms":1500.0}}`))
	if err != nil {
		t.Fatal(err)
	}
	if j.Files[0].Path != "src/main.c" || j.Steps[0].Cwd != "/work/src" {
		t.Errorf("path %q, cwd %q", j.Files[0].Path, j.Steps[0].Cwd)
	}
	if l := j.Steps[0].Limits; l.WallTimeMs != 2000 || l.CPUTimeMs != 1500 {
		t.Errorf("limits %+v", l)
	}
}

// An expires_at of the zero time is long past, not "never".
func TestExpiresAtZeroTime(t *testing.T) {
	j, err := Decode([]byte(`{"cmd":["x"],"expires_at":"0001-01-01T00:00:00Z"}`))
	if err != nil {
		t.Fatal(err)
	}
	if !j.Expired(time.Now()) {
		t.Error("not expired")
	}
	j, _ = Decode([]byte(`{"cmd":["x"]}`))
	if j.Expired(time.Now()) {
		t.Error("a job without expires_at expired")
	}
}
