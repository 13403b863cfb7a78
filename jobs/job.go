package jobs

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"path"
	"strconv"
	"strings"
	"time"
)

// Job is the body of a message published to corral.jobs.Q. Decode parses and
// normalises one; Validate checks it against a queue's maximum limits.
//
// A job has either Steps or the single-step shorthand (Cmd, Env, Cwd, Stdin,
// StdinB64, Limits, ExpectStdout, Compare at the top level), never both.
// Normalize turns the shorthand into one step.
type Job struct {
	// ID is the job's id, echoed in the result: 1 to 64 of [A-Za-z0-9_-].
	// Default: the Nats-Msg-Id header, else one the worker generates.
	ID string `json:"id,omitempty" job:"nonempty"`
	// Image is the name of the rootfs image to run in. Default: the
	// worker's default image.
	Image string `json:"image,omitempty" job:"nonempty"`
	// Files are written into /work before the first step. Default none.
	Files []File `json:"files,omitempty"`
	// Steps run in order in the same sandbox: 1 to 16 of them. Required
	// unless the shorthand is used.
	Steps []Step `json:"steps,omitempty"`
	// Network is the sandbox's network. Default NetworkNone.
	Network Network `json:"network,omitempty" job:"nonempty"`
	// EgressAllow narrows an egress job's reach to these destinations,
	// each "CIDR" or "CIDR:port" (IPv6 as "[CIDR]:port"); at most 64. The
	// worker's deny rules still apply first. Default: whatever the worker
	// allows. Only with network "egress". An addition to PROTOCOL.md v1.
	EgressAllow []string `json:"egress_allow,omitempty"`
	// Seccomp is the syscall profile. Default: the queue's default profile.
	Seccomp Seccomp `json:"seccomp,omitempty" job:"nonempty"`
	// ReplyTo is the subject the result is published to. Default
	// corral.results.ID (see ReplySubject).
	ReplyTo string `json:"reply_to,omitempty" job:"nonempty"`
	// StreamOutput publishes output chunks to corral.output.ID while the job
	// runs. Default false.
	StreamOutput bool `json:"stream_output,omitempty"`
	// Collect are paths or path.Match globs, relative to /work, of files
	// copied into the result after the last step. Default none.
	Collect []string `json:"collect,omitempty"`
	// Labels are echoed in the result. Default none.
	Labels map[string]string `json:"labels,omitempty"`
	// ExpiresAt is the RFC 3339 time after which the job is not started
	// (its result is expired). Default: never (zero, absent).
	ExpiresAt time.Time `json:"expires_at,omitzero"`

	// Cmd is the single-step shorthand for steps[0].cmd.
	Cmd []string `json:"cmd,omitempty"`
	// Env is the single-step shorthand for steps[0].env.
	Env map[string]string `json:"env,omitempty"`
	// Cwd is the single-step shorthand for steps[0].cwd.
	Cwd string `json:"cwd,omitempty" job:"nonempty"`
	// Stdin is the single-step shorthand for steps[0].stdin.
	Stdin string `json:"stdin,omitempty"`
	// StdinB64 is the single-step shorthand for steps[0].stdin_b64.
	StdinB64 string `json:"stdin_b64,omitempty"`
	// Limits is the single-step shorthand for steps[0].limits.
	Limits Limits `json:"limits,omitzero"`
	// ExpectStdout is the single-step shorthand for steps[0].expect_stdout.
	ExpectStdout *string `json:"expect_stdout,omitempty"`
	// Compare is the single-step shorthand for steps[0].compare.
	Compare Compare `json:"compare,omitempty" job:"nonempty"`

	// shorthand is set by Normalize when Steps came from the shorthand, so
	// that errors name the top-level fields the submitter wrote.
	shorthand bool
	// expiresSet: the message had an expires_at, maybe the zero time
	// ("0001-01-01T00:00:00Z"), which is long past, not "never".
	expiresSet bool
}

// Step is one command of a job.
type Step struct {
	// Name is echoed in the step result and in the Corral-Step header of
	// live output. Default "step-N" for the N-th step (1-based).
	Name string `json:"name,omitempty" job:"nonempty"`
	// Cmd is the argv; no shell unless it names one. Required, non-empty.
	Cmd []string `json:"cmd"`
	// Env is the environment, merged over the worker's default (PATH, HOME,
	// LANG). Default none.
	Env map[string]string `json:"env,omitempty"`
	// Cwd is the absolute working directory inside the sandbox. Default
	// DefaultCwd (/work).
	Cwd string `json:"cwd,omitempty" job:"nonempty"`
	// Stdin is standard input as text. Default empty.
	Stdin string `json:"stdin,omitempty"`
	// StdinB64 is standard input, base64 (standard alphabet, padded); not
	// together with Stdin. Default empty.
	StdinB64 string `json:"stdin_b64,omitempty"`
	// Limits bound the step; zero fields take the queue's defaults.
	Limits Limits `json:"limits,omitzero"`
	// ContinueOnFailure runs the next step even if this one did not
	// succeed. Default false.
	ContinueOnFailure bool `json:"continue_on_failure,omitempty"`
	// ExpectStdout, if set, is compared with stdout and the step result
	// gets matched. Default nil (no comparison).
	ExpectStdout *string `json:"expect_stdout,omitempty"`
	// Compare is how ExpectStdout is compared. Default CompareLines.
	Compare Compare `json:"compare,omitempty" job:"nonempty"`
}

// WorkDir returns Cwd, or DefaultCwd when it is empty.
func (s *Step) WorkDir() string {
	if s.Cwd == "" {
		return DefaultCwd
	}
	return s.Cwd
}

// StdinBytes returns standard input, decoding StdinB64 if it is set.
func (s *Step) StdinBytes() ([]byte, error) {
	if s.StdinB64 != "" {
		return base64.StdEncoding.DecodeString(s.StdinB64)
	}
	return []byte(s.Stdin), nil
}

// File is written into /work before the first step. Exactly one of Content,
// ContentB64 and Object gives its content.
type File struct {
	// Path is relative to /work, clean, without "..". Required.
	Path string `json:"path"`
	// Content is the content as UTF-8 text. Default empty.
	Content string `json:"content,omitempty"`
	// ContentB64 is the content, base64 (standard alphabet, padded).
	// Default empty.
	ContentB64 string `json:"content_b64,omitempty"`
	// Object is "bucket/name" of an object in a JetStream object store whose
	// content is the file's. Default none.
	Object string `json:"object,omitempty" job:"nonempty"`
	// Mode is the permission bits, 0 to 07777; in JSON an integer (493) or a
	// string of octal digits ("0755"). 0 or absent means DefaultFileMode
	// (0644).
	Mode FileMode `json:"mode,omitempty"`
}

// Perm returns Mode, or DefaultFileMode when it is 0.
func (f *File) Perm() FileMode {
	if f.Mode == 0 {
		return DefaultFileMode
	}
	return f.Mode
}

// Bytes returns the inline content, decoding ContentB64 if it is set. It
// returns nil for a file given as Object.
func (f *File) Bytes() ([]byte, error) {
	switch {
	case f.Object != "":
		return nil, nil
	case f.ContentB64 != "":
		return base64.StdEncoding.DecodeString(f.ContentB64)
	}
	return []byte(f.Content), nil
}

// FileMode is a file's permission bits, 0 to 07777. It unmarshals from a
// JSON integer or a string of octal digits and marshals as the latter.
type FileMode uint32

// MaxFileMode is the largest valid FileMode: all permission bits plus
// setuid, setgid and sticky.
const MaxFileMode FileMode = 0o7777

// String formats m as four octal digits, like "0755".
func (m FileMode) String() string { return fmt.Sprintf("%04o", uint32(m)) }

// MarshalJSON writes m as a string of octal digits, like "0755".
func (m FileMode) MarshalJSON() ([]byte, error) { return json.Marshal(m.String()) }

// UnmarshalJSON reads a non-negative JSON integer or a non-empty string of
// octal digits. The range 0..07777 is checked by Job.Validate.
func (m *FileMode) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	var s string
	base := 10
	if len(b) > 0 && b[0] == '"' {
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		base = 8
	} else {
		n, ok := integralNumber(b)
		if !ok || n < 0 || n > math.MaxUint32 {
			return errBadMode
		}
		*m = FileMode(n)
		return nil
	}
	n, err := strconv.ParseUint(s, base, 32)
	if err != nil {
		return errBadMode
	}
	*m = FileMode(n)
	return nil
}

// errBadMode is returned for a mode that is neither form.
var errBadMode = fmt.Errorf("must be an integer or a string of octal digits like %q", "0644")

// Network is a sandbox's network.
type Network string

const (
	// NetworkNone gives the sandbox loopback only. The default.
	NetworkNone Network = "none"
	// NetworkEgress lets the sandbox connect out through the worker's NAT,
	// never to the host, link-local, metadata or other sandboxes' addresses.
	NetworkEgress Network = "egress"
)

// OrDefault returns n, or NetworkNone when n is empty.
func (n Network) OrDefault() Network {
	if n == "" {
		return NetworkNone
	}
	return n
}

// Seccomp is a syscall profile. There is no way to turn filtering off.
type Seccomp string

const (
	// SeccompDefault is the profile for ordinary programs.
	SeccompDefault Seccomp = "default"
	// SeccompStrict allows fewer syscalls and no sockets.
	SeccompStrict Seccomp = "strict"
)

// OrDefault returns s, or def (the queue's default) when s is empty.
func (s Seccomp) OrDefault(def Seccomp) Seccomp {
	if s == "" {
		return def
	}
	return s
}

// Compare is how a step's stdout is compared with its expect_stdout; see
// Match.
type Compare string

const (
	// CompareExact compares byte for byte.
	CompareExact Compare = "exact"
	// CompareLines ignores trailing white space on each line and trailing
	// empty lines. The default.
	CompareLines Compare = "lines"
	// CompareTokens compares the white-space separated words.
	CompareTokens Compare = "tokens"
)

// OrDefault returns c, or CompareLines when c is empty.
func (c Compare) OrDefault() Compare {
	if c == "" {
		return CompareLines
	}
	return c
}

// ReplySubject returns ReplyTo, or the default result subject of the job.
func (j *Job) ReplySubject() string {
	if j.ReplyTo != "" {
		return j.ReplyTo
	}
	return ResultSubject(j.ID)
}

// Expired reports whether the job has an expires_at that is not after now.
func (j *Job) Expired(now time.Time) bool {
	return (j.expiresSet || !j.ExpiresAt.IsZero()) && !now.Before(j.ExpiresAt)
}

// hasShorthand reports whether any single-step shorthand field is set.
func (j *Job) hasShorthand() bool {
	return j.Cmd != nil || j.Env != nil || j.Cwd != "" || j.Stdin != "" ||
		j.StdinB64 != "" || j.Limits != (Limits{}) || j.ExpectStdout != nil ||
		j.Compare != ""
}

// shorthandStep returns the step the shorthand fields describe.
func (j *Job) shorthandStep() Step {
	return Step{
		Cmd:          j.Cmd,
		Env:          j.Env,
		Cwd:          j.Cwd,
		Stdin:        j.Stdin,
		StdinB64:     j.StdinB64,
		Limits:       j.Limits,
		ExpectStdout: j.ExpectStdout,
		Compare:      j.Compare,
	}
}

// Normalize moves the single-step shorthand into Steps and names every
// unnamed step "step-N". A job with both the shorthand and Steps is a
// *RejectError. Decode calls it; call it on jobs built in Go before use.
func (j *Job) Normalize() error {
	if j.hasShorthand() {
		if len(j.Steps) > 0 {
			return errMixed(j.firstShorthandField())
		}
		j.Steps = []Step{j.shorthandStep()}
		j.Cmd, j.Env, j.Cwd, j.Stdin, j.StdinB64 = nil, nil, "", "", ""
		j.Limits, j.ExpectStdout, j.Compare = Limits{}, nil, ""
		j.shorthand = true
	}
	for i := range j.Steps {
		if j.Steps[i].Name == "" {
			j.Steps[i].Name = "step-" + strconv.Itoa(i+1)
		}
		// "/work/" and "/work/./src" name the same directories as
		// "/work" and "/work/src": cleaned, not refused.
		if cwd := j.Steps[i].Cwd; path.IsAbs(cwd) && !strings.Contains(cwd, "\x00") && !hasDotDot(cwd) {
			j.Steps[i].Cwd = path.Clean(cwd)
		}
	}
	// Likewise "./main.py" and "src//a.c"; a path Validate refuses (a ".."
	// element, absolute) is left for it to name.
	for i := range j.Files {
		if c, err := SafeRelPath(j.Files[i].Path); err == nil {
			j.Files[i].Path = c
		}
	}
	return nil
}

// hasDotDot reports whether p has a ".." element.
func hasDotDot(p string) bool {
	for el := range strings.SplitSeq(p, "/") {
		if el == ".." {
			return true
		}
	}
	return false
}

// firstShorthandField returns the JSON name of the first shorthand field set.
func (j *Job) firstShorthandField() string {
	switch {
	case j.Cmd != nil:
		return "cmd"
	case j.Env != nil:
		return "env"
	case j.Cwd != "":
		return "cwd"
	case j.Stdin != "":
		return "stdin"
	case j.StdinB64 != "":
		return "stdin_b64"
	case j.Limits != (Limits{}):
		return "limits"
	case j.ExpectStdout != nil:
		return "expect_stdout"
	}
	return "compare"
}

// shorthandFields are the JSON names of the single-step shorthand.
var shorthandFields = [...]string{"cmd", "env", "cwd", "stdin", "stdin_b64", "limits", "expect_stdout", "compare"}

// errMixed is the error for a job with both the shorthand and steps.
func errMixed(field string) *RejectError {
	return rejectf(field, "the single-step shorthand cannot be mixed with steps")
}
