package main

import (
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/zap"
)

// TestWorkerFreshLayers: --fresh-layers and --keep-netns, and the config
// file's fresh_layers and keep_netns, reach the sandbox pool; by default
// layers may be kept and network namespaces are replaced after a socket.
func TestWorkerFreshLayers(t *testing.T) {
	cfgFile := filepath.Join(t.TempDir(), "worker.json")
	for _, tt := range []struct {
		file        string
		args        []string
		fresh, keep bool
	}{
		{``, nil, false, false},
		{``, []string{"--fresh-layers"}, true, false},
		{`{"fresh_layers": true}`, nil, true, false},
		{`{"fresh_layers": false}`, []string{"--fresh-layers"}, true, false},
		{``, []string{"--keep-netns"}, false, true},
		{`{"keep_netns": true}`, nil, false, true},
		{`{"keep_netns": false, "fresh_layers": true}`, []string{"--keep-netns"}, true, true},
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
		if cfg.Pool.FreshLayers != tt.fresh || cfg.Pool.KeepNetNS != tt.keep {
			t.Errorf("%s %v: FreshLayers %v, KeepNetNS %v, want %v, %v", tt.file, tt.args,
				cfg.Pool.FreshLayers, cfg.Pool.KeepNetNS, tt.fresh, tt.keep)
		}
	}
}

// A bad rate is refused by the flag's name before any network is made.
func TestWorkerEgressRateFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--egress-rate", "fast"},
		{"--egress-download-rate", "fast"},
		{"--egress-download-rate", "100"}, // below 8000 bits/s: netpool refuses it
	} {
		fs := flag.NewFlagSet("worker", flag.ContinueOnError)
		wf := addWorkerFlags(fs)
		if err := fs.Parse(append(args, "--worker-id", "zz")); err != nil {
			t.Fatal(err)
		}
		_, _, err := wf.egressPool(context.Background(), zap.NewNop())
		if err == nil || !strings.Contains(err.Error(), strings.TrimPrefix(args[0], "--")) && !strings.Contains(err.Error(), "download rate") {
			t.Errorf("%v: %v", args, err)
		}
	}
}
