package jobs

import (
	"errors"
	"fmt"
	"path"
	"strings"
)

// ErrUnsafePath matches every error of SafeRelPath with errors.Is.
var ErrUnsafePath = errors.New("unsafe path")

// Path length limits of Linux, checked up front so that a job with a path the
// sandbox could never create is rejected rather than failing while it runs.
const (
	// MaxPathBytes is the longest path, in bytes (PATH_MAX - 1).
	MaxPathBytes = 4095
	// MaxNameBytes is the longest path element, in bytes (NAME_MAX).
	MaxNameBytes = 255
)

// SafeRelPath checks that p is a path that stays inside the directory it is
// relative to, and returns it cleaned (path.Clean). It rejects an empty path,
// an absolute one, one with a NUL byte, one with a ".." element anywhere
// (even where cleaning would remove it), one naming the directory itself
// (".") and one longer than Linux allows. The errors match ErrUnsafePath.
//
// The result never starts with "/" and has no ".." element. It is lexical
// only: the caller still must not follow symlinks out of the directory.
func SafeRelPath(p string) (string, error) {
	switch {
	case p == "":
		return "", unsafePath(p, "must not be empty")
	case strings.IndexByte(p, 0) >= 0:
		return "", unsafePath(p, "must not contain a NUL byte")
	case p[0] == '/':
		return "", unsafePath(p, "must be relative")
	case len(p) > MaxPathBytes:
		return "", unsafePath(p, fmt.Sprintf("is longer than %d bytes", MaxPathBytes))
	}
	for el := range strings.SplitSeq(p, "/") {
		if el == ".." {
			return "", unsafePath(p, `must not contain a ".." element`)
		}
		if len(el) > MaxNameBytes {
			return "", unsafePath(p, fmt.Sprintf("has an element longer than %d bytes", MaxNameBytes))
		}
	}
	c := path.Clean(p)
	if c == "." {
		return "", unsafePath(p, "must name something inside the directory, not the directory itself")
	}
	return c, nil
}

// unsafePath returns an error matching ErrUnsafePath that quotes p.
func unsafePath(p, reason string) error {
	return fmt.Errorf("%w %s: %s", ErrUnsafePath, quote(p), reason)
}
