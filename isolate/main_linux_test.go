package isolate

import (
	"os"
	"strconv"
	"testing"
)

// testCgroupParent keeps this package's cgroups apart from those of other
// packages' tests running at the same time, so leak checks see only ours.
var testCgroupParent = "corral-test-" + strconv.Itoa(os.Getpid())

// TestMain lets the test binary serve as the sandbox init, as corral's main
// does.
func TestMain(m *testing.M) {
	if IsInit() {
		RunInit()
	}
	os.Exit(m.Run())
}
