package worker

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/corralhq/corral/jobs"
)

// ErrInvalidConfig is wrapped by the errors of StreamConfig.Validate and
// ConsumerConfig.Validate.
var ErrInvalidConfig = errors.New("invalid config")

// maxReplicas is the largest replica count JetStream allows.
const maxReplicas = 5

// StreamConfig holds the worker settings of the streams the protocol names
// (CORRAL_JOBS, CORRAL_RESULTS, CORRAL_DEAD) and of CORRAL_ADVISORIES. The
// zero value means all defaults; call WithDefaults before Validate.
type StreamConfig struct {
	// Replicas is the replica count of every stream, 1 to 5. Default 1;
	// use 3 on a cluster.
	Replicas int
	// ResultsMaxAge is how long CORRAL_RESULTS keeps a result. Default
	// 24 h (jobs.DefaultResultsMaxAge).
	ResultsMaxAge time.Duration
	// DeadMaxAge is how long CORRAL_DEAD keeps a dead job, and
	// CORRAL_ADVISORIES an advisory no worker handled. Default 7 days
	// (jobs.DefaultDeadMaxAge).
	DeadMaxAge time.Duration
	// DuplicateWindow is how long CORRAL_JOBS remembers a Nats-Msg-Id to
	// drop a re-published job. Default, and minimum, 2 min
	// (jobs.MinDuplicateWindow).
	DuplicateWindow time.Duration
}

// WithDefaults returns c with every zero field set to its default.
func (c StreamConfig) WithDefaults() StreamConfig {
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	if c.ResultsMaxAge == 0 {
		c.ResultsMaxAge = jobs.DefaultResultsMaxAge
	}
	if c.DeadMaxAge == 0 {
		c.DeadMaxAge = jobs.DefaultDeadMaxAge
	}
	if c.DuplicateWindow == 0 {
		c.DuplicateWindow = jobs.MinDuplicateWindow
	}
	return c
}

// Validate checks c after defaults: Replicas 1 to 5, positive max ages, and
// a duplicate window of at least 2 min. Errors wrap ErrInvalidConfig.
func (c StreamConfig) Validate() error {
	switch {
	case c.Replicas < 1 || c.Replicas > maxReplicas:
		return fmt.Errorf("%w: stream replicas %d must be 1 to %d", ErrInvalidConfig, c.Replicas, maxReplicas)
	case c.ResultsMaxAge <= 0:
		return fmt.Errorf("%w: results max age %v must be positive", ErrInvalidConfig, c.ResultsMaxAge)
	case c.DeadMaxAge <= 0:
		return fmt.Errorf("%w: dead max age %v must be positive", ErrInvalidConfig, c.DeadMaxAge)
	case c.DuplicateWindow < jobs.MinDuplicateWindow:
		return fmt.Errorf("%w: duplicate window %v must be at least %v", ErrInvalidConfig, c.DuplicateWindow, jobs.MinDuplicateWindow)
	}
	return nil
}

// ConsumerConfig holds the worker settings of a queue's durable consumer
// corral-Q. The zero value means all defaults; call WithDefaults before
// Validate.
type ConsumerConfig struct {
	// AckWait is how long a delivered job may go without an ack or an
	// InProgress before it is redelivered. Default 30 s (jobs.DefaultAckWait).
	AckWait time.Duration
	// MaxDeliver is how many times a job is delivered before it is dead.
	// Default 3 (jobs.DefaultMaxDeliver).
	MaxDeliver int
	// MaxAckPending is how many jobs of the queue may be delivered and not
	// yet acked, over all workers. Default 1000 (jobs.DefaultMaxAckPending).
	MaxAckPending int
}

// WithDefaults returns c with every zero field set to its default.
func (c ConsumerConfig) WithDefaults() ConsumerConfig {
	if c.AckWait == 0 {
		c.AckWait = jobs.DefaultAckWait
	}
	if c.MaxDeliver == 0 {
		c.MaxDeliver = jobs.DefaultMaxDeliver
	}
	if c.MaxAckPending == 0 {
		c.MaxAckPending = jobs.DefaultMaxAckPending
	}
	return c
}

// Validate checks c after defaults: every field must be positive (a job must
// end up dead after a bounded number of deliveries, so MaxDeliver cannot be
// unlimited). Errors wrap ErrInvalidConfig.
func (c ConsumerConfig) Validate() error {
	switch {
	case c.AckWait <= 0:
		return fmt.Errorf("%w: ack wait %v must be positive", ErrInvalidConfig, c.AckWait)
	case c.MaxDeliver < 1:
		return fmt.Errorf("%w: max deliver %d must be at least 1", ErrInvalidConfig, c.MaxDeliver)
	case c.MaxAckPending < 1:
		return fmt.Errorf("%w: max ack pending %d must be at least 1", ErrInvalidConfig, c.MaxAckPending)
	}
	return nil
}

// Mismatch is one setting of an existing stream or consumer that differs
// from what the worker would have created. The existing setting is kept; the
// caller logs the mismatch.
type Mismatch struct {
	// Stream is the stream's name.
	Stream string
	// Consumer is the consumer's name, "" for a setting of the stream.
	Consumer string
	// Setting is the setting's name as in the server's JSON config, like
	// "max_age" or "ack_wait".
	Setting string
	// Want is the value the worker would have set.
	Want string
	// Have is the value the stream or consumer has.
	Have string
}

// String returns "stream CORRAL_RESULTS: max_age is 1h0m0s, want 24h0m0s",
// naming the consumer too when there is one.
func (m Mismatch) String() string {
	what := "stream " + m.Stream
	if m.Consumer != "" {
		what += " consumer " + m.Consumer
	}
	return fmt.Sprintf("%s: %s is %s, want %s", what, m.Setting, m.Have, m.Want)
}

// StreamConfigs returns the configs of the streams, as EnsureStreams creates
// them: the protocol's CORRAL_JOBS, CORRAL_RESULTS and CORRAL_DEAD, and
// CORRAL_ADVISORIES, which keeps the server's max-deliveries advisories of
// CORRAL_JOBS until a worker handled them. cfg must be valid after defaults.
func StreamConfigs(cfg StreamConfig) []jetstream.StreamConfig {
	return []jetstream.StreamConfig{{
		Name:        jobs.StreamJobs,
		Description: "corral jobs, one subject per queue",
		Subjects:    []string{jobs.StreamJobsSubjects},
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Replicas,
		Duplicates:  cfg.DuplicateWindow,
	}, {
		Name:        jobs.StreamResults,
		Description: "corral results, one subject per job",
		Subjects:    []string{jobs.StreamResultsSubjects},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Replicas,
		MaxAge:      cfg.ResultsMaxAge,
	}, {
		Name:        jobs.StreamDead,
		Description: "corral jobs that could not be run, one subject per queue",
		Subjects:    []string{jobs.StreamDeadSubjects},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Replicas,
		MaxAge:      cfg.DeadMaxAge,
	}, {
		Name:        jobs.StreamAdvisories,
		Description: "max-deliveries advisories of CORRAL_JOBS, until a worker gave the job its result",
		Subjects:    []string{jobs.StreamAdvisoriesSubjects},
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Replicas,
		MaxAge:      cfg.DeadMaxAge,
	}}
}

// EnsureStreams makes sure CORRAL_JOBS, CORRAL_RESULTS, CORRAL_DEAD and
// CORRAL_ADVISORIES exist, creating each one that is missing with the
// settings of StreamConfigs. A stream that already exists is used as it is, never
// updated: each of its settings the protocol names (subjects, retention,
// storage, replicas, the duplicate window of CORRAL_JOBS, the max age of
// CORRAL_RESULTS, CORRAL_DEAD and CORRAL_ADVISORIES) that differs is
// returned as a Mismatch.
//
// It is idempotent and safe to call from several workers at once: a stream
// that another worker creates first is read back and compared.
func EnsureStreams(ctx context.Context, js jetstream.JetStream, cfg StreamConfig) ([]Mismatch, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	var mismatches []Mismatch
	for _, want := range StreamConfigs(cfg) {
		have, err := ensureStream(ctx, js, want)
		if err != nil {
			return mismatches, err
		}
		mismatches = append(mismatches, compareStream(want, have)...)
	}
	return mismatches, nil
}

// ensureStream returns the config of stream want.Name, creating the stream
// with want if it does not exist.
func ensureStream(ctx context.Context, js jetstream.JetStream, want jetstream.StreamConfig) (jetstream.StreamConfig, error) {
	s, err := js.Stream(ctx, want.Name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		s, err = js.CreateStream(ctx, want)
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			// Another worker created it first, with other settings.
			s, err = js.Stream(ctx, want.Name)
		}
	}
	if err != nil {
		return jetstream.StreamConfig{}, fmt.Errorf("ensure stream %s: %w", want.Name, err)
	}
	return s.CachedInfo().Config, nil
}

// compareStream returns the settings of have that differ from want.
func compareStream(want, have jetstream.StreamConfig) []Mismatch {
	var ms []Mismatch
	add := func(setting, w, h string) {
		if w != h {
			ms = append(ms, Mismatch{Stream: want.Name, Setting: setting, Want: w, Have: h})
		}
	}
	add("subjects", strings.Join(want.Subjects, ","), strings.Join(have.Subjects, ","))
	add("retention", want.Retention.String(), have.Retention.String())
	add("storage", want.Storage.String(), have.Storage.String())
	add("num_replicas", strconv.Itoa(want.Replicas), strconv.Itoa(max(have.Replicas, 1)))
	if want.Duplicates != 0 {
		add("duplicate_window", want.Duplicates.String(), have.Duplicates.String())
	}
	if want.MaxAge != 0 {
		add("max_age", want.MaxAge.String(), have.MaxAge.String())
	}
	return ms
}

// QueueConsumerConfig returns the config of the durable pull consumer of
// queue, as EnsureConsumer creates it. cfg must be valid after defaults.
func QueueConsumerConfig(queue string, cfg ConsumerConfig) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       jobs.ConsumerName(queue),
		Description:   "corral workers of queue " + queue,
		FilterSubject: jobs.JobSubject(queue),
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       cfg.AckWait,
		MaxDeliver:    cfg.MaxDeliver,
		MaxAckPending: cfg.MaxAckPending,
	}
}

// EnsureConsumer makes sure the durable pull consumer corral-Q of queue Q
// exists on CORRAL_JOBS (which must exist: call EnsureStreams first),
// creating it with QueueConsumerConfig if it is missing, and returns it. An
// existing consumer is used as it is, never updated: each of its settings
// that differs (filter subject, ack policy, ack wait, max deliver, max ack
// pending) is returned as a Mismatch. An existing push consumer of that name
// is an error, since workers pull.
//
// It is idempotent and safe to call from several workers at once.
func EnsureConsumer(ctx context.Context, js jetstream.JetStream, queue string, cfg ConsumerConfig) (jetstream.Consumer, []Mismatch, error) {
	if !jobs.ValidQueue(queue) {
		return nil, nil, fmt.Errorf("%w: queue name %q must be 1 to %d of A-Z, a-z, 0-9, '_' and '-'", ErrInvalidConfig, queue, jobs.MaxIDLen)
	}
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, nil, err
	}
	want := QueueConsumerConfig(queue, cfg)
	c, err := ensureConsumer(ctx, js, jobs.StreamJobs, want)
	if err != nil {
		return nil, nil, err
	}
	return c, compareConsumer(want, c.CachedInfo().Config), nil
}

// ensureConsumer returns the durable consumer want.Durable of stream,
// creating it with want if it does not exist.
func ensureConsumer(ctx context.Context, js jetstream.JetStream, stream string, want jetstream.ConsumerConfig) (jetstream.Consumer, error) {
	c, err := js.Consumer(ctx, stream, want.Durable)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		// Creating with a config equal to an existing consumer's returns
		// it; with another config the server refuses and it is read back.
		c, err = js.CreateConsumer(ctx, stream, want)
		if errors.Is(err, jetstream.ErrConsumerExists) {
			c, err = js.Consumer(ctx, stream, want.Durable)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("ensure consumer %s on stream %s: %w", want.Durable, stream, err)
	}
	return c, nil
}

// compareConsumer returns the settings of have that differ from want.
func compareConsumer(want, have jetstream.ConsumerConfig) []Mismatch {
	var ms []Mismatch
	add := func(setting, w, h string) {
		if w != h {
			ms = append(ms, Mismatch{Stream: jobs.StreamJobs, Consumer: want.Durable, Setting: setting, Want: w, Have: h})
		}
	}
	filters := have.FilterSubjects
	if have.FilterSubject != "" {
		filters = append([]string{have.FilterSubject}, filters...)
	}
	add("filter_subject", want.FilterSubject, strings.Join(slices.Compact(filters), ","))
	add("ack_policy", want.AckPolicy.String(), have.AckPolicy.String())
	add("ack_wait", want.AckWait.String(), have.AckWait.String())
	add("max_deliver", strconv.Itoa(want.MaxDeliver), strconv.Itoa(have.MaxDeliver))
	add("max_ack_pending", strconv.Itoa(want.MaxAckPending), strconv.Itoa(have.MaxAckPending))
	return ms
}

// AdvisoryConsumerName is the durable consumer on CORRAL_ADVISORIES through
// which the workers of queue Q handle its max-deliveries advisories.
func AdvisoryConsumerName(queue string) string { return "corral-dead-" + queue }

// EnsureAdvisoryConsumer makes sure the durable pull consumer of queue's
// max-deliveries advisories exists on CORRAL_ADVISORIES (call EnsureStreams
// first) and returns it. Its deliveries are unlimited: an advisory stays
// until a worker has given the job its result.
func EnsureAdvisoryConsumer(ctx context.Context, js jetstream.JetStream, queue string) (jetstream.Consumer, error) {
	return ensureConsumer(ctx, js, jobs.StreamAdvisories, jetstream.ConsumerConfig{
		Durable:       AdvisoryConsumerName(queue),
		Description:   "corral workers of queue " + queue + ": jobs that ran out of deliveries",
		FilterSubject: jobs.MaxDeliveriesSubject(queue),
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       jobs.DefaultAckWait,
		MaxDeliver:    -1,
	})
}

// EnsureObjectStore returns the object store bucket corral-files
// (jobs.ObjectBucket), creating it with file storage if it does not exist.
// An existing bucket is used as it is. It is safe to call from several
// workers at once.
func EnsureObjectStore(ctx context.Context, js jetstream.JetStream) (jetstream.ObjectStore, error) {
	store, err := js.ObjectStore(ctx, jobs.ObjectBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		store, err = js.CreateObjectStore(ctx, jetstream.ObjectStoreConfig{
			Bucket:      jobs.ObjectBucket,
			Description: "corral collected files too large to return inline",
			Storage:     jetstream.FileStorage,
		})
		if errors.Is(err, jetstream.ErrBucketExists) {
			store, err = js.ObjectStore(ctx, jobs.ObjectBucket)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("ensure object store %s: %w", jobs.ObjectBucket, err)
	}
	return store, nil
}

// StrayConsumerName is the durable consumer on CORRAL_JOBS that takes the
// job messages published under corral.jobs. with more than one token
// (corral.jobs.judge.cpp): no queue's consumer filters them, so without it
// they would wait in the stream for ever, without a result.
const StrayConsumerName = "corral-stray"

// EnsureStrayConsumer makes sure the consumer StrayConsumerName exists on
// CORRAL_JOBS (call EnsureStreams first) and returns it. Its filter,
// corral.jobs.*.>, overlaps no queue's corral.jobs.Q, as a work-queue
// stream requires.
func EnsureStrayConsumer(ctx context.Context, js jetstream.JetStream) (jetstream.Consumer, error) {
	return ensureConsumer(ctx, js, jobs.StreamJobs, jetstream.ConsumerConfig{
		Durable:       StrayConsumerName,
		Description:   "corral workers: jobs published to a subject that names no queue, rejected",
		FilterSubject: jobs.SubjectJobs + "*.>",
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       jobs.DefaultAckWait,
		MaxDeliver:    -1,
	})
}

// StraySubjects lists the subjects corral.jobs.X holding jobs where X is
// one token but not a queue name (corral.jobs.bad+q, or a name over 64
// bytes). StrayConsumerName takes only subjects of two tokens or more: no
// filter can take every invalid single token without overlapping the
// queues' consumers, which a work-queue stream forbids. So workers ask the
// stream, now and then, which single-token subjects hold jobs.
func StraySubjects(ctx context.Context, js jetstream.JetStream) ([]string, error) {
	s, err := js.Stream(ctx, jobs.StreamJobs)
	if err != nil {
		return nil, err
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(jobs.SubjectJobs+"*"))
	if err != nil {
		return nil, err
	}
	var out []string
	for subject := range info.State.Subjects {
		if !jobs.ValidQueue(strings.TrimPrefix(subject, jobs.SubjectJobs)) {
			out = append(out, subject) // a valid queue no worker serves yet waits for one
		}
	}
	slices.Sort(out)
	return out, nil
}

// EnsureStraySubjectConsumer makes sure there is a consumer on CORRAL_JOBS
// for one subject StraySubjects found, and returns it. It is durable, so
// every worker that finds the subject shares it and each job is taken
// once, and the server removes it after a minute unused.
func EnsureStraySubjectConsumer(ctx context.Context, js jetstream.JetStream, subject string) (jetstream.Consumer, error) {
	sum := sha256.Sum256([]byte(subject))
	return js.CreateOrUpdateConsumer(ctx, jobs.StreamJobs, jetstream.ConsumerConfig{
		Durable:           StrayConsumerName + "-" + hex.EncodeToString(sum[:8]),
		Description:       "corral workers: jobs on " + subject + ", which names no queue, rejected",
		FilterSubject:     subject,
		DeliverPolicy:     jetstream.DeliverAllPolicy,
		AckPolicy:         jetstream.AckExplicitPolicy,
		AckWait:           jobs.DefaultAckWait,
		MaxDeliver:        -1,
		InactiveThreshold: time.Minute,
	})
}
