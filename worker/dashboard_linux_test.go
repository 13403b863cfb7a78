package worker

import (
	"encoding/json"
	"os"
	"regexp"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// The Grafana dashboard in deploy/ queries only metrics the worker has.
func TestDashboardMetricsExist(t *testing.T) {
	const path = "../deploy/grafana/corral-dashboard.json"
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var dash any
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	reg := &recorder{Registry: prometheus.NewRegistry()}
	startE2E(t, func(c *Config) { c.Metrics = reg })
	have := map[string]bool{}
	for _, n := range reg.names() {
		have[n] = true
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			have[n+suffix] = true
		}
	}
	used := regexp.MustCompile(`\bcorral_[a-z_]+`).FindAllString(string(b), -1)
	if len(used) == 0 {
		t.Fatal("the dashboard queries no corral_ metric")
	}
	for _, n := range used {
		if !have[n] {
			t.Errorf("%s queries %s, which the worker does not export", path, n)
		}
	}
}
