package main

import "testing"

// Sizes and durations parse to what they say, and a value that would
// round to 0 (which means "the default" for a limit) is refused, as are
// negative numbers and NaN.
func TestLimitFlagValues(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"268435456", 268435456, true}, {"256M", 256 << 20, true}, {"1GiB", 1 << 30, true},
		{"0", 0, true}, {"1.5K", 1536, true},
		{"0.4", 0, false}, {"-1", 0, false}, {"NaN", 0, false}, {"lots", 0, false},
	} {
		got, err := parseSize(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("size %q: %d, %v", tc.in, got, err)
		}
	}
	for _, tc := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"2s", 2000, true}, {"500ms", 500, true}, {"1500", 1500, true}, {"0", 0, true}, {"1.5ms", 1, true},
		{"900us", 0, false}, {"-1s", 0, false}, {"soon", 0, false},
	} {
		var d durationMs
		err := d.Set(tc.in)
		if (err == nil) != tc.ok || int64(d) != tc.want {
			t.Errorf("duration %q: %d, %v", tc.in, d, err)
		}
	}
}

// A line too big to submit keeps its own id in its local result when the
// id comes first.
func TestLeadingID(t *testing.T) {
	for line, want := range map[string]string{
		`{"id": "big-1", "cmd": ["true"], "stdin": "xxxx`: "big-1",
		` { "id":"a_b-9","cmd":`:                          "a_b-9",
		`{"cmd": ["true"], "id": "late"}`:                 "",
		`{"id": "bad id"}`:                                "",
		`not json`:                                        "",
	} {
		if got := leadingID([]byte(line)); got != want {
			t.Errorf("%q: %q, want %q", line, got, want)
		}
	}
}
