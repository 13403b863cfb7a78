package main

import (
	"flag"
	"os"
	"path/filepath"
	"testing"

	"go.uber.org/zap"
)

// TestWorkerFreshLayers: --fresh-layers and the config file's fresh_layers
// both reach the sandbox pool; by default layers may be kept.
func TestWorkerFreshLayers(t *testing.T) {
	cfgFile := filepath.Join(t.TempDir(), "worker.json")
	for _, tt := range []struct {
		file string
		args []string
		want bool
	}{
		{``, nil, false},
		{``, []string{"--fresh-layers"}, true},
		{`{"fresh_layers": true}`, nil, true},
		{`{"fresh_layers": false}`, []string{"--fresh-layers"}, true},
	} {
		fs := flag.NewFlagSet("worker", flag.ContinueOnError)
		wf := addWorkerFlags(fs)
		args := tt.args
		if tt.file != "" {
			if err := os.WriteFile(cfgFile, []byte(tt.file), 0o644); err != nil {
				t.Fatal(err)
			}
			args = append([]string{"--config", cfgFile}, args...)
		}
		if err := fs.Parse(args); err != nil {
			t.Fatal(err)
		}
		cfg, err := wf.workerConfig(zap.NewNop())
		if err != nil {
			t.Fatalf("%s %v: %v", tt.file, tt.args, err)
		}
		if cfg.Pool.FreshLayers != tt.want {
			t.Errorf("%s %v: FreshLayers %v, want %v", tt.file, tt.args, cfg.Pool.FreshLayers, tt.want)
		}
	}
}
