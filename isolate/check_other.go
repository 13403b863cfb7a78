//go:build !linux

package isolate

import "runtime"

// Check reports that corral's sandboxes need Linux.
func Check() []Feature {
	return []Feature{{
		Name:     "linux",
		Required: true,
		Detail:   "corral's sandboxes are built from Linux kernel features; this is " + runtime.GOOS,
		Fix:      "run corral on Linux (kernel 5.13 or newer, for Landlock)",
	}}
}
