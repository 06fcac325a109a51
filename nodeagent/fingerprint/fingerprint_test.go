package fingerprint

import (
	"errors"
	"testing"

	"github.com/hashicorp/go-hclog"
)

func testLogger(t *testing.T) hclog.Logger {
	t.Helper()
	return hclog.New(&hclog.LoggerOptions{Name: t.Name(), Level: hclog.Debug, Output: t.Output()})
}

func cpuMask(cpus ...int) func() ([]int, error) {
	return func() ([]int, error) { return cpus, nil }
}

func TestOfferCPUs(t *testing.T) {
	tests := []struct {
		name  string
		cpus  int
		quota float64
		want  float64
	}{
		{"no quota", 8, 0, 8},
		{"quota below cpus", 8, 2.5, 2.5},
		{"quota above cpus", 4, 16, 4},
		{"quota below one cpu", 4, 0.2, 1},
		{"one cpu", 1, 0, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := &Node{CPUs: make([]int, tt.cpus), CPUQuota: tt.quota}
			if got := n.OfferCPUs(); got != tt.want {
				t.Errorf("OfferCPUs() = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestDetectAffinityErrors(t *testing.T) {
	boom := errors.New("boom")
	tests := []struct {
		name     string
		affinity func() ([]int, error)
		wantIs   error
	}{
		{"affinity fails", func() ([]int, error) { return nil, boom }, boom},
		{"empty mask", cpuMask(), nil},
		{"negative cpu", cpuMask(-1, 0), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Detect(testLogger(t), WithRoot("testdata/container"), WithAffinity(tt.affinity))
			if err == nil {
				t.Fatal("Detect succeeded, want an error")
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("Detect error %v does not wrap %v", err, tt.wantIs)
			}
		})
	}
}
