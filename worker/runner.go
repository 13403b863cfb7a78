package worker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"

	"github.com/corralhq/corral/isolate"
	"github.com/corralhq/corral/jobs"
)

// Sandbox is what running a job needs of one sandbox; *isolate.Sandbox is
// one.
type Sandbox interface {
	WriteFiles(ctx context.Context, files []isolate.File) error
	Run(ctx context.Context, p isolate.Process) (*jobs.StepResult, error)
	Collect(ctx context.Context, patterns []string) ([]isolate.Collected, error)
}

// ObjectStore holds file contents too large for a message: job files given
// as `object` and collected files above the inline limit.
type ObjectStore interface {
	// Get returns the object bucket/name; ErrNoObject (wrapped) when the
	// bucket or the object does not exist, ErrObjectTooBig (wrapped) when
	// it is larger than max bytes, without reading it.
	Get(ctx context.Context, bucket, name string, max int64) ([]byte, error)
	// Put stores r as name in the results bucket and returns the
	// reference a result carries ("corral-files/NAME").
	Put(ctx context.Context, name string, r io.Reader) (string, error)
}

// outcome is what running a job's steps produced.
type outcome struct {
	Steps []jobs.StepResult
	Files []jobs.CollectedFile
	// Notes are problems worth telling the submitter that did not stop
	// the job (a collected file left out, …), joined into `error`.
	Notes []string
}

// runJob runs a decoded and validated job in sb: writes its files, runs its
// steps in order (skipping the rest after a failure unless a step says
// continue_on_failure), and collects its files. A *jobs.RejectError means
// the job asked for something unsafe (a path through a symlink); any other
// error means the sandbox failed.
func runJob(ctx context.Context, sb Sandbox, job *jobs.Job, q QueueConfig, objs ObjectStore, live func(step, stream string, p []byte)) (*outcome, error) {
	out := &outcome{}
	disk := jobs.DiskBytes(job.Steps)
	if disk == 0 {
		disk = q.Defaults.DiskBytes
	}
	if err := writeFiles(ctx, sb, job, objs, disk); err != nil {
		return nil, err
	}
	profile := job.Seccomp.OrDefault(q.Seccomp)
	failed := false
	for i := range job.Steps {
		st := &job.Steps[i]
		name := st.Name
		if name == "" {
			name = fmt.Sprintf("step-%d", i+1)
		}
		if failed || ctx.Err() != nil {
			r := jobs.StepResult{Name: name, Status: jobs.StatusSkipped}
			r.SetStdout(nil)
			r.SetStderr(nil)
			out.Steps = append(out.Steps, r)
			continue
		}
		stdin, err := st.StdinBytes()
		if err != nil {
			return nil, &jobs.RejectError{Field: fmt.Sprintf("steps[%d].stdin_b64", i), Reason: err.Error()}
		}
		p := isolate.Process{
			Argv:    st.Cmd,
			Env:     mergeEnv(isolate.DefaultEnv, st.Env),
			Cwd:     st.WorkDir(),
			Stdin:   stdin,
			Limits:  st.Limits.WithDefaults(q.Defaults),
			Seccomp: isolate.SeccompProfile(profile),
			// A later step runs in this sandbox: prepare its process.
			More: i < len(job.Steps)-1,
			// Nothing follows the last step but the reset (no files to
			// collect): the sandbox starts it while the result goes out.
			Last: i == len(job.Steps)-1 && len(job.Collect) == 0,
		}
		if live != nil {
			p.Output = func(stream string, b []byte) { live(name, stream, b) }
		}
		res, err := sb.Run(ctx, p)
		if err != nil {
			return nil, err
		}
		res.Name = name
		if st.ExpectStdout != nil {
			got, _ := res.StdoutBytes()
			m := jobs.Match(st.Compare.OrDefault(), *st.ExpectStdout, string(got))
			res.Matched = &m
		}
		out.Steps = append(out.Steps, *res)
		if !res.Succeeded() && !st.ContinueOnFailure {
			failed = true
		}
	}
	if len(job.Collect) > 0 {
		if err := collect(ctx, sb, job, q, objs, out); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// writeFiles writes the job's files into the sandbox; an object larger
// than disk bytes, which could not fit, is rejected unread.
func writeFiles(ctx context.Context, sb Sandbox, job *jobs.Job, objs ObjectStore, disk int64) error {
	if len(job.Files) == 0 {
		return nil
	}
	files := make([]isolate.File, 0, len(job.Files))
	for i := range job.Files {
		f := &job.Files[i]
		field := fmt.Sprintf("files[%d]", i)
		var data []byte
		var err error
		if f.Object != "" {
			if objs == nil {
				return &jobs.RejectError{Field: field + ".object", Reason: "this worker has no object store"}
			}
			bucket, name, serr := jobs.SplitObject(f.Object)
			if serr != nil {
				return &jobs.RejectError{Field: field + ".object", Reason: serr.Error()}
			}
			if data, err = objs.Get(ctx, bucket, name, disk); err != nil {
				if errors.Is(err, ErrNoObject) || errors.Is(err, ErrObjectTooBig) {
					return &jobs.RejectError{Field: field + ".object", Reason: err.Error()}
				}
				// Not the job's fault: another attempt may get it.
				return fmt.Errorf("%s.object %s: %w", field, f.Object, err)
			}
		} else if data, err = f.Bytes(); err != nil {
			return &jobs.RejectError{Field: field, Reason: err.Error()}
		}
		files = append(files, isolate.File{Path: f.Path, Data: data, Mode: fileMode(f.Perm())})
	}
	err := sb.WriteFiles(ctx, files)
	switch {
	case errors.Is(err, isolate.ErrUnsafePath):
		return &jobs.RejectError{Field: "files", Reason: err.Error()}
	case errors.Is(err, isolate.ErrNoSpace):
		return &jobs.RejectError{Field: "files", Reason: err.Error() + ": they do not fit disk_bytes"}
	case errors.Is(err, isolate.ErrBadFile):
		return &jobs.RejectError{Field: "files", Reason: err.Error()}
	}
	return err
}

func collect(ctx context.Context, sb Sandbox, job *jobs.Job, q QueueConfig, objs ObjectStore, out *outcome) error {
	found, err := sb.Collect(ctx, job.Collect)
	if errors.Is(err, isolate.ErrUnsafePath) {
		return &jobs.RejectError{Field: "collect", Reason: err.Error()}
	}
	if err != nil {
		return err
	}
	defer func() {
		for _, c := range found {
			if c.File != nil {
				c.File.Close()
			}
		}
	}()
	var inline int64
	for _, c := range found {
		if c.File == nil {
			out.Notes = append(out.Notes, fmt.Sprintf("collect %s: %s", c.Path, c.Skipped))
			continue
		}
		cf := jobs.CollectedFile{Path: c.Path, Size: c.Size}
		if c.Size <= q.InlineFileBytes && inline+c.Size <= q.InlineTotalBytes {
			data, err := io.ReadAll(io.LimitReader(c.File, q.InlineFileBytes+1))
			if err != nil {
				return err
			}
			inline += int64(len(data))
			cf.SetContent(data)
		} else if objs != nil {
			ref, err := objs.Put(ctx, job.ID+"/"+c.Path, c.File)
			if err != nil {
				return fmt.Errorf("store collected %s: %w", c.Path, err)
			}
			cf.Object = ref
		} else {
			out.Notes = append(out.Notes, fmt.Sprintf("collect %s: %d bytes is above the inline limit and this worker has no object store", c.Path, c.Size))
			continue
		}
		out.Files = append(out.Files, cf)
	}
	return nil
}

// mergeEnv lays a step's env over the defaults, in a stable order.
func mergeEnv(base []string, set map[string]string) []string {
	m := make(map[string]string, len(base)+len(set))
	for _, kv := range base {
		for i := 0; i < len(kv); i++ {
			if kv[i] == '=' {
				m[kv[:i]] = kv[i+1:]
				break
			}
		}
	}
	for k, v := range set {
		m[k] = v
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	env := make([]string, 0, len(keys))
	for _, k := range keys {
		env = append(env, k+"="+m[k])
	}
	return env
}

// fileMode turns the protocol's mode bits (07777) into an os.FileMode.
func fileMode(m jobs.FileMode) os.FileMode {
	mode := os.FileMode(m) & os.ModePerm
	if m&0o4000 != 0 {
		mode |= os.ModeSetuid
	}
	if m&0o2000 != 0 {
		mode |= os.ModeSetgid
	}
	if m&0o1000 != 0 {
		mode |= os.ModeSticky
	}
	return mode
}
