package jobs

import (
	"errors"
	"testing"
)

func TestDefaultAndMaxLimits(t *testing.T) {
	def := Limits{10000, 30000, 512 << 20, 128, 1 << 20, 64 << 20, 256, 256 << 20}
	if got := DefaultLimits(); got != def {
		t.Errorf("DefaultLimits = %v", got)
	}
	maxima := Limits{600000, 3600000, 8 << 30, 4096, 16 << 20, 1 << 30, 4096, 4 << 30}
	if got := MaxLimits(); got != maxima {
		t.Errorf("MaxLimits = %v", got)
	}
	if err := DefaultLimits().Check(MaxLimits()); err != nil {
		t.Errorf("defaults above maxima: %v", err)
	}
	if err := MaxLimits().Check(MaxLimits()); err != nil {
		t.Errorf("maxima above maxima: %v", err)
	}
}

func TestWithDefaults(t *testing.T) {
	got := Limits{CPUTimeMs: 1, DiskBytes: 2}.WithDefaults(DefaultLimits())
	want := DefaultLimits()
	want.CPUTimeMs, want.DiskBytes = 1, 2
	if got != want {
		t.Errorf("got %v, want %v", got, want)
	}
	if got := (Limits{}).WithDefaults(Limits{}); got != (Limits{}) {
		t.Errorf("zero with zero = %v", got)
	}
}

func TestLimitsCheck(t *testing.T) {
	tests := []struct {
		l, maxima Limits
		want      string
	}{
		{Limits{}, Limits{}, ""},
		{Limits{CPUTimeMs: 600000}, Limits{}, ""},
		{Limits{CPUTimeMs: 600001}, Limits{}, "limits.cpu_time_ms: 600001 is above the maximum 600000"},
		{Limits{WallTimeMs: 3600001}, Limits{}, "limits.wall_time_ms: 3600001 is above the maximum 3600000"},
		{Limits{MemoryBytes: 9000000000}, MaxLimits(), "limits.memory_bytes: 9000000000 is above the maximum 8589934592"},
		{Limits{Pids: 4097}, Limits{}, "limits.pids: 4097 is above the maximum 4096"},
		{Limits{OutputBytes: 16<<20 + 1}, Limits{}, "limits.output_bytes: 16777217 is above the maximum 16777216"},
		{Limits{FileSizeBytes: 1<<30 + 1}, Limits{}, "limits.file_size_bytes: 1073741825 is above the maximum 1073741824"},
		{Limits{OpenFiles: 4097}, Limits{}, "limits.open_files: 4097 is above the maximum 4096"},
		{Limits{DiskBytes: 4<<30 + 1}, Limits{}, "limits.disk_bytes: 4294967297 is above the maximum 4294967296"},
		{Limits{Pids: -1}, Limits{}, "limits.pids: -1 must not be negative"},
		{Limits{CPUTimeMs: -5, Pids: 1 << 40}, Limits{}, "limits.cpu_time_ms: -5 must not be negative"},
		{Limits{Pids: 10}, Limits{Pids: 9}, "limits.pids: 10 is above the maximum 9"},
		// A queue maximum may be above the protocol's.
		{Limits{Pids: 5000}, Limits{Pids: 8192}, ""},
	}
	for _, tt := range tests {
		err := tt.l.Check(tt.maxima)
		got := ""
		if err != nil {
			got = err.Error()
			var rej *RejectError
			if !errors.As(err, &rej) {
				t.Errorf("%v: not a *RejectError", err)
			}
		}
		if got != tt.want {
			t.Errorf("%v.Check(%v) = %q, want %q", tt.l, tt.maxima, got, tt.want)
		}
	}
}

func TestDiskBytes(t *testing.T) {
	steps := []Step{{Limits: Limits{DiskBytes: 5}}, {}, {Limits: Limits{DiskBytes: 9}}, {Limits: Limits{DiskBytes: 7}}}
	if got := DiskBytes(steps); got != 9 {
		t.Errorf("DiskBytes = %d", got)
	}
	if got := DiskBytes(nil); got != 0 {
		t.Errorf("DiskBytes(nil) = %d", got)
	}
}

func TestLimitsString(t *testing.T) {
	if s := (Limits{CPUTimeMs: 1, Pids: 2}).String(); s != "{cpu_time_ms=1 pids=2}" {
		t.Errorf("String = %s", s)
	}
}
