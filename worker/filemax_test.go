package worker

import (
	"strings"
	"testing"

	"github.com/corralhq/corral/jobs"
)

func TestFileTableRisks(t *testing.T) {
	qs := []QueueConfig{
		{Name: "wide", Max: jobs.Limits{Pids: 4096, OpenFiles: 4096}},
		{Name: "narrow", Max: jobs.Limits{Pids: 64, OpenFiles: 256}},
	}
	got := fileTableRisks(qs, 8, 2_466_239)
	if len(got) != 1 || !strings.Contains(got[0], "queue wide") || !strings.Contains(got[0], "134217728") {
		t.Fatalf("%q", got)
	}
	if got := fileTableRisks(qs, 8, 0); got != nil {
		t.Fatalf("unknown file-max: %q", got)
	}
}
