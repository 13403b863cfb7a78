//go:build !linux

package rootfs

// Mounter mounts image layers; it needs Linux.
type Mounter struct{}

// NewMounter returns ErrUnsupported: mounting images needs Linux.
func NewMounter(runDir string) (*Mounter, error) { return nil, ErrUnsupported }

// Dir returns "".
func (m *Mounter) Dir() string { return "" }

// Acquire returns ErrUnsupported.
func (m *Mounter) Acquire(img *Image) (lower []string, release func(), err error) {
	return nil, nil, ErrUnsupported
}

// Mounted returns 0.
func (m *Mounter) Mounted() int { return 0 }

// Close does nothing.
func (m *Mounter) Close() error { return nil }

// CleanStale returns ErrUnsupported.
func CleanStale(dataDir string) error { return ErrUnsupported }
