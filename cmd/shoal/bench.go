package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
)

// The two start-up figures `shoal bench core` measures itself; the other metrics come from
// python/shoal/bench.py (`python3 -m shoal.bench`), run as the driver of `shoal run`.
const (
	metricRunTrue = "run_true_seconds" // wall time of a cold `shoal run -- true`, median
	metricIdleRSS = "idle_rss_mib"     // VmRSS of the `shoal run` process while its driver sleeps
)

func benchCommand() *cli.Command {
	return &cli.Command{
		Name:  "bench",
		Usage: "run shoal's benchmarks",
		Subcommands: append(append(collBenchCommands(), benchNCCLCommand()), &cli.Command{
			Name:  "core",
			Usage: "core microbenchmarks (tasks, actors, objects, placement groups) through the Python SDK",
			UsageText: "shoal bench core [--only NAME,...] [--json FILE] [--duration S] [--observability on|off|compare]\n\n" +
				"   Example: shoal bench core --only single_client_tasks_sync,put_1gib_gigabytes --duration 5 --json bench.json\n\n" +
				"   Runs `shoal run -- python3 -m shoal.bench --backend shoal` (the metric names of `ray microbenchmark`,\n" +
				"   plus memcpy_gigabytes and put_1gib_gigabytes) and measures two start-up figures itself:\n" +
				"   " + metricRunTrue + " (a cold `shoal run -- true`, median of --startup-runs) and\n" +
				"   " + metricIdleRSS + " (VmRSS of the `shoal run` process while its driver sleeps).\n" +
				"   `python3 -m shoal.bench --list` lists the metrics; scripts/bench-vs-ray.sh compares with Ray.",
			Flags: append([]cli.Flag{
				&cli.StringFlag{Name: "only", EnvVars: []string{"SHOAL_BENCH_ONLY"},
					Usage: "comma-separated metric names (default: all, start-up figures included)"},
				&cli.StringFlag{Name: "json", EnvVars: []string{"SHOAL_BENCH_JSON"},
					Usage: "also write the results, start-up figures included, to this file as JSON"},
				&cli.Float64Flag{Name: "duration", Value: 3, EnvVars: []string{"SHOAL_BENCH_DURATION"},
					Usage: "seconds per metric: a fifth warms up, the rest is split into the trials"},
				&cli.IntFlag{Name: "trials", Value: 5, EnvVars: []string{"SHOAL_BENCH_TRIALS"},
					Usage: "timed trials per metric; the table shows their median and standard deviation"},
				&cli.IntFlag{Name: "startup-runs", Value: 10, EnvVars: []string{"SHOAL_BENCH_STARTUP_RUNS"},
					Usage: "how many cold runs of 'shoal run -- true' to take the median of"},
				&cli.StringFlag{Name: "python", Value: "python3", EnvVars: []string{"SHOAL_PYTHON"},
					Usage: "the Python interpreter that runs shoal.bench"},
			}, benchObsFlags()...), // bench_obs.go
			Action: benchCore,
		}),
	}
}

func benchCore(c *cli.Context) error {
	if c.NArg() > 0 {
		return cli.Exit(fmt.Sprintf("unexpected argument %q; metric names go in --only", c.Args().First()), 2)
	}
	if c.Float64("duration") <= 0 || c.Int("trials") < 1 || c.Int("startup-runs") < 1 {
		return cli.Exit("--duration must be positive, --trials and --startup-runs at least 1", 2)
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	var only []string
	for _, n := range strings.Split(c.String("only"), ",") {
		if n = strings.TrimSpace(n); n != "" {
			only = append(only, n)
		}
	}
	wantStartup := map[string]bool{metricRunTrue: len(only) == 0, metricIdleRSS: len(only) == 0}
	var pyOnly []string
	for _, n := range only {
		if _, ok := wantStartup[n]; ok {
			wantStartup[n] = true
		} else {
			pyOnly = append(pyOnly, n)
		}
	}
	runPython := len(only) == 0 || len(pyOnly) > 0
	env := benchEnv(exe)

	report := map[string]any{}
	var pyErr error
	switch c.String("observability") {
	case "on", "off":
	case "compare": // bench_obs.go: the Python metrics only, both ways
		rep, err := benchCompare(c, exe, env, pyOnly, runPython, wantStartup[metricRunTrue] || wantStartup[metricIdleRSS])
		if rep != nil && c.String("json") != "" {
			b, _ := json.MarshalIndent(rep, "", " ")
			if werr := os.WriteFile(c.String("json"), append(b, '\n'), 0o644); werr != nil {
				return cli.Exit(fmt.Sprintf("write %s: %v", c.String("json"), werr), 1)
			}
		}
		return err
	default:
		return cli.Exit(fmt.Sprintf("--observability %q: use on, off or compare", c.String("observability")), 2)
	}
	if runPython {
		report, pyErr = benchPython(c, exe, env, pyOnly)
		if report == nil {
			return pyErr
		}
	}

	startup := map[string]any{}
	var rows [][3]string
	if wantStartup[metricRunTrue] {
		times, err := coldRuns(exe, env, c.Int("startup-runs"), "--observability="+c.String("observability"))
		if err != nil {
			return cli.Exit(fmt.Sprintf("cold `shoal run -- true`: %v", err), 1)
		}
		med, lo, hi := median(times), times[0], times[len(times)-1]
		startup[metricRunTrue] = map[string]any{"value": med, "min": lo, "max": hi, "runs": len(times), "unit": "s"}
		rows = append(rows, [3]string{metricRunTrue, fmt.Sprintf("%.3f", med),
			fmt.Sprintf("s  (cold `shoal run -- true`, median of %d, min %.3f, max %.3f)", len(times), lo, hi)})
	}
	if wantStartup[metricIdleRSS] {
		rss, n, err := idleRSS(exe, env, "--observability="+c.String("observability"))
		if err != nil {
			return cli.Exit(fmt.Sprintf("idle RSS: %v", err), 1)
		}
		startup[metricIdleRSS] = map[string]any{"value": rss, "samples": n, "unit": "MiB"}
		rows = append(rows, [3]string{metricIdleRSS, fmt.Sprintf("%.1f", rss),
			"MiB (VmRSS of the `shoal run` process while `sleep 1` runs as its driver)"})
	}
	if len(rows) > 0 {
		fmt.Println("start-up")
		for _, r := range rows {
			fmt.Printf("%-32s %12s  %s\n", r[0], r[1], r[2])
		}
		report["startup"] = startup
	}
	if out := c.String("json"); out != "" {
		b, _ := json.MarshalIndent(report, "", " ")
		if err := os.WriteFile(out, append(b, '\n'), 0o644); err != nil {
			return cli.Exit(fmt.Sprintf("write %s: %v", out, err), 1)
		}
	}
	return pyErr
}

// benchEnv is the environment of the processes the benchmark starts: no cluster of the caller's,
// and, where this binary sits in a source checkout (bin/shoal next to python/shoal), that
// checkout's SDK on PYTHONPATH, so that the Python side matches this binary.
func benchEnv(exe string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "SHOAL_ADDRESS", "SHOAL_SECRET", "SHOAL_CLUSTER_ID":
			continue
		}
		env = append(env, kv)
	}
	if real, err := filepath.EvalSymlinks(exe); err == nil {
		exe = real
	}
	sdk := filepath.Join(filepath.Dir(exe), "..", "python")
	if _, err := os.Stat(filepath.Join(sdk, "shoal", "bench.py")); err == nil {
		sdk, _ = filepath.Abs(sdk)
		pp := sdk
		if old := os.Getenv("PYTHONPATH"); old != "" {
			pp += string(os.PathListSeparator) + old
		}
		env = setEnv(env, "PYTHONPATH", pp)
	}
	return env
}

func setEnv(env []string, k, v string) []string {
	out := env[:0:0]
	for _, kv := range env {
		if !strings.HasPrefix(kv, k+"=") {
			out = append(out, kv)
		}
	}
	return append(out, k+"="+v)
}

// benchPython runs shoal.bench as the driver of a fresh `shoal run` cluster, with a custom
// resource for the placement-group metric, and returns its JSON report. The table it prints goes
// to our stdout, its progress to our stderr. A report with metrics that failed comes back with
// an error; a nil report means nothing came back.
func benchPython(c *cli.Context, exe string, env []string, only []string) (map[string]any, error) {
	return benchPythonObs(c, exe, env, only, c.String("observability"))
}

// benchPythonObs is benchPython on a cluster with --observability=obs.
func benchPythonObs(c *cli.Context, exe string, env []string, only []string, obs string) (map[string]any, error) {
	tmp, err := os.CreateTemp("", "shoal-bench-*.json")
	if err != nil {
		return nil, err
	}
	tmp.Close()
	defer os.Remove(tmp.Name())
	args := []string{"--log-level", c.String("log-level"), "run", "--observability=" + obs, "--quiet", "--resources", `{"custom": 100}`, "--",
		c.String("python"), "-m", "shoal.bench", "--backend", "shoal",
		"--duration", strconv.FormatFloat(c.Float64("duration"), 'g', -1, 64),
		"--trials", strconv.Itoa(c.Int("trials")), "--json", tmp.Name()}
	if len(only) > 0 {
		args = append(args, "--only", strings.Join(only, ","))
	}
	cmd := exec.Command(exe, args...)
	cmd.Env = env
	cmd.Stdin, cmd.Stdout, cmd.Stderr = nil, os.Stdout, os.Stderr
	runErr := cmd.Run()
	b, err := os.ReadFile(tmp.Name())
	var report map[string]any
	if err == nil && len(b) > 0 {
		err = json.Unmarshal(b, &report)
	}
	if report == nil {
		if runErr != nil {
			return nil, cli.Exit(fmt.Sprintf("`shoal run -- %s -m shoal.bench` failed: %v", c.String("python"), runErr), 1)
		}
		return nil, cli.Exit(fmt.Sprintf("shoal.bench wrote no results (%v)", err), 1)
	}
	if runErr != nil {
		return report, cli.Exit("some benchmarks failed (see ERROR above)", 1)
	}
	return report, nil
}

// coldRuns times n runs of `shoal run -- true`, each starting and stopping a fresh cluster;
// the durations come back sorted.
func coldRuns(exe string, env []string, n int, runArgs ...string) ([]float64, error) {
	times := make([]float64, 0, n)
	for i := 0; i < n; i++ {
		cmd := exec.Command(exe, append(append([]string{"run"}, runArgs...), "--", "true")...)
		cmd.Env = env
		var out strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &out
		t0 := time.Now()
		if err := cmd.Run(); err != nil {
			return nil, fmt.Errorf("%v: %s", err, strings.TrimSpace(out.String()))
		}
		times = append(times, time.Since(t0).Seconds())
	}
	sort.Float64s(times)
	return times, nil
}

// idleRSS starts `shoal run -- sleep 1` and samples the VmRSS of the shoal process every 20 ms
// while the driver sleeps (from 0.3 s to 0.9 s after the start, when the cluster is up and idle).
// It returns the last sample in MiB and the number of samples.
func idleRSS(exe string, env []string, runArgs ...string) (float64, int, error) {
	cmd := exec.Command(exe, append(append([]string{"run"}, runArgs...), "--", "sleep", "1")...)
	cmd.Env = env
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return 0, 0, err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	status := fmt.Sprintf("/proc/%d/status", cmd.Process.Pid)
	t0 := time.Now()
	var last float64
	n := 0
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			if err != nil {
				return 0, 0, fmt.Errorf("`shoal run -- sleep 1`: %v: %s", err, strings.TrimSpace(out.String()))
			}
			if n == 0 {
				return 0, 0, fmt.Errorf("no VmRSS sample of pid %d was taken while it ran", cmd.Process.Pid)
			}
			return last, n, nil
		case <-tick.C:
			if el := time.Since(t0); el < 300*time.Millisecond || el > 900*time.Millisecond {
				continue // the cluster is starting, or the driver is about to end
			}
			if kb, ok := vmRSSKiB(status); ok {
				last = float64(kb) / 1024
				n++
			}
		}
	}
}

// vmRSSKiB reads the VmRSS line of a /proc/PID/status file.
func vmRSSKiB(path string) (int64, bool) {
	f, err := os.Open(path)
	if err != nil {
		return 0, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			fields := strings.Fields(rest)
			if len(fields) == 0 {
				return 0, false
			}
			v, err := strconv.ParseInt(fields[0], 10, 64)
			return v, err == nil
		}
	}
	return 0, false
}

func median(sorted []float64) float64 {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	if n%2 == 1 {
		return sorted[n/2]
	}
	return (sorted[n/2-1] + sorted[n/2]) / 2
}
