package main

import (
	"flag"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/corralhq/corral/jobs"
)

// sizeFlag is a byte count written as 268435456, 256M, 256MiB, 1G or 1.5GiB
// (K, M, G, T are powers of 1024, as with ulimit and cgroups).
type sizeFlag int64

func (s *sizeFlag) String() string { return strconv.FormatInt(int64(*s), 10) }

func (s *sizeFlag) Set(v string) error {
	n, err := parseSize(v)
	if err != nil {
		return err
	}
	*s = sizeFlag(n)
	return nil
}

func parseSize(v string) (int64, error) {
	t := strings.TrimSpace(v)
	t = strings.TrimSuffix(strings.TrimSuffix(t, "iB"), "B")
	mult := int64(1)
	if t != "" {
		switch strings.ToUpper(t[len(t)-1:]) {
		case "K":
			mult = 1 << 10
		case "M":
			mult = 1 << 20
		case "G":
			mult = 1 << 30
		case "T":
			mult = 1 << 40
		}
		if mult > 1 {
			t = t[:len(t)-1]
		}
	}
	f, err := strconv.ParseFloat(t, 64)
	if err != nil || !(f >= 0) || f*float64(mult) > 1<<62 {
		return 0, fmt.Errorf("invalid size %q (want e.g. 268435456, 256M or 1GiB)", v)
	}
	n := int64(f * float64(mult))
	if n == 0 && f > 0 {
		// 0 would mean "the default": say so rather than give it.
		return 0, fmt.Errorf("size %q is less than a byte", v)
	}
	return n, nil
}

// durationMs is a duration flag kept in milliseconds: "2s", "500ms", "1m",
// or a bare number of milliseconds.
type durationMs int64

func (d *durationMs) String() string { return (time.Duration(*d) * time.Millisecond).String() }

func (d *durationMs) Set(v string) error {
	if n, err := strconv.ParseInt(v, 10, 64); err == nil && n >= 0 {
		*d = durationMs(n)
		return nil
	}
	dur, err := time.ParseDuration(v)
	if err != nil || dur < 0 {
		return fmt.Errorf("invalid duration %q (want e.g. 2s, 500ms or 1m)", v)
	}
	if dur > 0 && dur < time.Millisecond {
		// 0 would mean "the default": say so rather than give it.
		return fmt.Errorf("duration %q is less than the limits' unit, a millisecond", v)
	}
	*d = durationMs(dur.Milliseconds())
	return nil
}

// listFlag collects a repeated flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

// limitFlags are the limit flags of exec and run.
type limitFlags struct {
	cpu, wall                durationMs
	mem, output, fsize, disk sizeFlag
	pids, nofile             *int64
}

// addLimitFlags declares the limit flags; whose says whose defaults apply
// ("" for the protocol's, "the queue's" for run).
func addLimitFlags(fs *flag.FlagSet, whose string) *limitFlags {
	def := func(v string) string {
		if whose == "" {
			return "(default " + v + ")"
		}
		return "(default: " + whose + ", " + v + ")"
	}
	l := &limitFlags{}
	fs.Var(&l.cpu, "cpu", "cpu time limit, e.g. 2s "+def("10s"))
	fs.Var(&l.wall, "wall", "wall time limit, e.g. 5s "+def("30s"))
	fs.Var(&l.mem, "memory", "memory limit, e.g. 256M "+def("512M"))
	fs.Var(&l.output, "output", "cap on each of stdout and stderr, e.g. 1M "+def("1M"))
	fs.Var(&l.fsize, "fsize", "largest file the command may write, e.g. 64M "+def("64M"))
	fs.Var(&l.disk, "disk", "size of the writable layer, e.g. 256M "+def("256M"))
	l.pids = fs.Int64("pids", 0, "maximum number of processes and threads "+def("128"))
	l.nofile = fs.Int64("nofile", 0, "maximum number of open files "+def("256"))
	return l
}

// limits returns the limits given; zero fields mean the defaults.
func (l *limitFlags) limits() jobs.Limits {
	return jobs.Limits{
		CPUTimeMs: int64(l.cpu), WallTimeMs: int64(l.wall), MemoryBytes: int64(l.mem),
		Pids: *l.pids, OutputBytes: int64(l.output), FileSizeBytes: int64(l.fsize),
		OpenFiles: *l.nofile, DiskBytes: int64(l.disk),
	}
}
