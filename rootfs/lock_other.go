//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package rootfs

import "fmt"

func lockFile(path string) (unlock func(), err error) {
	return nil, fmt.Errorf("lock image store: %w", ErrUnsupported)
}
