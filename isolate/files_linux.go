package isolate

import (
	"context"
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// WriteFiles writes files below /work as the job's uid. The init resolves
// each path confined below /work, refusing symlinks: a path through a
// symlink fails with ErrUnsafePath and nothing is written outside /work.
func (s *Sandbox) WriteFiles(ctx context.Context, files []File) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.brokenErr(); err != nil {
		return err
	}
	if s.resetting {
		return errResetting
	}
	for _, f := range files {
		if err := cleanRel(f.Path); err != nil {
			return fmt.Errorf("%w: %q", ErrUnsafePath, f.Path)
		}
		mode := uint32(f.Mode.Perm())
		if mode == 0 {
			mode = 0o644
		}
		if f.Mode&os.ModeSetuid != 0 {
			mode |= unix.S_ISUID
		}
		if f.Mode&os.ModeSetgid != 0 {
			mode |= unix.S_ISGID
		}
		if f.Mode&os.ModeSticky != 0 {
			mode |= unix.S_ISVTX
		}
		mfd, err := memfdWith("file", f.Data)
		if err != nil {
			return err
		}
		err = s.send(&message{Kind: msgPut, Put: &putReq{Path: f.Path, Mode: mode}}, []int{int(mfd.Fd())})
		mfd.Close()
		if err != nil {
			return err
		}
		if _, err := s.expect(ctx, msgReady); err != nil {
			var ie *InitError
			if errors.As(err, &ie) && ie.Step == "put" {
				switch ie.Errno {
				case unix.ELOOP, unix.EXDEV:
					return fmt.Errorf("%w: %q crosses a symlink or a mount (%v)", ErrUnsafePath, f.Path, ie.Errno)
				case unix.ENOSPC, unix.EFBIG, unix.EDQUOT:
					return fmt.Errorf("%w: %q (%d bytes): %v", ErrNoSpace, f.Path, len(f.Data), ie.Errno)
				case unix.ENOTDIR:
					return fmt.Errorf("%w: %q: a directory on its path is a file (%v)", ErrBadFile, f.Path, ie.Errno)
				case unix.EISDIR:
					return fmt.Errorf("%w: %q is a directory (%v)", ErrBadFile, f.Path, ie.Errno)
				}
				// The init refused this file and is fine: the job's
				// list is at fault, not the sandbox.
				return fmt.Errorf("%w: %q: %v", ErrBadFile, f.Path, ie.Errno)
			}
			return s.fail(err)
		}
	}
	return nil
}

// Collect returns the regular files below /work whose path, or a directory
// they are in, matches one of patterns (path.Match syntax, relative to
// /work). Symlinks are never followed: they come back Skipped.
func (s *Sandbox) Collect(ctx context.Context, patterns []string) ([]Collected, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.brokenErr(); err != nil {
		return nil, err
	}
	if s.resetting {
		return nil, errResetting
	}
	for _, p := range patterns {
		if err := cleanRel(p); err != nil {
			return nil, fmt.Errorf("%w: pattern %q", ErrUnsafePath, p)
		}
	}
	if err := s.send(&message{Kind: msgCollect, Coll: &collectReq{Patterns: patterns, MaxFiles: MaxCollectFiles}}, nil); err != nil {
		return nil, err
	}
	m, fds, err := s.recvFds()
	if err != nil {
		return nil, err
	}
	if m.Kind == msgError && m.Err != nil {
		closeAll(fds)
		return nil, m.Err
	}
	if m.Kind != msgFiles {
		closeAll(fds)
		return nil, s.fail(fmt.Errorf("isolate: init sent %q, want %q", m.Kind, msgFiles))
	}
	var out []Collected
	for _, e := range m.Files {
		c := Collected{Path: e.Path, Size: e.Size, Skipped: e.Skipped}
		if e.Skipped == "" {
			if len(fds) == 0 {
				for _, c := range out {
					if c.File != nil {
						c.File.Close()
					}
				}
				return nil, s.fail(errors.New("isolate: collect reply lacks an fd"))
			}
			c.File = os.NewFile(uintptr(fds[0]), e.Path)
			fds = fds[1:]
		}
		out = append(out, c)
	}
	closeAll(fds)
	return out, nil
}
