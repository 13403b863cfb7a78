package isolate

import (
	"strings"
	"testing"
)

// A config is checked before anything is made; a CPU bandwidth the kernel
// would refuse is named as such, not "set limits: invalid argument".
func TestConfigValidate(t *testing.T) {
	base := Config{Lower: []string{"/lower"}, RunDir: "/run/corral"}
	for _, tc := range []struct {
		mod  func(*Config)
		want string // "" : valid
	}{
		{func(c *Config) {}, ""},
		{func(c *Config) { c.CPUs = 0.5 }, ""},
		{func(c *Config) { c.CPUs = -1 }, "positive"},
		{func(c *Config) { c.CPUs = 0.05 }, "below 0.1"},
		{func(c *Config) { c.RunDir = "relative" }, "RunDir"},
	} {
		c := base
		tc.mod(&c)
		err := c.WithDefaults().Validate()
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%+v: %v, want %q", c, err, tc.want)
		}
	}
}
