package isolate

import (
	"os"
	"testing"
)

// TestMain lets the test binary serve as the sandbox init, as corral's main
// does.
func TestMain(m *testing.M) {
	if IsInit() {
		RunInit()
	}
	os.Exit(m.Run())
}
