package fingerprint

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// maxCPUID bounds CPU ids read from sysfs lists, far above any kernel's NR_CPUS, so a
// corrupt range cannot allocate without bound.
const maxCPUID = 1 << 16

// ParseCPUList parses a kernel CPU list such as "0-3,8-11\n" (sysfs cpulist files, cgroup
// cpusets) into sorted, distinct ids. An empty list gives no CPUs. Ids are bounded, so a corrupt
// range cannot allocate without bound.
func ParseCPUList(s string) ([]int, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	var cpus []int
	for part := range strings.SplitSeq(s, ",") {
		lo, hi, isRange := strings.Cut(strings.TrimSpace(part), "-")
		a, err := parseCPUID(lo)
		if err != nil {
			return nil, fmt.Errorf("parse cpu list %q: %w", s, err)
		}
		b := a
		if isRange {
			if b, err = parseCPUID(hi); err != nil {
				return nil, fmt.Errorf("parse cpu list %q: %w", s, err)
			}
			if b < a {
				return nil, fmt.Errorf("parse cpu list %q: range %d-%d is reversed", s, a, b)
			}
		}
		for c := a; c <= b; c++ {
			cpus = append(cpus, c)
		}
	}
	slices.Sort(cpus)
	return slices.Compact(cpus), nil
}

func parseCPUID(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, err
	}
	if n < 0 || n > maxCPUID {
		return 0, fmt.Errorf("cpu id %d out of range", n)
	}
	return n, nil
}
