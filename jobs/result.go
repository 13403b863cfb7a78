package jobs

import (
	"encoding/base64"
	"encoding/json"
	"time"
	"unicode/utf8"
)

// Status is how a step or a job ended.
type Status string

// Step and job statuses. A step ends with one of StatusOK through
// StatusInternalError; a job ends with the status of the last step that ran,
// or with StatusRejected, StatusExpired or StatusInternalError.
const (
	// StatusOK: the step exited with status 0.
	StatusOK Status = "ok"
	// StatusNonzeroExit: the step exited with another status.
	StatusNonzeroExit Status = "nonzero_exit"
	// StatusSignaled: the step was killed by a signal it did not get from a
	// limit; exit_code is -1 and signal names it.
	StatusSignaled Status = "signaled"
	// StatusCPUTimeLimit: the step used up cpu_time_ms.
	StatusCPUTimeLimit Status = "cpu_time_limit"
	// StatusWallTimeLimit: the step ran longer than wall_time_ms.
	StatusWallTimeLimit Status = "wall_time_limit"
	// StatusMemoryLimit: the step went over memory_bytes.
	StatusMemoryLimit Status = "memory_limit"
	// StatusOutputLimit: stdout or stderr reached output_bytes.
	StatusOutputLimit Status = "output_limit"
	// StatusFileSizeLimit: the step wrote past file_size_bytes.
	StatusFileSizeLimit Status = "file_size_limit"
	// StatusCancelled: the job was cancelled.
	StatusCancelled Status = "cancelled"
	// StatusSkipped: the step did not run because an earlier one failed.
	StatusSkipped Status = "skipped"
	// StatusInternalError: the worker could not run the step or the job;
	// the result's error says why.
	StatusInternalError Status = "internal_error"
	// StatusRejected: the job is invalid; the result's error names the field
	// and the reason. A rejected job is never retried.
	StatusRejected Status = "rejected"
	// StatusExpired: the job was not started before its expires_at.
	StatusExpired Status = "expired"
)

// stepStatuses lists the step statuses in protocol order.
var stepStatuses = [...]Status{
	StatusOK, StatusNonzeroExit, StatusSignaled, StatusCPUTimeLimit,
	StatusWallTimeLimit, StatusMemoryLimit, StatusOutputLimit,
	StatusFileSizeLimit, StatusCancelled, StatusSkipped, StatusInternalError,
}

// Valid reports whether s is a job status of the protocol (every step status
// is one too).
func (s Status) Valid() bool {
	return s.StepStatus() || s == StatusRejected || s == StatusExpired
}

// StepStatus reports whether s is a status a step may end with.
func (s Status) StepStatus() bool {
	for _, t := range stepStatuses {
		if s == t {
			return true
		}
	}
	return false
}

// Usage is what one step used. Every field is always present in JSON; times
// may be fractional.
type Usage struct {
	// CPUTimeMs is user + system CPU time of all the step's processes, in
	// milliseconds.
	CPUTimeMs float64 `json:"cpu_time_ms"`
	// UserMs is user CPU time, in milliseconds.
	UserMs float64 `json:"user_ms"`
	// SysMs is system CPU time, in milliseconds.
	SysMs float64 `json:"sys_ms"`
	// WallTimeMs is the elapsed time from spawn to exit, in milliseconds.
	WallTimeMs float64 `json:"wall_time_ms"`
	// MemoryPeakBytes is the peak memory of the step's processes, in bytes.
	MemoryPeakBytes int64 `json:"memory_peak_bytes"`
}

// StepResult is how one step ended. In JSON it always carries name, status,
// exit_code, signal, exactly one of stdout / stdout_b64 (stdout "" when there
// was no output), exactly one of stderr / stderr_b64, both _truncated flags
// and usage; matched only when the step had expect_stdout.
type StepResult struct {
	// Name is the step's name. Always present.
	Name string `json:"name"`
	// Status is how the step ended. Always present.
	Status Status `json:"status"`
	// ExitCode is the exit status, -1 when the step was signaled, 0 when it
	// did not run. Always present.
	ExitCode int `json:"exit_code"`
	// Signal names the signal that ended the step, like "SIGKILL"; "" if
	// none. Always present.
	Signal string `json:"signal"`
	// Stdout is standard output when it is valid UTF-8. Default "".
	Stdout string `json:"stdout,omitempty"`
	// StdoutB64 is standard output, base64 (standard alphabet, padded), when
	// it is not valid UTF-8; then Stdout is absent. Default absent.
	StdoutB64 string `json:"stdout_b64,omitempty"`
	// Stderr is standard error when it is valid UTF-8. Default "".
	Stderr string `json:"stderr,omitempty"`
	// StderrB64 is standard error, base64, when it is not valid UTF-8; then
	// Stderr is absent. Default absent.
	StderrB64 string `json:"stderr_b64,omitempty"`
	// StdoutTruncated is set when stdout reached output_bytes and only its
	// first output_bytes bytes are kept. Always present, default false.
	StdoutTruncated bool `json:"stdout_truncated"`
	// StderrTruncated is the same for stderr. Always present, default false.
	StderrTruncated bool `json:"stderr_truncated"`
	// Usage is what the step used. Always present.
	Usage Usage `json:"usage"`
	// Matched says whether stdout matched the step's expect_stdout; nil
	// (absent) when the step had none.
	Matched *bool `json:"matched,omitempty"`
	// PidsLimitReached is set when the pids limit refused a fork during the
	// step (an addition to the protocol). Default false, absent when false.
	PidsLimitReached bool `json:"pids_limit_reached,omitempty"`
}

// SetStdout stores b as Stdout if it is valid UTF-8, else as StdoutB64.
func (r *StepResult) SetStdout(b []byte) { r.Stdout, r.StdoutB64 = encodeOutput(b) }

// SetStderr stores b as Stderr if it is valid UTF-8, else as StderrB64.
func (r *StepResult) SetStderr(b []byte) { r.Stderr, r.StderrB64 = encodeOutput(b) }

// StdoutBytes returns standard output, decoding StdoutB64 if it is set.
func (r *StepResult) StdoutBytes() ([]byte, error) { return decodeOutput(r.Stdout, r.StdoutB64) }

// StderrBytes returns standard error, decoding StderrB64 if it is set.
func (r *StepResult) StderrBytes() ([]byte, error) { return decodeOutput(r.Stderr, r.StderrB64) }

// Succeeded reports whether the step counts as a success for running the
// next one: status ok and, when it had expect_stdout, matched.
func (r *StepResult) Succeeded() bool {
	return r.Status == StatusOK && (r.Matched == nil || *r.Matched)
}

// encodeOutput returns (text, "") for valid UTF-8 and ("", base64) otherwise.
func encodeOutput(b []byte) (text, b64 string) {
	if utf8.Valid(b) {
		return string(b), ""
	}
	return "", base64.StdEncoding.EncodeToString(b)
}

// decodeOutput is the reverse of encodeOutput.
func decodeOutput(text, b64 string) ([]byte, error) {
	if b64 != "" {
		return base64.StdEncoding.DecodeString(b64)
	}
	return []byte(text), nil
}

// oneOf returns the pointers for a text/base64 pair so that exactly one of
// them is marshalled: the base64 one when it is set, else the text.
func oneOf(text, b64 string) (*string, *string) {
	if b64 != "" {
		return nil, &b64
	}
	return &text, nil
}

// stepResultJSON is StepResult as it is marshalled.
type stepResultJSON struct {
	Name             string  `json:"name"`
	Status           Status  `json:"status"`
	ExitCode         int     `json:"exit_code"`
	Signal           string  `json:"signal"`
	Stdout           *string `json:"stdout,omitempty"`
	StdoutB64        *string `json:"stdout_b64,omitempty"`
	Stderr           *string `json:"stderr,omitempty"`
	StderrB64        *string `json:"stderr_b64,omitempty"`
	StdoutTruncated  bool    `json:"stdout_truncated"`
	StderrTruncated  bool    `json:"stderr_truncated"`
	Usage            Usage   `json:"usage"`
	Matched          *bool   `json:"matched,omitempty"`
	PidsLimitReached bool    `json:"pids_limit_reached,omitempty"`
}

// MarshalJSON writes exactly one of stdout / stdout_b64 and one of stderr /
// stderr_b64 (the _b64 one when it is set; both set is a caller's mistake
// and the text is then dropped), and every always-present field.
func (r StepResult) MarshalJSON() ([]byte, error) {
	return json.Marshal(r.wire())
}

// wire returns the step as it is marshalled.
func (r StepResult) wire() stepResultJSON {
	w := stepResultJSON{
		Name:             r.Name,
		Status:           r.Status,
		ExitCode:         r.ExitCode,
		Signal:           r.Signal,
		StdoutTruncated:  r.StdoutTruncated,
		StderrTruncated:  r.StderrTruncated,
		Usage:            r.Usage,
		Matched:          r.Matched,
		PidsLimitReached: r.PidsLimitReached,
	}
	w.Stdout, w.StdoutB64 = oneOf(r.Stdout, r.StdoutB64)
	w.Stderr, w.StderrB64 = oneOf(r.Stderr, r.StderrB64)
	return w
}

// CollectedFile is a file copied out of the sandbox after the last step. In
// JSON it carries exactly one of content, content_b64 and object.
type CollectedFile struct {
	// Path is the file's path relative to /work. Always present.
	Path string `json:"path"`
	// Size is the file's size in bytes. Always present.
	Size int64 `json:"size"`
	// Content is the file's content when it is valid UTF-8 and returned
	// inline. Default "".
	Content string `json:"content,omitempty"`
	// ContentB64 is the content, base64, when it is not valid UTF-8 and
	// returned inline. Default absent.
	ContentB64 string `json:"content_b64,omitempty"`
	// Object is "bucket/name" in the JetStream object store (ObjectBucket)
	// when the file was too large to return inline. Default absent.
	Object string `json:"object,omitempty"`
}

// SetContent stores b inline as Content if it is valid UTF-8, else as
// ContentB64, and sets Size.
func (f *CollectedFile) SetContent(b []byte) {
	f.Content, f.ContentB64 = encodeOutput(b)
	f.Size = int64(len(b))
}

// Bytes returns the inline content, decoding ContentB64 if it is set. It
// returns nil for a file stored as Object.
func (f *CollectedFile) Bytes() ([]byte, error) {
	if f.Object != "" {
		return nil, nil
	}
	return decodeOutput(f.Content, f.ContentB64)
}

// collectedFileJSON is CollectedFile as it is marshalled.
type collectedFileJSON struct {
	Path       string  `json:"path"`
	Size       int64   `json:"size"`
	Content    *string `json:"content,omitempty"`
	ContentB64 *string `json:"content_b64,omitempty"`
	Object     string  `json:"object,omitempty"`
}

// MarshalJSON writes exactly one of object, content_b64 and content, in that
// order of preference.
func (f CollectedFile) MarshalJSON() ([]byte, error) {
	return json.Marshal(f.wire())
}

// wire returns the file as it is marshalled.
func (f CollectedFile) wire() collectedFileJSON {
	w := collectedFileJSON{Path: f.Path, Size: f.Size, Object: f.Object}
	if f.Object == "" {
		w.Content, w.ContentB64 = oneOf(f.Content, f.ContentB64)
	}
	return w
}

// WorkerInfo identifies the worker that produced a result.
type WorkerInfo struct {
	// Host is the worker's host name. Always present, default "".
	Host string `json:"host"`
	// Version is the worker's version. Always present, default "".
	Version string `json:"version"`
}

// Timing is when a job went through the worker. Times are RFC 3339 with
// nanoseconds and left out when unknown (a job rejected before it started
// has no started_at).
type Timing struct {
	// EnqueuedAt is when the job message was stored in CORRAL_JOBS.
	// Absent when unknown.
	EnqueuedAt time.Time `json:"enqueued_at,omitzero"`
	// StartedAt is when the worker began handling the job. Absent when
	// unknown.
	StartedAt time.Time `json:"started_at,omitzero"`
	// FinishedAt is when the worker finished the job. Absent when unknown.
	FinishedAt time.Time `json:"finished_at,omitzero"`
	// QueueMs is the time between enqueued_at and started_at, in
	// milliseconds. Always present, default 0.
	QueueMs float64 `json:"queue_ms"`
	// SetupMs is the time spent preparing the sandbox and writing files
	// before the first step, in milliseconds. Always present, default 0.
	SetupMs float64 `json:"setup_ms"`
}

// Result is what a worker publishes to a job's reply subject. In JSON it
// always carries id, queue, status, steps (an empty list when none ran),
// error, attempt, worker and timing; files and labels are left out when
// empty.
type Result struct {
	// ID is the job's id. Always present.
	ID string `json:"id"`
	// Queue is the queue the job came from. Always present.
	Queue string `json:"queue"`
	// Status is the status of the last step that ran, or StatusRejected,
	// StatusExpired or StatusInternalError. Always present.
	Status Status `json:"status"`
	// Steps has one entry per step of the job, in order; empty for a job
	// that was rejected or expired. Always present.
	Steps []StepResult `json:"steps"`
	// Files are the collected files. Absent when empty.
	Files []CollectedFile `json:"files,omitempty"`
	// Error says why a job was rejected or could not be run; "" otherwise.
	// Always present.
	Error string `json:"error"`
	// Attempt is the delivery count of the job message, 1 first. Always
	// present.
	Attempt int `json:"attempt"`
	// Worker identifies the worker. Always present.
	Worker WorkerInfo `json:"worker"`
	// Timing is when the job went through the worker. Always present.
	Timing Timing `json:"timing"`
	// Labels are the job's labels, echoed. Absent when empty.
	Labels map[string]string `json:"labels,omitempty"`
}

// resultJSON is Result as it is marshalled, field for field, with the
// steps and files in their wire forms. Those have no MarshalJSON method:
// encoding/json scans and compacts again whatever a MarshalJSON returns,
// a second pass over every byte of every step's output.
type resultJSON struct {
	ID      string              `json:"id"`
	Queue   string              `json:"queue"`
	Status  Status              `json:"status"`
	Steps   []stepResultJSON    `json:"steps"`
	Files   []collectedFileJSON `json:"files,omitempty"`
	Error   string              `json:"error"`
	Attempt int                 `json:"attempt"`
	Worker  WorkerInfo          `json:"worker"`
	Timing  Timing              `json:"timing"`
	Labels  map[string]string   `json:"labels,omitempty"`
}

// MarshalJSON writes steps as [] rather than null when there are none,
// and each step and file as its own MarshalJSON does.
func (r Result) MarshalJSON() ([]byte, error) {
	w := resultJSON{
		ID: r.ID, Queue: r.Queue, Status: r.Status, Error: r.Error,
		Attempt: r.Attempt, Worker: r.Worker, Timing: r.Timing, Labels: r.Labels,
		Steps: make([]stepResultJSON, len(r.Steps)),
	}
	for i := range r.Steps {
		w.Steps[i] = r.Steps[i].wire()
	}
	if len(r.Files) > 0 {
		w.Files = make([]collectedFileJSON, len(r.Files))
		for i := range r.Files {
			w.Files[i] = r.Files[i].wire()
		}
	}
	return json.Marshal(w)
}

// FinalStatus returns the status of a job whose steps ended as given: that
// of the last step that ran (not skipped), or StatusInternalError if none
// ran.
func FinalStatus(steps []StepResult) Status {
	for i := len(steps) - 1; i >= 0; i-- {
		if steps[i].Status != StatusSkipped {
			return steps[i].Status
		}
	}
	return StatusInternalError
}
