package jobs

import (
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"path"
	"slices"
	"strconv"
	"strings"
	"unicode"
)

// Validate checks the job's values and returns the first problem as a
// *RejectError, or nil. maxima holds the queue's maximum limits; a zero field
// stands for the protocol maximum (see Limits.Check).
//
// An empty ID passes: the worker fills it from Nats-Msg-Id or generates one
// (and checks it with ValidID). Validate accepts a job that has not been
// normalised; it does not change the job. The reply subject is checked
// against the protocol's forbidden prefixes only; a worker with an
// operator's list of allowed prefixes also calls ReplySubjectAllowed.
func (j *Job) Validate(maxima Limits) error {
	if err := j.validate(maxima); err != nil {
		return err
	}
	return nil
}

// validate is Validate with a concrete error type.
func (j *Job) validate(maxima Limits) *RejectError {
	if j.ID != "" && !ValidID(j.ID) {
		return rejectf("id", "%s must be 1 to %d of A-Z, a-z, 0-9, '_' and '-'", quote(j.ID), MaxIDLen)
	}
	if j.Image != "" && !ValidImageName(j.Image) {
		return rejectf("image", "%s is not a valid image name (1 to %d of A-Z, a-z, 0-9, '_', '-', '.', ':', '@' and '+', not starting with '.' or '-')", quote(j.Image), maxImageLen)
	}
	for i := range j.Files {
		if err := j.Files[i].validate(); err != nil {
			return under("files["+strconv.Itoa(i)+"]", err)
		}
	}

	steps, short := j.Steps, j.shorthand && len(j.Steps) == 1
	if j.hasShorthand() {
		if len(j.Steps) > 0 {
			return errMixed(j.firstShorthandField())
		}
		steps, short = []Step{j.shorthandStep()}, true
	}
	if len(steps) == 0 {
		return rejectf("steps", "must have 1 to %d steps (or use the single-step shorthand cmd)", MaxSteps)
	}
	if len(steps) > MaxSteps {
		return rejectf("steps", "has %d steps, more than the maximum %d", len(steps), MaxSteps)
	}
	for i := range steps {
		if err := steps[i].validate(maxima); err != nil {
			if short {
				return err
			}
			return under("steps["+strconv.Itoa(i)+"]", err)
		}
	}

	switch j.Network {
	case "", NetworkNone, NetworkEgress:
	default:
		return rejectf("network", "%s must be %q or %q", quote(string(j.Network)), NetworkNone, NetworkEgress)
	}
	if len(j.EgressAllow) > 0 && j.Network != NetworkEgress {
		return rejectf("egress_allow", "needs network %q", NetworkEgress)
	}
	if len(j.EgressAllow) > maxEgressAllow {
		return rejectf("egress_allow", "%d entries, at most %d", len(j.EgressAllow), maxEgressAllow)
	}
	for i, a := range j.EgressAllow {
		if err := checkEgressAllow(a); err != nil {
			return rejectf("egress_allow["+strconv.Itoa(i)+"]", "%s: %v", quote(a), err)
		}
	}
	switch j.Seccomp {
	case "", SeccompDefault, SeccompStrict:
	default:
		return rejectf("seccomp", "%s must be %q or %q", quote(string(j.Seccomp)), SeccompDefault, SeccompStrict)
	}
	if j.ReplyTo != "" {
		if err := ReplySubjectAllowed(j.ReplyTo, nil); err != nil {
			return err.(*RejectError)
		}
	}
	if len(j.Collect) > MaxCollect {
		return rejectf("collect", "%d patterns, at most %d", len(j.Collect), MaxCollect)
	}
	for i, pat := range j.Collect {
		if err := validGlob(pat); err != "" {
			return rejectf("collect["+strconv.Itoa(i)+"]", "%s", err)
		}
	}
	if err := checkLabels(j.Labels); err != nil {
		return err
	}
	return nil
}

// Bounds of what a result echoes or a collect costs: a result must fit the
// server's max payload, and matching every file against every pattern
// must stay cheap.
const (
	MaxCollect     = 64        // collect patterns
	MaxLabels      = 64        // labels
	MaxLabelsBytes = 16 * 1024 // keys and values together
)

// checkLabels bounds a job's labels, which its result echoes.
func checkLabels(labels map[string]string) *RejectError {
	if len(labels) > MaxLabels {
		return rejectf("labels", "%d labels, at most %d", len(labels), MaxLabels)
	}
	n := 0
	for k, v := range labels {
		n += len(k) + len(v)
	}
	if n > MaxLabelsBytes {
		return rejectf("labels", "%d bytes of keys and values, at most %d", n, MaxLabelsBytes)
	}
	return nil
}

// validate checks one step; field names in the error are relative to it.
func (s *Step) validate(maxima Limits) *RejectError {
	if s.Name != "" {
		if err := validName(s.Name); err != "" {
			return rejectf("name", "%s %s", quote(s.Name), err)
		}
	}
	if len(s.Cmd) == 0 {
		return rejectf("cmd", "must not be empty")
	}
	if s.Cmd[0] == "" {
		return rejectf("cmd[0]", "must not be empty")
	}
	for i, a := range s.Cmd {
		if strings.IndexByte(a, 0) >= 0 {
			return rejectf("cmd["+strconv.Itoa(i)+"]", "must not contain a NUL byte")
		}
	}
	for _, k := range slices.Sorted(maps.Keys(s.Env)) {
		v := s.Env[k]
		switch {
		case k == "":
			return rejectf("env", "a variable name must not be empty")
		case strings.IndexByte(k, '=') >= 0:
			return rejectf("env["+quote(k)+"]", "a variable name must not contain '='")
		case strings.IndexByte(k, 0) >= 0 || strings.IndexByte(v, 0) >= 0:
			return rejectf("env["+quote(k)+"]", "must not contain a NUL byte")
		}
	}
	if s.Cwd != "" {
		switch {
		case strings.IndexByte(s.Cwd, 0) >= 0:
			return rejectf("cwd", "must not contain a NUL byte")
		case !path.IsAbs(s.Cwd):
			return rejectf("cwd", "%s must be an absolute path", quote(s.Cwd))
		case hasDotDot(s.Cwd):
			return rejectf("cwd", `%s must not contain a ".." element`, quote(s.Cwd))
		case path.Clean(s.Cwd) != s.Cwd:
			return rejectf("cwd", "%s must be clean (%s)", quote(s.Cwd), quote(path.Clean(s.Cwd)))
		case len(s.Cwd) > MaxPathBytes:
			return rejectf("cwd", "is longer than %d bytes", MaxPathBytes)
		}
	}
	if s.StdinB64 != "" {
		if s.Stdin != "" {
			return rejectf("stdin_b64", "must not be given together with stdin")
		}
		if _, err := base64.StdEncoding.DecodeString(s.StdinB64); err != nil {
			return rejectf("stdin_b64", "is not valid base64 (standard alphabet, padded): %v", err)
		}
	}
	if err := s.Limits.Check(maxima); err != nil {
		return err.(*RejectError)
	}
	switch s.Compare {
	case "", CompareExact, CompareLines, CompareTokens:
	default:
		return rejectf("compare", "%s must be %q, %q or %q", quote(string(s.Compare)), CompareExact, CompareLines, CompareTokens)
	}
	return nil
}

// validate checks one file; field names in the error are relative to it.
func (f *File) validate() *RejectError {
	c, err := SafeRelPath(f.Path)
	if err != nil {
		return rejectf("path", "%v", err)
	}
	if c != f.Path {
		return rejectf("path", "%s must be clean (%s)", quote(f.Path), quote(c))
	}
	n := 0
	for _, s := range [...]string{f.Content, f.ContentB64, f.Object} {
		if s != "" {
			n++
		}
	}
	if n > 1 {
		return rejectf("", "has more than one of content, content_b64 and object")
	}
	if f.ContentB64 != "" {
		if _, err := base64.StdEncoding.DecodeString(f.ContentB64); err != nil {
			return rejectf("content_b64", "is not valid base64 (standard alphabet, padded): %v", err)
		}
	}
	if f.Object != "" {
		if _, _, err := SplitObject(f.Object); err != nil {
			return rejectf("object", "%v", err)
		}
	}
	if f.Mode > MaxFileMode {
		return rejectf("mode", "%#o is above %#o", uint32(f.Mode), uint32(MaxFileMode))
	}
	return nil
}

// validGlob checks a collect pattern and returns the reason it is bad, or "".
func validGlob(pat string) string {
	if _, err := SafeRelPath(pat); err != nil {
		return err.Error()
	}
	if _, err := path.Match(pat, ""); err != nil {
		return fmt.Sprintf("%s is not a valid glob (path.Match syntax)", quote(pat))
	}
	return ""
}

// maxStepName is the longest step name, in bytes.
const maxStepName = 128

// validName checks a step name, which travels in the Corral-Step header, and
// returns the reason it is bad, or "".
func validName(n string) string {
	if len(n) > maxStepName {
		return fmt.Sprintf("is longer than %d bytes", maxStepName)
	}
	for _, r := range n {
		if r < 0x20 || r == 0x7f {
			return "must not contain control characters"
		}
	}
	return ""
}

// maxImageLen is the longest image name, in bytes.
const maxImageLen = 128

// ValidImageName reports whether s can name an image: 1 to 128 of A-Z, a-z,
// 0-9, '_', '-', '.', ':', '@' and '+', not starting with '.' or '-'. So an
// image name is never a path ("/" is not allowed) and may be a digest like
// "sha256:...".
func ValidImageName(s string) bool {
	if len(s) == 0 || len(s) > maxImageLen || s[0] == '.' || s[0] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			strings.IndexByte("_-.:@+", c) >= 0) {
			return false
		}
	}
	return true
}

// SplitObject splits an object reference "bucket/name" at its first '/'.
// The bucket must be 1 to 64 of A-Z, a-z, 0-9, '_' and '-' (a JetStream
// object store name); the name must not be empty or contain a NUL byte.
func SplitObject(ref string) (bucket, name string, err error) {
	bucket, name, ok := strings.Cut(ref, "/")
	switch {
	case !ok:
		return "", "", fmt.Errorf("%s must be \"bucket/name\"", quote(ref))
	case !ValidID(bucket):
		return "", "", fmt.Errorf("%s: bucket %s must be 1 to %d of A-Z, a-z, 0-9, '_' and '-'", quote(ref), quote(bucket), MaxIDLen)
	case name == "":
		return "", "", fmt.Errorf("%s: the object name must not be empty", quote(ref))
	case strings.IndexByte(name, 0) >= 0:
		return "", "", fmt.Errorf("%s: the object name must not contain a NUL byte", quote(ref))
	}
	return bucket, name, nil
}

// forbiddenReplyPrefixes are subjects a result must never be published
// under: the jobs, cancel and dead-letter subjects and the server's own.
var forbiddenReplyPrefixes = [...]string{SubjectJobs, SubjectCancel, SubjectDead, "$JS.", "$KV.", "$O.", "$SYS."}

// ReplySubjectAllowed checks a job's reply_to and returns a *RejectError for
// field "reply_to" if it is not a valid NATS subject to publish to (no empty
// token, no wildcard, no white space or control character), lies under a
// subject the protocol forbids (corral.jobs., corral.cancel., corral.dead.,
// $JS., $KV., $O., $SYS., or is one of those without the dot), or, when
// prefixes is not empty, is under none of them.
//
// A prefix ending in '.' matches subjects that start with it; any other
// prefix matches itself and the subjects below it ("corral.results" matches
// "corral.results" and "corral.results.x", not "corral.resultsx").
func ReplySubjectAllowed(subject string, prefixes []string) error {
	if reason := validSubject(subject); reason != "" {
		return rejectf("reply_to", "%s %s", quote(subject), reason)
	}
	for _, p := range forbiddenReplyPrefixes {
		if underPrefix(subject, p) {
			return rejectf("reply_to", "%s must not be under %q", quote(subject), p)
		}
	}
	if len(prefixes) == 0 {
		return nil
	}
	for _, p := range prefixes {
		if underPrefix(subject, p) {
			return nil
		}
	}
	return rejectf("reply_to", "%s is not under an allowed prefix (%s)", quote(subject), strings.Join(prefixes, ", "))
}

// underPrefix reports whether subject is under prefix, as ReplySubjectAllowed
// describes.
func underPrefix(subject, prefix string) bool {
	base := strings.TrimSuffix(prefix, ".")
	return base != "" && (subject == base || strings.HasPrefix(subject, base+"."))
}

// MaxSubjectBytes and MaxSubjectTokens bound a reply_to. NATS takes a
// publish's subject on its protocol's control line, 4 KiB by default: a
// longer one makes the server close the publishing connection, the
// worker's, for good.
const (
	MaxSubjectBytes  = 512
	MaxSubjectTokens = 32
)

// validSubject checks a NATS subject to publish to and returns the reason it
// is bad, or "".
func validSubject(s string) string {
	if s == "" {
		return "must not be empty"
	}
	if len(s) > MaxSubjectBytes {
		return fmt.Sprintf("is %d bytes long, more than %d", len(s), MaxSubjectBytes)
	}
	n := 0
	for tok := range strings.SplitSeq(s, ".") {
		if tok == "" {
			return "is not a valid subject: it has an empty token"
		}
		if n++; n > MaxSubjectTokens {
			return fmt.Sprintf("has more than %d tokens", MaxSubjectTokens)
		}
	}
	for _, r := range s {
		switch {
		case r == '*' || r == '>':
			return "is not a valid subject to publish to: it has a wildcard"
		case unicode.IsSpace(r) || unicode.IsControl(r):
			return "is not a valid subject: it has white space or a control character"
		}
	}
	return ""
}

// maxEgressAllow bounds a job's egress_allow list.
const maxEgressAllow = 64

// checkEgressAllow checks "CIDR", "CIDR:port" or "[CIDR]:port".
func checkEgressAllow(s string) error {
	cidr, port := s, ""
	if strings.HasPrefix(s, "[") {
		end := strings.Index(s, "]")
		if end < 0 {
			return errors.New("missing ]")
		}
		cidr, port = s[1:end], strings.TrimPrefix(s[end+1:], ":")
		if rest := s[end+1:]; rest != "" && !strings.HasPrefix(rest, ":") {
			return errors.New("want [CIDR]:port")
		}
	} else if i := strings.LastIndex(s, ":"); i >= 0 && strings.Count(s, ":") == 1 {
		cidr, port = s[:i], s[i+1:]
	}
	if _, err := netip.ParsePrefix(cidr); err != nil {
		if _, aerr := netip.ParseAddr(cidr); aerr != nil {
			return errors.New("want a CIDR (or an address), optionally with :port")
		}
	}
	if port != "" {
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 {
			return errors.New("port must be 1 to 65535")
		}
	}
	return nil
}
