package isolate

import (
	"fmt"
	"os"
	"path/filepath"
)

// checkReachable reports a clear error when a directory on the way to path
// cannot be searched by others: the sandbox's init runs as an unprivileged
// host uid and must walk these paths before it pivots away from the host.
func checkReachable(path string) error {
	for p := filepath.Clean(path); ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err != nil {
			return fmt.Errorf("isolate: %w", err)
		}
		if fi.IsDir() && fi.Mode().Perm()&0o001 == 0 {
			return fmt.Errorf("isolate: %s (mode %04o) is not searchable by the sandbox's host uids: chmod o+x it, or use a data directory below one that is", p, fi.Mode().Perm())
		}
		if p == "/" {
			return nil
		}
	}
}
