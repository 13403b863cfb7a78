package jobs

import "time"

// Subject prefixes. A subject is the prefix followed by a queue name or a job
// id (see JobSubject, ResultSubject and the other helpers below).
const (
	// SubjectJobs + Q is where jobs for queue Q are published.
	SubjectJobs = "corral.jobs."
	// SubjectResults + ID is the default reply subject of job ID.
	SubjectResults = "corral.results."
	// SubjectOutput + ID carries live output of job ID (core NATS, opt-in).
	SubjectOutput = "corral.output."
	// SubjectCancel + ID cancels job ID; any message cancels (core NATS).
	SubjectCancel = "corral.cancel."
	// SubjectDead + Q holds jobs of queue Q that could not be run.
	SubjectDead = "corral.dead."
)

// JetStream streams and the subjects they capture.
const (
	// StreamJobs holds submitted jobs (WorkQueue retention).
	StreamJobs = "CORRAL_JOBS"
	// StreamJobsSubjects is the subject filter of StreamJobs.
	StreamJobsSubjects = SubjectJobs + ">"
	// StreamResults holds results (limits retention, ResultsMaxAge).
	StreamResults = "CORRAL_RESULTS"
	// StreamResultsSubjects is the subject filter of StreamResults.
	StreamResultsSubjects = SubjectResults + ">"
	// StreamDead holds jobs that exhausted their deliveries (DeadMaxAge).
	StreamDead = "CORRAL_DEAD"
	// StreamDeadSubjects is the subject filter of StreamDead.
	StreamDeadSubjects = SubjectDead + ">"
	// StreamAdvisories keeps the server's max-deliveries advisories of
	// StreamJobs (WorkQueue retention, DeadMaxAge) until a worker has
	// given the job its result: also when no worker was connected when
	// the server gave up on it.
	StreamAdvisories = "CORRAL_ADVISORIES"
	// StreamAdvisoriesSubjects is the subject filter of StreamAdvisories.
	StreamAdvisoriesSubjects = subjectMaxDeliveries + ">"

	subjectMaxDeliveries = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES." + StreamJobs + "."
)

// MaxDeliveriesSubject is the subject on which the server announces a job of
// queue Q delivered MaxDeliver times without an ack.
func MaxDeliveriesSubject(queue string) string {
	return subjectMaxDeliveries + ConsumerName(queue)
}

// Message headers.
const (
	// HeaderMsgID de-duplicates publishes: the job id on jobs,
	// ResultMsgID(id) on results, "dead-SEQ" on the CORRAL_DEAD copy of a
	// job that ran out of deliveries.
	HeaderMsgID = "Nats-Msg-Id"
	// HeaderStream names the stream of a live output chunk: OutputStdout or
	// OutputStderr.
	HeaderStream = "Corral-Stream"
	// HeaderStep is the name of the step a live output chunk belongs to.
	HeaderStep = "Corral-Step"
	// HeaderSeq numbers the live output chunks of a job: 1, 2, ...
	HeaderSeq = "Corral-Seq"
	// HeaderError says why a job in StreamDead could not be run.
	HeaderError = "Corral-Error"
	// HeaderAttempts is the number of deliveries of a job in StreamDead.
	HeaderAttempts = "Corral-Attempts"
	// HeaderJobID is the id the worker gave a job in StreamDead (its
	// result's id: the body's id, else the Nats-Msg-Id it was published
	// with, else generated), so that a replay keeps it. Corral's addition.
	HeaderJobID = "Corral-Job-Id"
)

// Values of HeaderStream.
const (
	OutputStdout = "stdout"
	OutputStderr = "stderr"
)

// Names and defaults fixed by the protocol.
const (
	// DefaultQueue is the queue of jobs published without choosing one.
	DefaultQueue = "default"
	// ConsumerPrefix + Q is the durable pull consumer of queue Q.
	ConsumerPrefix = "corral-"
	// ResultMsgIDPrefix + ID is the HeaderMsgID of the result of job ID.
	ResultMsgIDPrefix = "result-"
	// ObjectBucket is the JetStream object store bucket for collected files
	// too large to return inline.
	ObjectBucket = "corral-files"
	// DefaultCwd is the working directory of a step without cwd, and the
	// directory files are written to and collected from.
	DefaultCwd = "/work"
	// DefaultFileMode is the permission bits of a job file without mode.
	DefaultFileMode FileMode = 0o644
	// MaxSteps is the largest number of steps in a job.
	MaxSteps = 16
	// MaxIDLen is the longest id or queue name, in bytes.
	MaxIDLen = 64
)

// Worker settings whose defaults the protocol fixes.
const (
	// DefaultResultsMaxAge is the max age of StreamResults: 24 h.
	DefaultResultsMaxAge = 24 * time.Hour
	// DefaultDeadMaxAge is the max age of StreamDead: 7 days.
	DefaultDeadMaxAge = 7 * 24 * time.Hour
	// MinDuplicateWindow is the smallest duplicate window of StreamJobs: 2 min.
	MinDuplicateWindow = 2 * time.Minute
	// DefaultAckWait is the AckWait of a queue's consumer: 30 s.
	DefaultAckWait = 30 * time.Second
	// DefaultMaxDeliver is the MaxDeliver of a queue's consumer: 3.
	DefaultMaxDeliver = 3
	// DefaultMaxAckPending is the MaxAckPending of a queue's consumer: 1000.
	DefaultMaxAckPending = 1000
	// CancelMemory is how long a worker remembers a cancel: 10 min.
	CancelMemory = 10 * time.Minute
	// DefaultInlineFileBytes is the largest collected file returned inline:
	// 256 KiB. Larger ones go to ObjectBucket.
	DefaultInlineFileBytes = 256 << 10
	// DefaultInlineTotalBytes is the most collected bytes returned inline in
	// one result: 512 KiB.
	DefaultInlineTotalBytes = 512 << 10
)

// JobSubject returns the subject jobs of queue are published to.
func JobSubject(queue string) string { return SubjectJobs + queue }

// ResultSubject returns the default reply subject of job id.
func ResultSubject(id string) string { return SubjectResults + id }

// OutputSubject returns the live output subject of job id.
func OutputSubject(id string) string { return SubjectOutput + id }

// CancelSubject returns the subject that cancels job id.
func CancelSubject(id string) string { return SubjectCancel + id }

// DeadSubject returns the subject dead jobs of queue are kept under.
func DeadSubject(queue string) string { return SubjectDead + queue }

// ConsumerName returns the durable consumer name of queue.
func ConsumerName(queue string) string { return ConsumerPrefix + queue }

// ResultMsgID returns the HeaderMsgID value of the result of job id.
func ResultMsgID(id string) string { return ResultMsgIDPrefix + id }

// QueueOf returns the queue a job subject belongs to, and false if subject is
// not a valid job subject (SubjectJobs followed by a valid queue name).
func QueueOf(subject string) (string, bool) {
	if len(subject) <= len(SubjectJobs) || subject[:len(SubjectJobs)] != SubjectJobs {
		return "", false
	}
	q := subject[len(SubjectJobs):]
	return q, ValidQueue(q)
}

// ValidID reports whether s is a valid job id: 1 to 64 characters of
// A-Z, a-z, 0-9, '_' and '-'.
func ValidID(s string) bool {
	if len(s) == 0 || len(s) > MaxIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// ValidQueue reports whether s is a valid queue name; the rule is the one of
// ValidID.
func ValidQueue(s string) bool { return ValidID(s) }
