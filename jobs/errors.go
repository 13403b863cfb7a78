package jobs

import (
	"errors"
	"fmt"
	"strconv"
	"unicode/utf8"
)

// ErrRejected matches every *RejectError with errors.Is.
var ErrRejected = errors.New("job rejected")

// RejectError says why a job is invalid. A worker answers it with a result
// of status StatusRejected whose error is Error(), and never retries the job.
type RejectError struct {
	// Field is the path of the offending JSON field, like "steps[0].cmd",
	// "files[2].mode" or `steps[1].env["A=B"]`; "" for the job as a whole.
	Field string
	// Reason says what is wrong, like "must not be empty".
	Reason string
}

// Error returns "field: reason", or the reason alone when Field is empty.
func (e *RejectError) Error() string {
	if e.Field == "" {
		return e.Reason
	}
	return e.Field + ": " + e.Reason
}

// Is reports whether target is ErrRejected.
func (e *RejectError) Is(target error) bool { return target == ErrRejected }

// Status returns StatusRejected, the protocol status of this error.
func (e *RejectError) Status() Status { return StatusRejected }

// rejectf returns a *RejectError for field with a formatted reason.
func rejectf(field, format string, args ...any) *RejectError {
	return &RejectError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// under returns e with its field placed under prefix: "steps[0]" and
// "limits.pids" give "steps[0].limits.pids".
func under(prefix string, e *RejectError) *RejectError {
	return &RejectError{Field: joinField(prefix, e.Field), Reason: e.Reason}
}

// joinField joins a field path and a child field name.
func joinField(prefix, field string) string {
	switch {
	case prefix == "":
		return field
	case field == "":
		return prefix
	case field[0] == '[':
		return prefix + field
	}
	return prefix + "." + field
}

// maxQuoted is how many bytes of a submitted value an error message quotes.
const maxQuoted = 64

// quote quotes s for an error message, cut to maxQuoted bytes.
func quote(s string) string {
	if len(s) <= maxQuoted {
		return strconv.Quote(s)
	}
	cut := maxQuoted
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return strconv.Quote(s[:cut]) + "..."
}
