package worker

import (
	"encoding/base64"
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/corralhq/corral/jobs"
)

// errUnfittable is a result that no cutting fits (it cannot happen with
// the limits Validate sets; finish then sends a minimal result).
var errUnfittable = errors.New("result cannot be made to fit the server's max payload")

// fitResult encodes a result in at most max bytes: the protocol promises a
// result never exceeds the server's max payload. Inline collected files go
// first (with a note in error); then every output is cut by the share of
// the excess it holds, marked truncated, round after round (escaping makes
// the encoded size of a cut hard to foresee); then the labels, then error
// beyond its first 4 KiB.
func fitResult(res *jobs.Result, max int) ([]byte, error) {
	for round := 0; ; round++ {
		// Its own method, not json.Marshal: that would scan the whole
		// output once more to compact it (about a third of the time).
		data, err := res.MarshalJSON()
		if err != nil {
			return nil, err
		}
		if len(data) <= max {
			return data, nil
		}
		excess := len(data) - max
		switch {
		case lastInline(res.Files) >= 0:
			i := lastInline(res.Files)
			f := res.Files[i]
			res.Files = append(res.Files[:i], res.Files[i+1:]...)
			res.Error = appendNote(res.Error, fmt.Sprintf("collect %s: left out, the result would exceed the server's max payload", f.Path))
		case round < 40 && cutOutputs(res, excess):
		case len(res.Labels) > 0:
			res.Labels = nil
			res.Error = appendNote(res.Error, "labels left out: the result would exceed the server's max payload")
		case len(res.Error) > 4096:
			cut := 4096
			for cut > 0 && !utf8.RuneStart(res.Error[cut]) {
				cut--
			}
			res.Error = res.Error[:cut] + " …"
		default:
			return nil, fmt.Errorf("%w: %d bytes, %d allowed", errUnfittable, len(data), max)
		}
	}
}

// cutOutputs shortens every step's stdout and stderr by its share of
// excess bytes (and 1 KiB more), keeping the start, and marks each cut one
// truncated. It reports whether there was output to cut.
func cutOutputs(res *jobs.Result, excess int) bool {
	type out struct {
		p   *string
		b64 bool
		f   *bool
	}
	var outs []out
	total := 0
	for i := range res.Steps {
		s := &res.Steps[i]
		for _, c := range []out{{&s.Stdout, false, &s.StdoutTruncated}, {&s.StdoutB64, true, &s.StdoutTruncated}, {&s.Stderr, false, &s.StderrTruncated}, {&s.StderrB64, true, &s.StderrTruncated}} {
			if len(*c.p) > 0 {
				outs = append(outs, c)
				total += len(*c.p)
			}
		}
	}
	if total == 0 {
		return false
	}
	keep := 1 - float64(excess+1024)/float64(total)
	if keep < 0 {
		keep = 0
	}
	for _, c := range outs {
		*c.f = true
		if c.b64 {
			b, _ := base64.StdEncoding.DecodeString(*c.p)
			*c.p = base64.StdEncoding.EncodeToString(b[:int(float64(len(b))*keep)])
			continue
		}
		cut := int(float64(len(*c.p)) * keep)
		for cut > 0 && !utf8.RuneStart((*c.p)[cut]) {
			cut--
		}
		*c.p = (*c.p)[:cut]
	}
	return true
}

func appendNote(errText, note string) string {
	if errText == "" {
		return note
	}
	return errText + "; " + note
}

// lastInline is the index of the last collected file held inline, or -1.
func lastInline(files []jobs.CollectedFile) int {
	for i := len(files) - 1; i >= 0; i-- {
		if files[i].Object == "" {
			return i
		}
	}
	return -1
}
