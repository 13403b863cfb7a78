package jobs

import "testing"

func TestMatch(t *testing.T) {
	tests := []struct {
		mode             Compare
		expected, actual string
		want             bool
	}{
		{CompareExact, "a\n", "a\n", true},
		{CompareExact, "a\n", "a", false},
		{CompareExact, "a", "a ", false},
		{CompareExact, "", "", true},

		{CompareLines, "a\nb\n", "a\nb\n", true},
		{CompareLines, "a\nb", "a\nb\n\n\n", true},
		{CompareLines, "a  \nb\t\n", "a\nb", true},
		{CompareLines, "a\r\nb\r\n", "a\nb\n", true},
		{CompareLines, "a\nb\n", "a\n\nb\n", false},
		{CompareLines, "a\nb", " a\nb", false},
		{CompareLines, "\na", "a", false},
		{CompareLines, "a b", "a  b", false},
		{CompareLines, "", "\n\n  \n", true},
		{CompareLines, "a", "", false},
		{"", "x \n", "x", true}, // lines is the default

		{CompareTokens, "1 2 3", "1\n2\t3\n", true},
		{CompareTokens, "  1 2 ", "1 2", true},
		{CompareTokens, "1 2", "12", false},
		{CompareTokens, "1 2", "1 2 3", false},
		{CompareTokens, "", " \n\t", true},
		{CompareTokens, "a", "", false},
		{CompareTokens, "ab", "a b", false},
		{CompareTokens, "a\u00a0b", "a b", true}, // any Unicode white space

		{"bogus", "a", "a", true},
		{"bogus", "a", "a\n", false}, // an unknown mode is exact
	}
	for _, tt := range tests {
		if got := Match(tt.mode, tt.expected, tt.actual); got != tt.want {
			t.Errorf("Match(%q, %q, %q) = %v", tt.mode, tt.expected, tt.actual, got)
		}
		if tt.mode != "bogus" {
			if got := Match(tt.mode, tt.actual, tt.expected); got != tt.want {
				t.Errorf("Match(%q, %q, %q) = %v (swapped)", tt.mode, tt.actual, tt.expected, got)
			}
		}
	}
}

func BenchmarkMatchLines(b *testing.B) {
	s := ""
	for range 10000 {
		s += "12345 67890 \n"
	}
	for b.Loop() {
		Match(CompareLines, s, s)
	}
}
