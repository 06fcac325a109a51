// Package sched is shoal's scheduling policy with no I/O and no clock: resource vectors, the
// fit test, and the placement of placement-group bundles on nodes. The agent and the head
// drive it and act on its answers, so it is tested fast and deterministically.
package sched

import (
	"fmt"
	"math"
	"sort"
	"strings"
)

// Resources maps a resource name (CPU, GPU, memory, object_store_memory or a custom name) to
// an amount. A missing name is zero.
type Resources map[string]float64

const eps = 1e-9

// Clone returns a copy of r.
func (r Resources) Clone() Resources {
	c := make(Resources, len(r))
	for k, v := range r {
		c[k] = v
	}
	return c
}

// Fits reports whether req fits in r.
func (r Resources) Fits(req Resources) bool {
	for k, v := range req {
		if v > eps && r[k]+eps < v {
			return false
		}
	}
	return true
}

// Sub subtracts req from r in place.
func (r Resources) Sub(req Resources) {
	for k, v := range req {
		if v != 0 {
			r[k] -= v
		}
	}
}

// Add adds req to r in place.
func (r Resources) Add(req Resources) {
	for k, v := range req {
		if v != 0 {
			r[k] += v
		}
	}
}

// Missing describes what of req exceeds r, e.g. "CPU: needs 4, has 2".
func (r Resources) Missing(req Resources) string {
	var parts []string
	for _, k := range sortedKeys(req) {
		if v := req[k]; v > eps && r[k]+eps < v {
			parts = append(parts, fmt.Sprintf("%s: needs %s, has %s", k, fmtAmount(k, v), fmtAmount(k, r[k])))
		}
	}
	return strings.Join(parts, "; ")
}

// String formats r with sorted keys.
func (r Resources) String() string {
	var parts []string
	for _, k := range sortedKeys(r) {
		parts = append(parts, fmt.Sprintf("%s=%s", k, fmtAmount(k, r[k])))
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

func sortedKeys(r Resources) []string {
	ks := make([]string, 0, len(r))
	for k := range r {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func fmtAmount(k string, v float64) string {
	if k == "memory" || k == "object_store_memory" {
		return fmt.Sprintf("%.0fMiB", v/(1<<20))
	}
	if v == math.Trunc(v) {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%g", v)
}

// Sum adds up bundles.
func Sum(bundles []Resources) Resources {
	t := Resources{}
	for _, b := range bundles {
		t.Add(b)
	}
	return t
}
