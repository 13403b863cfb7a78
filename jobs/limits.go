package jobs

import "fmt"

// Limits bounds one step. Every field is an integer; 0 (or absent in JSON)
// means the worker's default for the queue, see DefaultLimits. A value above
// the queue's maximum (see MaxLimits) makes the job rejected.
type Limits struct {
	// CPUTimeMs is the CPU time (user + system) of all the step's processes,
	// in milliseconds. Default 10 000, maximum 600 000.
	CPUTimeMs int64 `json:"cpu_time_ms,omitempty"`
	// WallTimeMs is the elapsed time of the step, in milliseconds.
	// Default 30 000, maximum 3 600 000.
	WallTimeMs int64 `json:"wall_time_ms,omitempty"`
	// MemoryBytes is the memory of all the step's processes, in bytes.
	// Default 512 MiB, maximum 8 GiB.
	MemoryBytes int64 `json:"memory_bytes,omitempty"`
	// Pids is the number of processes and threads alive at once.
	// Default 128, maximum 4096.
	Pids int64 `json:"pids,omitempty"`
	// OutputBytes caps each of stdout and stderr, in bytes. Default 1 MiB,
	// maximum 16 MiB.
	OutputBytes int64 `json:"output_bytes,omitempty"`
	// FileSizeBytes is the largest file a process may write, in bytes.
	// Default 64 MiB, maximum 1 GiB.
	FileSizeBytes int64 `json:"file_size_bytes,omitempty"`
	// OpenFiles is the number of open file descriptors per process.
	// Default 256, maximum 4096.
	OpenFiles int64 `json:"open_files,omitempty"`
	// DiskBytes is the size of the writable layer all steps share, in bytes;
	// the largest value among a job's steps applies (see DiskBytes).
	// Default 256 MiB, maximum 4 GiB.
	DiskBytes int64 `json:"disk_bytes,omitempty"`
}

const (
	mib = 1 << 20
	gib = 1 << 30
)

// DefaultLimits returns the protocol's default limits: cpu 10 000 ms, wall
// 30 000 ms, memory 512 MiB, pids 128, output 1 MiB, file size 64 MiB, open
// files 256, disk 256 MiB.
func DefaultLimits() Limits {
	return Limits{
		CPUTimeMs:     10_000,
		WallTimeMs:    30_000,
		MemoryBytes:   512 * mib,
		Pids:          128,
		OutputBytes:   1 * mib,
		FileSizeBytes: 64 * mib,
		OpenFiles:     256,
		DiskBytes:     256 * mib,
	}
}

// MaxLimits returns the protocol's maximum limits: cpu 600 000 ms, wall
// 3 600 000 ms, memory 8 GiB, pids 4096, output 16 MiB, file size 1 GiB, open
// files 4096, disk 4 GiB.
func MaxLimits() Limits {
	return Limits{
		CPUTimeMs:     600_000,
		WallTimeMs:    3_600_000,
		MemoryBytes:   8 * gib,
		Pids:          4096,
		OutputBytes:   16 * mib,
		FileSizeBytes: 1 * gib,
		OpenFiles:     4096,
		DiskBytes:     4 * gib,
	}
}

// limitField is one field of a Limits with its JSON name.
type limitField struct {
	name string
	v    *int64
}

// fields lists l's fields in declaration order.
func (l *Limits) fields() [8]limitField {
	return [8]limitField{
		{"cpu_time_ms", &l.CPUTimeMs},
		{"wall_time_ms", &l.WallTimeMs},
		{"memory_bytes", &l.MemoryBytes},
		{"pids", &l.Pids},
		{"output_bytes", &l.OutputBytes},
		{"file_size_bytes", &l.FileSizeBytes},
		{"open_files", &l.OpenFiles},
		{"disk_bytes", &l.DiskBytes},
	}
}

// WithDefaults returns l with every zero field set to def's value.
func (l Limits) WithDefaults(def Limits) Limits {
	lf, df := l.fields(), def.fields()
	for i := range lf {
		if *lf[i].v == 0 {
			*lf[i].v = *df[i].v
		}
	}
	return l
}

// Check reports a negative field of l, or a field above maxima's value, as a
// *RejectError naming the JSON field, like
// "limits.memory_bytes: 9000000000 is above the maximum 8589934592".
// A zero field of maxima stands for the protocol maximum (MaxLimits), so a zero
// maximum never lifts a bound.
func (l Limits) Check(maxima Limits) error {
	maxima = maxima.WithDefaults(MaxLimits())
	lf, mf := l.fields(), maxima.fields()
	for i := range lf {
		v, m := *lf[i].v, *mf[i].v
		switch {
		case v < 0:
			return rejectf("limits."+lf[i].name, "%d must not be negative", v)
		case v > m:
			return rejectf("limits."+lf[i].name, "%d is above the maximum %d", v, m)
		}
	}
	return nil
}

// String formats l compactly for logs, leaving out zero fields.
func (l Limits) String() string {
	s := "{"
	for _, f := range l.fields() {
		if *f.v != 0 {
			if len(s) > 1 {
				s += " "
			}
			s += fmt.Sprintf("%s=%d", f.name, *f.v)
		}
	}
	return s + "}"
}

// DiskBytes returns the disk_bytes that applies to a job with these steps:
// the largest among them, or 0 (the worker default) if none sets it.
func DiskBytes(steps []Step) int64 {
	var n int64
	for _, s := range steps {
		n = max(n, s.Limits.DiskBytes)
	}
	return n
}
