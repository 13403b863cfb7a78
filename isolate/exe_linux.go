package isolate

import (
	"fmt"
	"io"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

var (
	exeOnce sync.Once
	exeFile *os.File
	exeErr  error
)

// initExecutable returns a sealed memfd copy of the running binary, made
// once per process. Every init is executed from it, so a job that gets hold
// of /proc/self/exe of an init can neither write it nor reach the host's
// binary through it (runc's CVE-2019-5736).
func initExecutable() (*os.File, error) {
	exeOnce.Do(func() { exeFile, exeErr = sealedCopy("/proc/self/exe") })
	return exeFile, exeErr
}

func sealedCopy(path string) (*os.File, error) {
	src, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("isolate: open own binary: %w", err)
	}
	defer src.Close()
	fd, err := unix.MemfdCreate("corral-init", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING|unix.MFD_EXEC)
	if err == unix.EINVAL { // kernels before 6.3 know no MFD_EXEC
		fd, err = unix.MemfdCreate("corral-init", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	}
	if err != nil {
		return nil, fmt.Errorf("isolate: memfd_create: %w", err)
	}
	f := os.NewFile(uintptr(fd), "corral-init")
	if _, err := io.Copy(f, src); err != nil {
		f.Close()
		return nil, fmt.Errorf("isolate: copy own binary: %w", err)
	}
	const seals = unix.F_SEAL_SEAL | unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_WRITE
	if _, err := unix.FcntlInt(f.Fd(), unix.F_ADD_SEALS, seals); err != nil {
		f.Close()
		return nil, fmt.Errorf("isolate: seal own binary: %w", err)
	}
	return f, nil
}
