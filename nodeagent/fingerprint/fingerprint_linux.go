package fingerprint

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// builtins are the fingerprinters Detect runs, by name.
var builtins = map[string]factory{
	"cpu":    newCPU,
	"host":   newHost,
	"memory": newMemory,
	"numa":   newNUMA,
}

// defaultAffinity reads this process's CPU affinity mask. unix.CPUSet holds 1024 CPUs; the
// kernel refuses with EINVAL on machines built for more.
func defaultAffinity() ([]int, error) {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return nil, fmt.Errorf("sched_getaffinity: %w", err)
	}
	cpus := make([]int, 0, set.Count())
	for i := 0; len(cpus) < set.Count(); i++ {
		if set.IsSet(i) {
			cpus = append(cpus, i)
		}
	}
	return cpus, nil
}
