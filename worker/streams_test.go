package worker

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/corralhq/corral/jobs"
	"github.com/corralhq/corral/natstest"
)

func streamsTestCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestStreamConfigDefaults(t *testing.T) {
	got := StreamConfig{}.WithDefaults()
	want := StreamConfig{Replicas: 1, ResultsMaxAge: 24 * time.Hour, DeadMaxAge: 7 * 24 * time.Hour, DuplicateWindow: 2 * time.Minute}
	if got != want {
		t.Fatalf("WithDefaults() = %+v, want %+v", got, want)
	}
	if err := got.Validate(); err != nil {
		t.Fatalf("Validate(defaults) = %v", err)
	}
	set := StreamConfig{Replicas: 3, ResultsMaxAge: time.Hour, DeadMaxAge: 2 * time.Hour, DuplicateWindow: 5 * time.Minute}
	if got := set.WithDefaults(); got != set {
		t.Fatalf("WithDefaults() changed set fields: %+v", got)
	}
}

func TestStreamConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  StreamConfig
	}{
		{"replicas 0", StreamConfig{Replicas: 0, ResultsMaxAge: time.Hour, DeadMaxAge: time.Hour, DuplicateWindow: 2 * time.Minute}},
		{"replicas 6", StreamConfig{Replicas: 6}},
		{"negative results age", StreamConfig{ResultsMaxAge: -time.Second}},
		{"negative dead age", StreamConfig{DeadMaxAge: -time.Second}},
		{"duplicate window 1m", StreamConfig{DuplicateWindow: time.Minute}},
		{"negative duplicate window", StreamConfig{DuplicateWindow: -time.Minute}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			if tc.name != "replicas 0" {
				cfg = cfg.WithDefaults()
			}
			if err := cfg.Validate(); !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("Validate(%+v) = %v, want ErrInvalidConfig", cfg, err)
			}
		})
	}
}

func TestConsumerConfigDefaultsAndValidate(t *testing.T) {
	got := ConsumerConfig{}.WithDefaults()
	want := ConsumerConfig{AckWait: 30 * time.Second, MaxDeliver: 3, MaxAckPending: 1000}
	if got != want {
		t.Fatalf("WithDefaults() = %+v, want %+v", got, want)
	}
	if err := got.Validate(); err != nil {
		t.Fatalf("Validate(defaults) = %v", err)
	}
	for _, bad := range []ConsumerConfig{
		{AckWait: -time.Second},
		{MaxDeliver: -1},
		{MaxAckPending: -1},
	} {
		if err := bad.WithDefaults().Validate(); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("Validate(%+v) = %v, want ErrInvalidConfig", bad, err)
		}
	}
}

func TestEnsureStreamsFresh(t *testing.T) {
	url, _ := natstest.Server(t)
	_, js := natstest.Connect(t, url)
	ctx := streamsTestCtx(t)

	ms, err := EnsureStreams(ctx, js, StreamConfig{})
	if err != nil {
		t.Fatalf("EnsureStreams: %v", err)
	}
	if len(ms) != 0 {
		t.Fatalf("fresh EnsureStreams reported mismatches: %v", ms)
	}
	for _, tc := range []struct {
		name       string
		subject    string
		retention  jetstream.RetentionPolicy
		maxAge     time.Duration
		duplicates time.Duration // 0: not checked
	}{
		{"CORRAL_JOBS", "corral.jobs.>", jetstream.WorkQueuePolicy, 0, 2 * time.Minute},
		{"CORRAL_RESULTS", "corral.results.>", jetstream.LimitsPolicy, 24 * time.Hour, 0},
		{"CORRAL_DEAD", "corral.dead.>", jetstream.LimitsPolicy, 7 * 24 * time.Hour, 0},
		{"CORRAL_ADVISORIES", "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.CORRAL_JOBS.>", jetstream.WorkQueuePolicy, 7 * 24 * time.Hour, 0},
	} {
		s, err := js.Stream(ctx, tc.name)
		if err != nil {
			t.Fatalf("stream %s: %v", tc.name, err)
		}
		info, err := s.Info(ctx)
		if err != nil {
			t.Fatalf("stream %s info: %v", tc.name, err)
		}
		c := info.Config
		if !slices.Equal(c.Subjects, []string{tc.subject}) {
			t.Errorf("%s subjects = %v, want [%s]", tc.name, c.Subjects, tc.subject)
		}
		if c.Retention != tc.retention {
			t.Errorf("%s retention = %v, want %v", tc.name, c.Retention, tc.retention)
		}
		if c.Storage != jetstream.FileStorage {
			t.Errorf("%s storage = %v, want file", tc.name, c.Storage)
		}
		if c.Replicas != 1 {
			t.Errorf("%s replicas = %d, want 1", tc.name, c.Replicas)
		}
		if c.MaxAge != tc.maxAge {
			t.Errorf("%s max age = %v, want %v", tc.name, c.MaxAge, tc.maxAge)
		}
		if tc.duplicates != 0 && c.Duplicates != tc.duplicates {
			t.Errorf("%s duplicate window = %v, want %v", tc.name, c.Duplicates, tc.duplicates)
		}
	}

	// A second call changes nothing and reports nothing.
	ms, err = EnsureStreams(ctx, js, StreamConfig{})
	if err != nil || len(ms) != 0 {
		t.Fatalf("second EnsureStreams = %v, %v; want no mismatch, no error", ms, err)
	}
}

func TestEnsureStreamsCustomConfig(t *testing.T) {
	url, _ := natstest.Server(t)
	_, js := natstest.Connect(t, url)
	ctx := streamsTestCtx(t)

	cfg := StreamConfig{ResultsMaxAge: time.Hour, DeadMaxAge: 48 * time.Hour, DuplicateWindow: 10 * time.Minute}
	if ms, err := EnsureStreams(ctx, js, cfg); err != nil || len(ms) != 0 {
		t.Fatalf("EnsureStreams = %v, %v", ms, err)
	}
	info := streamsTestInfo(t, js, jobs.StreamJobs)
	if info.Config.Duplicates != 10*time.Minute {
		t.Errorf("duplicate window = %v, want 10m", info.Config.Duplicates)
	}
	if got := streamsTestInfo(t, js, jobs.StreamResults).Config.MaxAge; got != time.Hour {
		t.Errorf("results max age = %v, want 1h", got)
	}
	if got := streamsTestInfo(t, js, jobs.StreamDead).Config.MaxAge; got != 48*time.Hour {
		t.Errorf("dead max age = %v, want 48h", got)
	}

	// The defaults now differ from what exists: reported, not applied.
	ms, err := EnsureStreams(ctx, js, StreamConfig{})
	if err != nil {
		t.Fatal(err)
	}
	want := []Mismatch{
		{Stream: "CORRAL_JOBS", Setting: "duplicate_window", Want: "2m0s", Have: "10m0s"},
		{Stream: "CORRAL_RESULTS", Setting: "max_age", Want: "24h0m0s", Have: "1h0m0s"},
		{Stream: "CORRAL_DEAD", Setting: "max_age", Want: "168h0m0s", Have: "48h0m0s"},
		{Stream: "CORRAL_ADVISORIES", Setting: "max_age", Want: "168h0m0s", Have: "48h0m0s"},
	}
	if !slices.Equal(ms, want) {
		t.Fatalf("mismatches = %v, want %v", ms, want)
	}
}

func TestEnsureStreamsInvalidConfig(t *testing.T) {
	url, _ := natstest.Server(t)
	_, js := natstest.Connect(t, url)
	_, err := EnsureStreams(streamsTestCtx(t), js, StreamConfig{DuplicateWindow: time.Second})
	if !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("EnsureStreams(duplicate window 1s) = %v, want ErrInvalidConfig", err)
	}
	if _, err := js.Stream(streamsTestCtx(t), jobs.StreamJobs); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Fatalf("stream created despite an invalid config: %v", err)
	}
}

func streamsTestInfo(t *testing.T, js jetstream.JetStream, name string) *jetstream.StreamInfo {
	t.Helper()
	ctx := streamsTestCtx(t)
	s, err := js.Stream(ctx, name)
	if err != nil {
		t.Fatalf("stream %s: %v", name, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatalf("stream %s info: %v", name, err)
	}
	return info
}

func TestEnsureStreamsExistingMismatch(t *testing.T) {
	url, _ := natstest.Server(t)
	_, js := natstest.Connect(t, url)
	ctx := streamsTestCtx(t)

	// An operator made CORRAL_RESULTS by hand: other max age, memory storage.
	_, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name:     jobs.StreamResults,
		Subjects: []string{jobs.StreamResultsSubjects},
		MaxAge:   time.Hour,
		Storage:  jetstream.MemoryStorage,
	})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 { // the report repeats; nothing is ever changed
		ms, err := EnsureStreams(ctx, js, StreamConfig{})
		if err != nil {
			t.Fatalf("EnsureStreams: %v", err)
		}
		want := []Mismatch{
			{Stream: "CORRAL_RESULTS", Setting: "storage", Want: "File", Have: "Memory"},
			{Stream: "CORRAL_RESULTS", Setting: "max_age", Want: "24h0m0s", Have: "1h0m0s"},
		}
		if !slices.Equal(ms, want) {
			t.Fatalf("mismatches = %v, want %v", ms, want)
		}
		info := streamsTestInfo(t, js, jobs.StreamResults)
		if info.Config.MaxAge != time.Hour || info.Config.Storage != jetstream.MemoryStorage {
			t.Fatalf("CORRAL_RESULTS was overwritten: max age %v, storage %v", info.Config.MaxAge, info.Config.Storage)
		}
	}
	// The streams that were missing were created.
	streamsTestInfo(t, js, jobs.StreamJobs)
	streamsTestInfo(t, js, jobs.StreamDead)
}

func TestEnsureStreamsConcurrent(t *testing.T) {
	url, _ := natstest.Server(t)
	ctx := streamsTestCtx(t)

	// Four workers race to create everything; two of them want another max
	// age for CORRAL_RESULTS, so some creations are refused as "already in
	// use" and must be read back.
	const workers = 4
	var wg sync.WaitGroup
	errs := make([]error, workers)
	mss := make([][]Mismatch, workers)
	ages := make([]time.Duration, workers)
	start := make(chan struct{})
	for i := range workers {
		_, js := natstest.Connect(t, url) // one connection per worker, like real ones
		ages[i] = time.Duration(1+i%2) * time.Hour
		wg.Go(func() {
			<-start
			mss[i], errs[i] = EnsureStreams(ctx, js, StreamConfig{ResultsMaxAge: ages[i]})
			if errs[i] == nil {
				_, ms, err := EnsureConsumer(ctx, js, "race", ConsumerConfig{})
				mss[i], errs[i] = append(mss[i], ms...), err
			}
		})
	}
	close(start)
	wg.Wait()
	_, js := natstest.Connect(t, url)
	have := streamsTestInfo(t, js, jobs.StreamResults).Config.MaxAge
	for i := range workers {
		var want []Mismatch
		if ages[i] != have {
			want = []Mismatch{{Stream: "CORRAL_RESULTS", Setting: "max_age", Want: ages[i].String(), Have: have.String()}}
		}
		if errs[i] != nil || !slices.Equal(mss[i], want) {
			t.Errorf("worker %d: mismatches %v, error %v; want %v", i, mss[i], errs[i], want)
		}
	}
}

func TestEnsureConsumer(t *testing.T) {
	url, _ := natstest.Server(t)
	_, js := natstest.Connect(t, url)
	ctx := streamsTestCtx(t)
	if _, err := EnsureStreams(ctx, js, StreamConfig{}); err != nil {
		t.Fatal(err)
	}

	c, ms, err := EnsureConsumer(ctx, js, "judge", ConsumerConfig{})
	if err != nil || len(ms) != 0 {
		t.Fatalf("EnsureConsumer = %v, %v", ms, err)
	}
	info, err := c.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cc := info.Config
	if info.Stream != "CORRAL_JOBS" || info.Name != "corral-judge" || cc.Durable != "corral-judge" {
		t.Errorf("consumer %s/%s durable %q, want CORRAL_JOBS/corral-judge", info.Stream, info.Name, cc.Durable)
	}
	if cc.FilterSubject != "corral.jobs.judge" {
		t.Errorf("filter = %q, want corral.jobs.judge", cc.FilterSubject)
	}
	if cc.DeliverSubject != "" {
		t.Errorf("deliver subject = %q, want a pull consumer", cc.DeliverSubject)
	}
	if cc.AckPolicy != jetstream.AckExplicitPolicy || cc.AckWait != 30*time.Second || cc.MaxDeliver != 3 || cc.MaxAckPending != 1000 {
		t.Errorf("ack %v, ack wait %v, max deliver %d, max ack pending %d; want explicit, 30s, 3, 1000",
			cc.AckPolicy, cc.AckWait, cc.MaxDeliver, cc.MaxAckPending)
	}

	// Idempotent.
	if _, ms, err := EnsureConsumer(ctx, js, "judge", ConsumerConfig{}); err != nil || len(ms) != 0 {
		t.Fatalf("second EnsureConsumer = %v, %v", ms, err)
	}

	// Other settings: reported, the existing consumer kept.
	c, ms, err = EnsureConsumer(ctx, js, "judge", ConsumerConfig{AckWait: time.Minute, MaxDeliver: 5})
	if err != nil {
		t.Fatal(err)
	}
	want := []Mismatch{
		{Stream: "CORRAL_JOBS", Consumer: "corral-judge", Setting: "ack_wait", Want: "1m0s", Have: "30s"},
		{Stream: "CORRAL_JOBS", Consumer: "corral-judge", Setting: "max_deliver", Want: "5", Have: "3"},
	}
	if !slices.Equal(ms, want) {
		t.Fatalf("mismatches = %v, want %v", ms, want)
	}
	if got := c.CachedInfo().Config.AckWait; got != 30*time.Second {
		t.Fatalf("consumer was overwritten: ack wait %v", got)
	}

	// The consumer receives jobs of its queue only.
	for _, subj := range []string{"corral.jobs.other", "corral.jobs.judge"} {
		if _, err := js.Publish(ctx, subj, []byte(subj)); err != nil {
			t.Fatal(err)
		}
	}
	msg, err := c.Next(jetstream.FetchMaxWait(5 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(msg.Data(), []byte("corral.jobs.judge")) {
		t.Fatalf("got %q, want the job of queue judge", msg.Data())
	}
	if err := msg.Ack(); err != nil {
		t.Fatal(err)
	}
}

func TestEnsureConsumerInvalid(t *testing.T) {
	url, _ := natstest.Server(t)
	_, js := natstest.Connect(t, url)
	ctx := streamsTestCtx(t)
	for _, q := range []string{"", "a.b", "a*", "a>", string(make([]byte, 65))} {
		if _, _, err := EnsureConsumer(ctx, js, q, ConsumerConfig{}); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("EnsureConsumer(queue %q) = %v, want ErrInvalidConfig", q, err)
		}
	}
	if _, _, err := EnsureConsumer(ctx, js, "q", ConsumerConfig{MaxDeliver: -1}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("EnsureConsumer(max deliver -1) = %v, want ErrInvalidConfig", err)
	}
	// Without EnsureStreams there is no CORRAL_JOBS.
	if _, _, err := EnsureConsumer(ctx, js, "q", ConsumerConfig{}); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Errorf("EnsureConsumer without stream = %v, want ErrStreamNotFound", err)
	}
}

func TestEnsureObjectStore(t *testing.T) {
	url, _ := natstest.Server(t)
	_, js := natstest.Connect(t, url)
	ctx := streamsTestCtx(t)

	store, err := EnsureObjectStore(ctx, js)
	if err != nil {
		t.Fatalf("EnsureObjectStore: %v", err)
	}
	st, err := store.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Bucket() != "corral-files" || st.BackingStore() != "JetStream" {
		t.Fatalf("bucket %q backed by %q", st.Bucket(), st.BackingStore())
	}
	if _, err := store.PutBytes(ctx, "a", []byte("data")); err != nil {
		t.Fatal(err)
	}
	again, err := EnsureObjectStore(ctx, js)
	if err != nil {
		t.Fatalf("second EnsureObjectStore: %v", err)
	}
	got, err := again.GetBytes(ctx, "a")
	if err != nil || string(got) != "data" {
		t.Fatalf("GetBytes = %q, %v", got, err)
	}
	info := streamsTestInfo(t, js, "OBJ_corral-files")
	if info.Config.Storage != jetstream.FileStorage {
		t.Fatalf("object store storage = %v, want file", info.Config.Storage)
	}
}
