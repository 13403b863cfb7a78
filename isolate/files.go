package isolate

import (
	"errors"
	"os"
)

// MaxCollectFiles is the most files one Collect returns.
const MaxCollectFiles = 250

// File is a file to put below /work before a job's first step.
type File struct {
	// Path is relative to /work: clean, no "..", not absolute.
	Path string
	// Data is the content.
	Data []byte
	// Mode holds the permission bits, with os.ModeSetuid, os.ModeSetgid
	// and os.ModeSticky (they grant nothing: the job's root is nosuid and
	// the file belongs to the job's uid). Default 0644.
	Mode os.FileMode
}

// Collected is a file collected from below /work.
type Collected struct {
	// Path is relative to /work.
	Path string
	// Size is the file's size in bytes.
	Size int64
	// Skipped says why the file was not collected (a symlink, not a
	// regular file, too many files); File is nil then.
	Skipped string
	// File is open for reading; the caller closes it.
	File *os.File
}

// ErrUnsafePath is returned for a path that is absolute, not clean, or
// climbs out of /work, and for one that would cross a symlink.
var ErrUnsafePath = errors.New("isolate: unsafe path")

// ErrNoSpace is a file that does not fit the sandbox's writable layer
// (its disk bytes): the job's own doing, not the sandbox's.
var ErrNoSpace = errors.New("isolate: no space left in the writable layer")

// ErrBadFile is returned by WriteFiles for a file the job's own list makes
// impossible to write, such as "d" after "d/f" (a directory) or "a/b"
// after "a" (a file on the path). The sandbox is fine.
var ErrBadFile = errors.New("isolate: file cannot be written")
