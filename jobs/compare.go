package jobs

import (
	"strings"
	"unicode"
)

// Match reports whether actual (a step's stdout) matches expected (its
// expect_stdout) under mode:
//
//   - CompareExact: byte for byte.
//   - CompareLines (also ""): line by line, ignoring white space at the end
//     of each line (so "\r\n" equals "\n") and empty lines at the end.
//   - CompareTokens: the sequences of white-space separated words are equal;
//     any run of white space is one separator and white space at both ends is
//     ignored.
//
// An unknown mode compares exactly, the strictest choice.
func Match(mode Compare, expected, actual string) bool {
	switch mode.OrDefault() {
	case CompareLines:
		return equalLines(expected, actual)
	case CompareTokens:
		return equalTokens(expected, actual)
	}
	return expected == actual
}

// equalLines compares a and b as CompareLines describes.
func equalLines(a, b string) bool {
	la, lb := trimmedLines(a), trimmedLines(b)
	if len(la) != len(lb) {
		return false
	}
	for i := range la {
		if la[i] != lb[i] {
			return false
		}
	}
	return true
}

// trimmedLines splits s into lines without their trailing white space and
// drops the empty lines at the end.
func trimmedLines(s string) []string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = strings.TrimRightFunc(l, unicode.IsSpace)
	}
	n := len(lines)
	for n > 0 && lines[n-1] == "" {
		n--
	}
	return lines[:n]
}

// equalTokens compares a and b as CompareTokens describes, without building
// the token lists.
func equalTokens(a, b string) bool {
	for {
		a = strings.TrimLeftFunc(a, unicode.IsSpace)
		b = strings.TrimLeftFunc(b, unicode.IsSpace)
		if a == "" || b == "" {
			return a == b
		}
		ia, ib := tokenEnd(a), tokenEnd(b)
		if a[:ia] != b[:ib] {
			return false
		}
		a, b = a[ia:], b[ib:]
	}
}

// tokenEnd returns the length of the token s starts with.
func tokenEnd(s string) int {
	if i := strings.IndexFunc(s, unicode.IsSpace); i >= 0 {
		return i
	}
	return len(s)
}
