package main

import (
	"fmt"
	"strconv"
	"strings"
	"time"
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
	if err != nil || f < 0 || f*float64(mult) > 1<<62 {
		return 0, fmt.Errorf("invalid size %q (want e.g. 268435456, 256M or 1GiB)", v)
	}
	return int64(f * float64(mult)), nil
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
	*d = durationMs(dur.Milliseconds())
	return nil
}

// listFlag collects a repeated flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }
