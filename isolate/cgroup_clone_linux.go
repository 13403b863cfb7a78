package isolate

/*
#include <stdlib.h>
#include "spawn_linux.h"
*/
import "C"

import (
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// cloneIntoCgroup clones a child the way the init clones a job process,
// with dir (a cgroup v2 directory) as its cgroup: clone3 CLONE_INTO_CGROUP
// where the kernel has it. It returns the child's /proc/self/cgroup and
// whether it was born in dir (false: the kernel lacks CLONE_INTO_CGROUP, and
// a job process writes itself into cgroup.procs instead).
func cloneIntoCgroup(dir *os.File) (cgroupFile string, inCgroup bool, err error) {
	buf := (*C.char)(C.malloc(4096))
	defer C.free(unsafe.Pointer(buf))
	var in C.int
	n := C.corral_clone_into_cgroup_probe(C.int(dir.Fd()), buf, 4096, &in)
	if n < 0 {
		return "", false, unix.Errno(-n)
	}
	return C.GoStringN(buf, n), in != 0, nil
}
