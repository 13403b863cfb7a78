package worker

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/corralhq/corral/jobs"
)

func bigResult(steps int, out string, labels map[string]string) *jobs.Result {
	r := &jobs.Result{ID: "j", Queue: "q", Status: jobs.StatusOK, Labels: labels}
	for range steps {
		r.Steps = append(r.Steps, jobs.StepResult{Name: "s", Status: jobs.StatusOK, Stdout: out, Stderr: out})
	}
	return r
}

// Results of every shape fit the max payload: 16 steps with 3 MiB on each
// stream (the old halving of one output at a time gave up after 200
// rounds), output that escaping triples ("<" is 6 bytes in JSON), labels
// too big to echo, and a long error.
func TestFitResult(t *testing.T) {
	const max = 1 << 20
	for name, res := range map[string]*jobs.Result{
		"16 steps of 2×3 MiB": bigResult(16, strings.Repeat("a", 3<<20), nil),
		"escaped output":      bigResult(2, strings.Repeat("<", 1<<20), nil),
		"labels":              bigResult(1, "x", map[string]string{"x": strings.Repeat("<", 400_000)}),
		"error":               func() *jobs.Result { r := bigResult(1, "", nil); r.Error = strings.Repeat("e", 2<<20); return r }(),
	} {
		data, err := fitResult(res, max)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if len(data) > max {
			t.Errorf("%s: %d bytes", name, len(data))
		}
		var back jobs.Result
		if err := json.Unmarshal(data, &back); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		if len(back.Steps) > 0 && len(back.Steps[0].Stdout) > 0 && !strings.HasPrefix(strings.Repeat("a", 3<<20), back.Steps[0].Stdout) && name == "16 steps of 2×3 MiB" {
			t.Errorf("%s: output not kept from its start", name)
		}
		// A fitted result still says as much as it can.
		if name == "16 steps of 2×3 MiB" && (len(back.Steps[0].Stdout) < 10_000 || !back.Steps[0].StdoutTruncated) {
			t.Errorf("%s: %d bytes of stdout kept, truncated %v", name, len(back.Steps[0].Stdout), back.Steps[0].StdoutTruncated)
		}
		if name == "labels" && (back.Labels != nil || !strings.Contains(back.Error, "labels left out")) {
			t.Errorf("labels: %v %q", back.Labels, back.Error)
		}
	}
	// What nothing can fit: a max payload below the bare result.
	if _, err := fitResult(bigResult(1, "", nil), 50); !errors.Is(err, errUnfittable) {
		t.Errorf("tiny max: %v", err)
	}
}
