package worker

import (
	"encoding/base64"
	"fmt"
	"unicode/utf8"

	"github.com/corralhq/corral/jobs"
)

// fitResult encodes a result in at most max bytes: the protocol promises a
// result never exceeds the server's max payload. Inline collected files go
// first (with a note in error), then the largest outputs are halved, marked
// truncated, until it fits.
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
		if round > 200 {
			return nil, fmt.Errorf("result of %d bytes cannot be made to fit %d", len(data), max)
		}
		if i := lastInline(res.Files); i >= 0 {
			f := res.Files[i]
			res.Files = append(res.Files[:i], res.Files[i+1:]...)
			res.Error = appendNote(res.Error, fmt.Sprintf("collect %s: left out, the result would exceed the server's max payload", f.Path))
			continue
		}
		// Halve the largest output.
		var biggest *string
		var isB64 bool
		var flag *bool
		for i := range res.Steps {
			s := &res.Steps[i]
			for _, c := range []struct {
				p   *string
				b64 bool
				f   *bool
			}{{&s.Stdout, false, &s.StdoutTruncated}, {&s.StdoutB64, true, &s.StdoutTruncated}, {&s.Stderr, false, &s.StderrTruncated}, {&s.StderrB64, true, &s.StderrTruncated}} {
				if biggest == nil || len(*c.p) > len(*biggest) {
					biggest, isB64, flag = c.p, c.b64, c.f
				}
			}
		}
		if biggest == nil || len(*biggest) == 0 {
			return nil, fmt.Errorf("result of %d bytes cannot be made to fit %d", len(data), max)
		}
		*flag = true
		if isB64 {
			b, _ := base64.StdEncoding.DecodeString(*biggest)
			*biggest = base64.StdEncoding.EncodeToString(b[:len(b)/2])
		} else {
			cut := len(*biggest) / 2
			for cut > 0 && !utf8.RuneStart((*biggest)[cut]) {
				cut--
			}
			*biggest = (*biggest)[:cut]
		}
	}
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
