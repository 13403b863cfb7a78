package isolate

import (
	"errors"
	"fmt"
)

// SeccompProfile names the system call filter a job's process runs under.
// There is no profile that turns filtering off. See docs/seccomp.md for what
// each profile allows and why.
type SeccompProfile string

const (
	// SeccompDefault allows what compilers, interpreters, build tools and
	// shells use: files, processes without new namespaces, threads, pipes,
	// signals, and unix, IPv4, IPv6 and netlink route sockets. Everything
	// else fails with EPERM.
	SeccompDefault SeccompProfile = "default"
	// SeccompStrict allows computation only: I/O on open descriptors,
	// memory (never writable and executable at once), threads, time,
	// read-only opens for the dynamic loader and a single program image
	// (execve). No processes, no sockets.
	SeccompStrict SeccompProfile = "strict"
)

// ErrSeccompProfile is returned for a profile name that is not one of
// corral's profiles.
var ErrSeccompProfile = errors.New("isolate: unknown seccomp profile")

// ParseSeccompProfile returns the profile named s; "" means SeccompDefault.
// Any other name, "off" and "unconfined" included, is an error wrapping
// ErrSeccompProfile.
func ParseSeccompProfile(s string) (SeccompProfile, error) {
	switch p := SeccompProfile(s); p {
	case "":
		return SeccompDefault, nil
	case SeccompDefault, SeccompStrict:
		return p, nil
	}
	return "", fmt.Errorf("%w %q (want %q or %q)", ErrSeccompProfile, s, SeccompDefault, SeccompStrict)
}
