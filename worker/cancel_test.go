package worker

import (
	"context"
	"strconv"
	"testing"
	"time"
)

// A cancel reaches the running job and is remembered: the job's next
// delivery (its worker died after the cancel) does not run either.
func TestCancelRegistryRemembersRunning(t *testing.T) {
	r := newCancelRegistry(time.Minute)
	ctx, cancel := context.WithCancelCause(context.Background())
	if !r.register("j", cancel) {
		t.Fatal("a fresh job refused")
	}
	r.cancel("j")
	if context.Cause(ctx) != errCancelled {
		t.Fatalf("running job: cause %v", context.Cause(ctx))
	}
	r.unregister("j")
	if r.register("j", func(error) {}) {
		t.Fatal("the cancelled job's redelivery was let run")
	}
	if !r.register("other", func(error) {}) {
		t.Fatal("another job refused")
	}
	// Memory ends.
	r = newCancelRegistry(time.Millisecond)
	r.cancel("k")
	time.Sleep(5 * time.Millisecond)
	if !r.register("k", func(error) {}) {
		t.Fatal("a cancel remembered past its memory")
	}
}

// A flood of cancels of made-up ids is bounded; the newest are kept.
func TestCancelRegistryBounded(t *testing.T) {
	r := newCancelRegistry(time.Hour)
	for i := range maxCancels + 5000 {
		r.cancel("flood-" + strconv.Itoa(i))
	}
	if n := len(r.early); n > maxCancels {
		t.Fatalf("%d cancels kept", n)
	}
	if r.register("flood-"+strconv.Itoa(maxCancels+4999), func(error) {}) {
		t.Fatal("the newest cancel was forgotten")
	}
}
