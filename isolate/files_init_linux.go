package isolate

// The init's side of writing a job's files and collecting its results. Job
// processes are all dead when these run, so nothing moves underneath; every
// path is still resolved with openat2 confined below /work, refusing
// symlinks, magic links and mount crossings, so no trick of the job's can
// lead the init outside the job's own files.

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// maxCollectFds bounds the fds of one reply (SCM_RIGHTS takes 253).
const maxCollectFds = MaxCollectFiles

// confined is how every path below /work is resolved.
const confined = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV

var errUnsafe = errors.New("unsafe path")

// cleanRel checks a path relative to /work once more: the parent validated
// it, the init does not trust that.
func cleanRel(p string) error {
	if p == "" || path.IsAbs(p) || path.Clean(p) != p || p == "." {
		return fmt.Errorf("%w %q", errUnsafe, p)
	}
	for _, e := range strings.Split(p, "/") {
		if e == ".." {
			return fmt.Errorf("%w %q", errUnsafe, p)
		}
	}
	return nil
}

// openWork opens the current job root's /work. The job root is not
// mounted in the init's own namespace: the init reaches it through the fd
// the reset left (loop.root_fd).
func (in *initProc) openWork() (int, error) {
	return unix.Openat2(int(in.loop.root_fd), "work", &unix.OpenHow{
		Flags: unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC, Resolve: confined,
	})
}

func (in *initProc) put(req *putReq, fds []int) error {
	defer closeAll(fds)
	if req == nil || len(fds) != 1 {
		return in.fail("protocol", errors.New("put needs a path and one fd"))
	}
	if err := in.putFile(req, fds[0]); err != nil {
		return in.fail("put", fmt.Errorf("%s: %w", req.Path, err))
	}
	return in.send(&message{Kind: msgReady})
}

func (in *initProc) putFile(req *putReq, src int) error {
	if err := cleanRel(req.Path); err != nil {
		return err
	}
	dir, err := in.openWork()
	if err != nil {
		return err
	}
	defer func() { unix.Close(dir) }()
	uid, gid := int(in.cfg.UID), int(in.cfg.GID)
	parts := strings.Split(req.Path, "/")
	for _, name := range parts[:len(parts)-1] {
		if err := unix.Mkdirat(dir, name, 0o755); err == nil {
			if err := unix.Fchownat(dir, name, uid, gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
				return err
			}
		} else if err != unix.EEXIST {
			return err
		}
		next, err := unix.Openat2(dir, name, &unix.OpenHow{
			Flags: unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC, Resolve: confined,
		})
		if err != nil {
			return fmt.Errorf("directory %q: %w", name, err)
		}
		unix.Close(dir)
		dir = next
	}
	fd, err := unix.Openat2(dir, parts[len(parts)-1], &unix.OpenHow{
		Flags:   unix.O_WRONLY | unix.O_CREAT | unix.O_TRUNC | unix.O_NOFOLLOW | unix.O_CLOEXEC,
		Mode:    0o600,
		Resolve: confined,
	})
	if err != nil {
		return err
	}
	dst := os.NewFile(uintptr(fd), req.Path)
	defer dst.Close()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return errors.New("not a regular file")
	}
	srcf := os.NewFile(uintptr(src), "content")
	_, err = io.Copy(dst, srcf)
	srcf.Close()
	if err != nil {
		return err
	}
	if err := unix.Fchown(fd, uid, gid); err != nil {
		return err
	}
	return unix.Fchmod(fd, req.Mode&0o7777)
}

func (in *initProc) collect(req *collectReq, fds []int) error {
	closeAll(fds)
	if req == nil {
		return in.fail("protocol", errors.New("collect without patterns"))
	}
	work, err := in.openWork()
	if err != nil {
		return in.fail("collect", err)
	}
	entries, files, err := collectFiles(work, req.Patterns, min(req.MaxFiles, maxCollectFds), nil)
	unix.Close(work)
	defer closeAll(files)
	if err != nil {
		return in.fail("collect", err)
	}
	return in.sendFds(&message{Kind: msgFiles, Files: entries}, files)
}

// matchAny reports whether rel itself matches a pattern.
func matchAny(patterns []string, rel string) bool {
	for _, p := range patterns {
		if ok, _ := path.Match(p, rel); ok {
			return true
		}
	}
	return false
}

// maxMatchDepth is the most path elements a path matching one of patterns
// can have: "*" and "?" never match a "/", so only a "/" of the pattern,
// or a character class (which may), adds one.
func maxMatchDepth(patterns []string) int {
	d := 0
	for _, p := range patterns {
		d = max(d, 1+strings.Count(p, "/")+strings.Count(p, "["))
	}
	return d
}

// collectBudget bounds the time one collect may take walking /work; what
// it has not reached by then is reported skipped. Walking is linear in the
// entries of /work, and directories no pattern can reach are not entered:
// this is a last bound for a job that fills its layer with small files.
var collectBudget = 10 * time.Second

// collectStats counts what a collect walked (for tests).
type collectStats struct{ visited int }

// collectFiles collects the files below the directory work (an O_PATH fd)
// whose path, or a directory they are in, matches one of patterns. It
// walks the directory through the fd's /proc/self/fd link, and opens each
// file relative to work, confined. Each entry is matched once: below a
// matching directory everything matches, and a directory deeper than any
// pattern reaches (maxMatchDepth) that does not match is skipped whole, so
// a job's deep chain of directories cannot make the walk quadratic.
func collectFiles(work int, patterns []string, maxFiles int, stats *collectStats) ([]fileEntry, []int, error) {
	for _, p := range patterns {
		if err := cleanRel(p); err != nil {
			return nil, nil, err
		}
	}
	var entries []fileEntry
	var fds []int
	// Skipped paths are listed up to maxSkipped, then only counted: a job
	// that makes thousands of fifos must not make the reply too big to
	// send.
	skipped, more := 0, 0
	// The reply must fit the parent's buffer however long and odd the
	// names (JSON may spend 6 bytes on one byte of a name): each entry
	// spends its worst case from a budget.
	budget := maxReplyNames
	spend := func(rel, why string) bool {
		cost := 6*len(rel) + len(why) + 64
		if cost > budget {
			return false
		}
		budget -= cost
		return true
	}
	tooLong := false
	skip := func(rel, why string) {
		if skipped++; skipped > maxSkipped || !spend(rel, why) {
			more++
			return
		}
		entries = append(entries, fileEntry{Path: rel, Skipped: why})
	}
	depth := maxMatchDepth(patterns)
	matchedDirs := map[string]bool{} // directories matched, or below one that was
	deadline := time.Now().Add(collectBudget)
	visited := 0
	err := fs.WalkDir(os.DirFS("/proc/self/fd/"+strconv.Itoa(work)), ".", func(rel string, d fs.DirEntry, err error) error {
		if err != nil || rel == "." {
			return nil // unreadable parts are simply not collected
		}
		if visited++; visited%256 == 0 && time.Now().After(deadline) {
			entries = append(entries, fileEntry{Path: "(the rest of /work)",
				Skipped: fmt.Sprintf("collecting stopped after %v, at %s", collectBudget, rel)})
			return fs.SkipAll
		}
		in := matchedDirs[path.Dir(rel)] || matchAny(patterns, rel)
		if d.IsDir() {
			if in {
				matchedDirs[rel] = true
			} else if strings.Count(rel, "/")+1 >= depth {
				return fs.SkipDir // nothing below can match
			}
			return nil
		}
		if !in {
			return nil
		}
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			skip(rel, "symlink: not followed")
			return nil
		case !d.Type().IsRegular():
			skip(rel, "not a regular file")
			return nil
		}
		if !spend(rel, "") {
			tooLong = true
			return fs.SkipAll
		}
		if len(fds) >= maxFiles {
			entries = append(entries, fileEntry{Path: rel, Skipped: fmt.Sprintf("more than %d files", maxFiles)})
			return fs.SkipAll
		}
		fd, err := unix.Openat2(work, rel, &unix.OpenHow{
			Flags: unix.O_RDONLY | unix.O_NOFOLLOW | unix.O_CLOEXEC, Resolve: confined,
		})
		if err != nil {
			skip(rel, err.Error())
			return nil
		}
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
			unix.Close(fd)
			skip(rel, "not a regular file")
			return nil
		}
		entries = append(entries, fileEntry{Path: rel, Size: st.Size})
		fds = append(fds, fd)
		return nil
	})
	if stats != nil {
		stats.visited = visited
	}
	if err != nil {
		closeAll(fds)
		return nil, nil, err
	}
	if more > 0 {
		entries = append(entries, fileEntry{Path: fmt.Sprintf("(%d more)", more), Skipped: "skipped too, not listed"})
	}
	if tooLong {
		entries = append(entries, fileEntry{Path: "(the rest of /work)",
			Skipped: fmt.Sprintf("the names collected so far fill the reply (%d KiB): collecting stopped", maxReplyNames>>10)})
	}
	return entries, fds, nil
}

// maxReplyNames bounds the bytes a collect's reply spends on names, well
// inside the parent's receive buffer (recvFds).
const maxReplyNames = 512 << 10

// maxSkipped bounds the skipped paths a collect lists.
const maxSkipped = 100
