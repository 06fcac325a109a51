package main

import (
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strings"

	"github.com/urfave/cli/v2"
)

// benchObsFlags are `shoal bench core`'s observability flags: the clusters it starts record
// (on, the default) or not (off), or it measures both in one run (compare).
func benchObsFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "observability", Value: "on", EnvVars: []string{"SHOAL_BENCH_OBSERVABILITY"},
			Usage: "the benchmark clusters' --observability: on, off, or compare (both in one run, alternating, with the on/off ratio)"},
		&cli.IntFlag{Name: "compare-rounds", Value: 2, EnvVars: []string{"SHOAL_BENCH_COMPARE_ROUNDS"},
			Usage: "with --observability compare: rounds over the metrics, each metric run off and on next to each other (the order alternating); its figure is the median over rounds"},
	}
}

// benchCompare runs each Python metric on a fresh cluster with observability off and one with it
// on, next to each other and in alternating order, for a number of rounds, and prints
// each metric's figures and their ratio (on/off; for a time or a size, off/on, so that above 1
// is always "on is better"), the start-up figures included.
func benchCompare(c *cli.Context, exe string, env []string, only []string, python, startup bool) (map[string]any, error) {
	rounds := c.Int("compare-rounds")
	if rounds < 1 {
		return nil, cli.Exit("--compare-rounds must be at least 1", 2)
	}
	if python && len(only) == 0 { // every metric shoal.bench has, one at a time
		list := exec.Command(c.String("python"), "-m", "shoal.bench", "--list")
		list.Env = env
		out, err := list.Output()
		if err != nil {
			return nil, cli.Exit(fmt.Sprintf("list shoal.bench's metrics: %v", err), 1)
		}
		for _, l := range strings.Split(string(out), "\n") {
			if f := strings.Fields(l); len(f) > 0 {
				only = append(only, f[0])
			}
		}
	}
	vals := map[string]map[string][]float64{"on": {}, "off": {}}
	units := map[string]string{}
	var order []string
	for r := 0; r < rounds; r++ {
		for i, metric := range only {
			// off then on, then on then off: neither side always runs first, and each metric's
			// two runs are next to each other, so that a change of the machine's load hits both
			modes := []string{"off", "on"}
			if (r+i)%2 == 1 {
				modes = []string{"on", "off"}
			}
			for _, mode := range modes {
				fmt.Fprintf(os.Stderr, "shoal bench core: round %d of %d, %s, observability %s\n", r+1, rounds, metric, mode)
				rep, err := benchPythonObs(c, exe, env, []string{metric}, mode)
				if rep == nil {
					return nil, err
				}
				res, _ := rep["results"].([]any)
				for _, x := range res {
					m, _ := x.(map[string]any)
					name, _ := m["name"].(string)
					v, ok := m["value"].(float64)
					if name == "" || !ok {
						continue
					}
					if _, seen := units[name]; !seen {
						order = append(order, name)
					}
					units[name], _ = m["unit"].(string)
					vals[mode][name] = append(vals[mode][name], v)
				}
			}
		}
	}
	// the start-up figures the same way: a cold `shoal run -- true`, and the idle process's RSS
	for r := 0; r < rounds && startup; r++ {
		for i, mode := range []string{"off", "on"} {
			if r%2 == 1 {
				mode = []string{"on", "off"}[i]
			}
			times, err := coldRuns(exe, env, c.Int("startup-runs"), "--observability="+mode)
			if err != nil {
				return nil, cli.Exit(fmt.Sprintf("cold `shoal run -- true`: %v", err), 1)
			}
			rss, _, err := idleRSS(exe, env, "--observability="+mode)
			if err != nil {
				return nil, cli.Exit(fmt.Sprintf("idle RSS: %v", err), 1)
			}
			vals[mode][metricRunTrue] = append(vals[mode][metricRunTrue], median(times))
			vals[mode][metricIdleRSS] = append(vals[mode][metricIdleRSS], rss)
		}
	}
	if startup {
		order = append(order, metricRunTrue, metricIdleRSS)
	}
	units[metricRunTrue], units[metricIdleRSS] = "s", "MiB"
	fmt.Printf("\nobservability on vs off (median over %d round(s); ratio above 1: on is better)\n", rounds)
	fmt.Printf("%-32s %12s %12s %8s  %s\n", "metric", "on", "off", "on/off", "unit")
	out := map[string]any{}
	worst := 0.0
	for _, n := range order {
		on, off := medianOf(vals["on"][n]), medianOf(vals["off"][n])
		if on == 0 || off == 0 {
			continue
		}
		ratio := on / off
		if units[n] == "s" || units[n] == "MiB" { // lower is better
			ratio = off / on
		}
		worst = max(worst, 1-ratio)
		fmt.Printf("%-32s %12.4g %12.4g %8.3f  %s\n", n, on, off, ratio, units[n])
		out[n] = map[string]any{"on": on, "off": off, "ratio": ratio, "unit": units[n], "rounds": rounds}
	}
	fmt.Printf("largest loss with observability on: %.1f%%\n", 100*worst)
	return map[string]any{"observability_compare": out, "largest_loss": worst}, nil
}

func medianOf(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return median(s)
}
