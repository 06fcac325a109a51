package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"

	"github.com/shoal-hpc/shoal/head"
	"github.com/shoal-hpc/shoal/launcher"
	"github.com/shoal-hpc/shoal/nodeagent"
	"github.com/shoal-hpc/shoal/nodeagent/obs"
	"github.com/shoal-hpc/shoal/slurm"
	"github.com/shoal-hpc/shoal/wire"
)

func clusterFlags() []cli.Flag {
	return append([]cli.Flag{
		&cli.Float64Flag{Name: "num-cpus", EnvVars: []string{"SHOAL_NUM_CPUS"},
			Usage: "CPUs to offer (default: the CPUs this process may run on, lowered to its cgroup quota)"},
		&cli.Float64Flag{Name: "num-gpus", EnvVars: []string{"SHOAL_NUM_GPUS"}, Usage: "GPUs to offer (default: the GPUs NVML finds)"},
		&cli.StringFlag{Name: "memory", EnvVars: []string{"SHOAL_MEMORY"},
			Usage: "memory to offer, e.g. 8g (default: what the cgroup allows)"},
		&cli.StringFlag{Name: "object-store-memory", EnvVars: []string{"SHOAL_OBJECT_STORE_MEMORY"},
			Usage: "object store size in bytes, e.g. 2g or 2147483648 (default: 30% of memory, at most /dev/shm's free space)"},
		&cli.StringFlag{Name: "resources", EnvVars: []string{"SHOAL_RESOURCES"},
			Usage: `custom resources as JSON, e.g. '{"disk": 2}'`},
		&cli.StringFlag{Name: "labels", EnvVars: []string{"SHOAL_LABELS"},
			Usage: `node labels for label_selector as JSON, e.g. '{"zone": "east"}' (default: none besides ray.io/node-id)`},
		&cli.StringFlag{Name: "spill-dir", EnvVars: []string{"SHOAL_SPILL_DIR"},
			Usage: "directory for objects spilled from a full store (default: the session directory)"},
		&cli.StringFlag{Name: "tmpdir", EnvVars: []string{"SHOAL_TMPDIR"},
			Usage: "parent of session directories (default: the system temp dir)"},
		&cli.StringFlag{Name: "gpu-confinement", Value: "auto", EnvVars: []string{"SHOAL_GPU_CONFINEMENT"},
			Usage: "confine workers' devices with an eBPF cgroup program: auto (on GPU nodes, where permitted), on, off"},
		&cli.StringFlag{Name: "object-store-dir", Value: "/dev/shm", EnvVars: []string{"SHOAL_OBJECT_STORE_DIR"},
			Usage: "tmpfs directory for the object store (falls back to disk, with a warning, when unusable)"},
		&cli.StringFlag{Name: "port-range", EnvVars: []string{"SHOAL_PORT_RANGE"},
			Usage: "TCP ports the agent may listen on, e.g. 30000-30999 (default: any the OS picks)"},
		&cli.StringFlag{Name: "allowed-interfaces", EnvVars: []string{"SHOAL_ALLOWED_INTERFACES"},
			Usage: "comma-separated network interfaces (names or globs) agents may use between nodes"},
		&cli.BoolFlag{Name: "insecure-data-plane", EnvVars: []string{"SHOAL_INSECURE_DATA_PLANE"},
			Usage: "move objects and collectives between nodes in clear (no TLS; UCX allowed) on a fabric you trust; every node must agree (docs/security.md)"},
		&cli.BoolFlag{Name: "no-local-tasks", EnvVars: []string{"SHOAL_NO_LOCAL_TASKS"},
			Usage: "send every task through the head node's agent: a member node does not run the plain tasks its own workers submit (docs/architecture.md)"},
		&cli.IntFlag{Name: "max-workers-per-node", EnvVars: []string{"SHOAL_MAX_WORKERS_PER_NODE"},
			Usage: "cap on worker processes per node, actors included; the head node's value applies to every node (default: max(64, 4 x the node's CPUs))"},
		&cli.DurationFlag{Name: "memory-monitor-interval", Value: nodeagent.DefaultMemoryMonitorInterval, EnvVars: []string{"SHOAL_MEMORY_MONITOR_INTERVAL"},
			Usage: "how often each node checks the memory of workers whose task or actor asked for memory=; one that uses more is stopped alone " +
				"and its task fails with OutOfMemoryError once its retries are spent (docs/reliability.md); 0 turns the monitor off; the head node's value applies to every node"},
		stateDirFlag("keep the head's database (nodes, jobs, actors, placement groups) in this directory after the cluster ends, one file per cluster; `shoal history` lists it (default: the session directory, removed at exit)"),
	}, observeFlags()...) // dashboard.go
}

// stateDirFlag is --state-dir, for the commands that start a cluster and for `shoal history`.
func stateDirFlag(usage string) cli.Flag {
	return &cli.StringFlag{Name: "state-dir", EnvVars: []string{"SHOAL_STATE_DIR"}, Usage: usage}
}

func options(c *cli.Context) (launcher.Options, error) {
	if err := applyConfig(c); err != nil {
		return launcher.Options{}, err
	}
	o := launcher.Options{NumCPUs: c.Float64("num-cpus"), NumGPUs: c.Float64("num-gpus"),
		SpillDir: c.String("spill-dir"), TmpRoot: c.String("tmpdir"), Scrub: slurm.Scrub,
		Confinement: c.String("gpu-confinement"), ShmRoot: c.String("object-store-dir"),
		PortRange: c.String("port-range"), InsecureDataPlane: c.Bool("insecure-data-plane"),
		MaxWorkersPerNode: c.Int("max-workers-per-node"), NoLocalTasks: c.Bool("no-local-tasks"), StateDir: c.String("state-dir"),
		ZeroCPUs: c.IsSet("num-cpus") && c.Float64("num-cpus") == 0}
	if s := c.String("allowed-interfaces"); s != "" {
		o.AllowedInterfaces = strings.Split(s, ",")
	}
	var err error
	if o.Observe, err = observeOptions(c); err != nil { // dashboard.go
		return o, err
	}
	if s := c.String("memory"); s != "" {
		if o.Memory, err = parseBytes(s); err != nil {
			return o, cli.Exit(fmt.Sprintf("--memory: %v", err), 2)
		}
	}
	if s := c.String("object-store-memory"); s != "" {
		if o.ObjectStoreMemory, err = parseBytes(s); err != nil {
			return o, cli.Exit(fmt.Sprintf("--object-store-memory: %v", err), 2)
		}
	}
	if s := c.String("resources"); s != "" {
		if err := json.Unmarshal([]byte(s), &o.Resources); err != nil {
			return o, cli.Exit(fmt.Sprintf(`--resources %q: %v; write JSON such as '{"disk": 2}'`, s, err), 2)
		}
	}
	if s := c.String("labels"); s != "" {
		if o.Labels, err = parseLabels(s); err != nil {
			return o, cli.Exit(fmt.Sprintf("--labels: %v", err), 2)
		}
	}
	if o.NumCPUs < 0 || o.NumGPUs < 0 {
		return o, cli.Exit("--num-cpus and --num-gpus must not be negative", 2)
	}
	switch d := c.Duration("memory-monitor-interval"); {
	case d < 0:
		return o, cli.Exit(fmt.Sprintf("--memory-monitor-interval %s: give a positive duration such as 250ms, or 0 to turn the monitor off", d), 2)
	case d == 0:
		o.MemoryMonitorInterval = -1
	default:
		o.MemoryMonitorInterval = d
	}
	if o.MaxWorkersPerNode < 0 {
		return o, cli.Exit(fmt.Sprintf("--max-workers-per-node %d: give a positive cap, or leave it out for the default", o.MaxWorkersPerNode), 2)
	}
	return o, nil
}

// parseBytes reads "2147483648", "512m", "2g", "1.5GiB".
func parseBytes(s string) (int64, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	t = strings.TrimSuffix(strings.TrimSuffix(t, "ib"), "b")
	mult := 1.0
	if n := len(t); n > 0 {
		switch t[n-1] {
		case 'k':
			mult = 1 << 10
		case 'm':
			mult = 1 << 20
		case 'g':
			mult = 1 << 30
		case 't':
			mult = 1 << 40
		}
		if mult != 1 {
			t = t[:n-1]
		}
	}
	v, err := strconv.ParseFloat(t, 64)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("%q is not a size; write bytes or a number with k, m, g or t", s)
	}
	return int64(v * mult), nil
}

func runCommand() *cli.Command {
	return &cli.Command{
		Name:      "run",
		Usage:     "start a one-node cluster, run a command in it, and tear the cluster down",
		ArgsUsage: "-- CMD [ARGS...]",
		UsageText: "shoal run [options] -- python script.py\n\n" +
			"   Example: shoal run --num-cpus 4 --object-store-memory 2g -- python examples/python/demo.py\n" +
			"   The command gets SHOAL_ADDRESS, SHOAL_SECRET and SHOAL_CLUSTER_ID; shoal exits with its exit code.",
		Flags: append(clusterFlags(), reportFlags()...),
		Action: func(c *cli.Context) error {
			o, err := options(c)
			if err != nil {
				return err
			}
			code, err := launcher.Run(context.Background(), logger(c), o, c.Args().Slice())
			if err != nil {
				return cli.Exit(err.Error(), code)
			}
			if code != 0 {
				return cli.Exit("", code)
			}
			return nil
		},
	}
}

func serveCommand() *cli.Command {
	return &cli.Command{
		Name:   "serve",
		Usage:  "run a one-node cluster in the foreground (used by `shoal up` and by shoal.init())",
		Hidden: true,
		Flags: append(clusterFlags(),
			&cli.BoolFlag{Name: "watch-stdin", Usage: "stop when standard input closes (the parent died)"},
			&cli.StringFlag{Name: "log-file", Usage: "after start-up, send logs here (\"session\": shoal.log in the session directory)"},
		),
		Action: func(c *cli.Context) error {
			o, err := options(c)
			if err != nil {
				return err
			}
			o.ClusterID = os.Getenv("SHOAL_NEW_CLUSTER_ID")
			o.Kind = "up"
			os.Unsetenv("SHOAL_NEW_CLUSTER_ID")
			log := logger(c)
			unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
			cl, err := launcher.Start(log, o)
			if err != nil {
				return cli.Exit(err.Error(), 1)
			}
			defer cl.Close()
			if err := cl.WriteInfo(); err != nil {
				return cli.Exit(err.Error(), 1)
			}
			b, _ := json.Marshal(cl.Info())
			fmt.Println(string(b))
			if lf := c.String("log-file"); lf != "" {
				if lf == "session" {
					lf = filepath.Join(cl.Dir, "shoal.log")
				}
				if f, err := os.OpenFile(lf, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600); err == nil {
					unix.Dup2(int(f.Fd()), 1)
					unix.Dup2(int(f.Fd()), 2)
				}
			}
			sigs := make(chan os.Signal, 1)
			signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
			stdinClosed := make(chan struct{})
			if c.Bool("watch-stdin") {
				go func() { io.Copy(io.Discard, os.Stdin); close(stdinClosed) }()
			}
			select {
			case <-sigs:
			case <-cl.Shutdown:
			case <-stdinClosed:
			}
			return nil
		},
	}
}

func upCommand() *cli.Command {
	return &cli.Command{
		Name:  "up",
		Usage: "start a one-node cluster in the background that outlives this command",
		UsageText: "shoal up [options]\n\n   Example:\n     eval $(shoal up --num-cpus 2)   # exports SHOAL_ADDRESS, SHOAL_SECRET, SHOAL_CLUSTER_ID\n" +
			"     python script.py\n     shoal status\n     shoal down",
		Flags: append(clusterFlags(), &cli.BoolFlag{Name: "json", Usage: "print the cluster's record as JSON"}),
		Action: func(c *cli.Context) error {
			exe, err := os.Executable()
			if err != nil {
				return err
			}
			id := launcher.NewID()
			args := []string{"--log-level", c.String("log-level"), "--log-format", c.String("log-format")}
			if c.IsSet("config") {
				args = append(args, "--config", c.String("config"))
			}
			args = append(args, "serve", "--log-file", "session")
			args = append(args, passOn(c)...)
			cmd := exec.Command(exe, args...)
			cmd.Env = append(os.Environ(), "SHOAL_NEW_CLUSTER_ID="+id)
			cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
			cmd.Stderr = os.Stderr
			out, err := cmd.StdoutPipe()
			if err != nil {
				return err
			}
			if err := cmd.Start(); err != nil {
				return fmt.Errorf("start cluster process: %w", err)
			}
			line, err := bufio.NewReader(out).ReadString('\n')
			if err != nil {
				cmd.Wait()
				return cli.Exit("the cluster did not start (see the error above)", 1)
			}
			cmd.Process.Release()
			var info launcher.Info
			if err := json.Unmarshal([]byte(line), &info); err != nil {
				return fmt.Errorf("read the cluster's record: %w", err)
			}
			if c.Bool("json") {
				fmt.Print(line)
				return nil
			}
			fmt.Printf("export SHOAL_ADDRESS=%s SHOAL_SECRET=%s SHOAL_CLUSTER_ID=%s\n", info.Address, info.Secret, info.ID)
			fmt.Fprintf(os.Stderr, "shoal: cluster %s is up (pid %d); `shoal status` shows it, `shoal down` stops it\n", info.ID, info.PID)
			return nil
		},
	}
}

func targetFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "cluster", EnvVars: []string{"SHOAL_CLUSTER"}, Usage: "cluster id (default: SHOAL_ADDRESS, or the only running cluster)"},
		&cli.StringFlag{Name: "tmpdir", EnvVars: []string{"SHOAL_TMPDIR"}, Usage: "parent of session directories"},
	}
}

func dialCLI(c *cli.Context) (*wire.Conn, launcher.Info, error) {
	info, err := launcher.Find(c.String("tmpdir"), c.String("cluster"))
	if err != nil {
		return nil, info, cli.Exit(err.Error(), 1)
	}
	conn, _, err := wire.Dial(info.Address, info.Secret, wire.Auth{Role: "cli", PID: os.Getpid()})
	if err != nil {
		return nil, info, cli.Exit(err.Error(), 1)
	}
	return conn, info, nil
}

func statusCommand() *cli.Command {
	return &cli.Command{
		Name:  "status",
		Usage: "show a running cluster: its nodes, resources and objects, and the head's jobs, actors and placement groups",
		UsageText: "shoal status [--cluster ID] [--json]\n\n   Example: shoal status --json | jq .state.actors\n" +
			"   The jobs, actors and placement groups come from the head's tables (SQLite), read by the head\n" +
			"   node's agent; an ended cluster's are listed by `shoal history --state-dir DIR`.",
		Flags: append(targetFlags(), &cli.BoolFlag{Name: "json", Usage: "print JSON: the live resources, and the head's tables under \"state\""}),
		Action: func(c *cli.Context) error {
			conn, _, err := dialCLI(c)
			if err != nil {
				return err
			}
			defer conn.Close()
			var r wire.InfoReply
			if err := conn.Call(wire.TInfo, 1, struct{}{}, &r); err != nil {
				return cli.Exit(fmt.Sprintf("ask the cluster for its status: %v", err), 1)
			}
			var st head.State
			if err := conn.Call(wire.TState, 2, struct{}{}, &st); err != nil {
				return cli.Exit(fmt.Sprintf("ask the cluster's head for its tables: %v", err), 1)
			}
			if c.Bool("json") {
				b, _ := json.MarshalIndent(struct {
					wire.InfoReply
					State head.State `json:"state"`
				}{r, st}, "", "  ")
				fmt.Println(string(b))
				return nil
			}
			live := map[string]wire.NodeInfo{}
			for _, n := range r.Nodes {
				live[n.ID] = n
			}
			tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintf(tw, "cluster\t%s (shoal %s on %s, up since %s)\n", r.Cluster, st.Cluster.Kind, st.Cluster.Node, stamp(st.Cluster.StartedMS))
			alive := 0
			for _, n := range st.Nodes {
				if n.Alive {
					alive++
				}
			}
			fmt.Fprintf(tw, "nodes\t%d (%d alive)\n", len(st.Nodes), alive)
			for _, n := range st.Nodes {
				state := "ALIVE"
				if !n.Alive {
					state = "LOST " + stamp(n.LeftMS)
				}
				res := resString(n.Resources)
				ln, ok := live[n.ID]
				if ok && n.Alive {
					res = fmtRes(ln.Total, ln.Available)
				}
				fmt.Fprintf(tw, "  %s\t%s\t%s\tjoined %s\t%s\n", n.ID, n.Addr, state, stamp(n.JoinedMS), res)
				for _, g := range ln.GPUs {
					fmt.Fprintf(tw, "    GPU %d\t%s\t%s\n", g.Index, g.Name, gpuWhere(g))
				}
			}
			fmt.Fprintf(tw, "resources\t%s\n", fmtRes(r.Total, r.Available))
			fmt.Fprintf(tw, "workers\t%d\n", r.Workers)
			fmt.Fprintf(tw, "objects\t%d (%s of %s in shared memory; %d spilled, %s)\n", r.Objects.Objects,
				hb(r.Objects.Bytes), hb(r.Objects.Capacity), r.Objects.Spilled, hb(r.Objects.SpilledBytes))
			if err := tw.Flush(); err != nil {
				return err
			}
			printTables(os.Stdout, st)
			if st.Cluster.Dropped > 0 || st.Cluster.Failed > 0 {
				fmt.Printf("head state incomplete: %d events dropped (write queue full), %d writes failed; see the head's log\n", st.Cluster.Dropped, st.Cluster.Failed)
			}
			return nil
		},
	}
}

func fmtRes(total, avail map[string]float64) string {
	keys := make([]string, 0, len(total))
	for k := range total {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		if k == "memory" || k == "object_store_memory" {
			parts = append(parts, fmt.Sprintf("%s %s/%s", k, hb(int64(avail[k])), hb(int64(total[k]))))
		} else {
			parts = append(parts, fmt.Sprintf("%s %g/%g", k, avail[k], total[k]))
		}
	}
	return strings.Join(parts, ", ") + " (available/total)"
}

// hb writes a byte count as people read it.
func hb(n int64) string { return obs.BytesHuman(n) }

func downCommand() *cli.Command {
	return &cli.Command{
		Name:      "down",
		Usage:     "stop a cluster started with `shoal up`",
		UsageText: "shoal down [--cluster ID]\n\n   Example: shoal down --cluster 3f9a1c0b2d4e",
		Flags:     targetFlags(),
		Action: func(c *cli.Context) error {
			conn, info, err := dialCLI(c)
			if err != nil {
				return err
			}
			err = conn.Call(wire.TShutdown, 1, struct{}{}, nil)
			conn.Close()
			if err != nil {
				return cli.Exit(fmt.Sprintf("ask cluster %s to stop: %v", info.ID, err), 1)
			}
			if info.PID > 0 {
				deadline := time.Now().Add(15 * time.Second)
				for unix.Kill(info.PID, 0) == nil && time.Now().Before(deadline) {
					time.Sleep(20 * time.Millisecond)
				}
				if unix.Kill(info.PID, 0) == nil {
					return cli.Exit(fmt.Sprintf("cluster %s (pid %d) did not stop within 15s", info.ID, info.PID), 1)
				}
			}
			fmt.Fprintf(os.Stderr, "shoal: cluster %s stopped\n", info.ID)
			return nil
		},
	}
}

// gpuWhere says where a GPU sits: its NUMA node and NVLink peer count, when known.
func gpuWhere(g wire.GPU) string {
	var parts []string
	if g.NUMANode >= 0 {
		parts = append(parts, fmt.Sprintf("numa %d", g.NUMANode))
	}
	if len(g.NVLinkPeers) > 0 {
		parts = append(parts, fmt.Sprintf("nvlink to %d", len(g.NVLinkPeers)))
	}
	if g.UUID != "" {
		parts = append(parts, g.UUID)
	}
	return strings.Join(parts, "  ")
}

// passOn is the cluster flags set on c's command line, as arguments for a child shoal (the
// cluster process of `shoal up`, the other nodes' agents of `shoal launch`), but for skip.
// It is derived from clusterFlags, so a new flag cannot be forgotten.
func passOn(c *cli.Context, skip ...string) []string {
	var args []string
	for _, f := range clusterFlags() {
		name := f.Names()[0]
		if slices.Contains(skip, name) || !c.IsSet(name) {
			continue
		}
		args = append(args, "--"+name+"="+c.String(name)) // one word: a bool flag takes no separate value
	}
	return args
}
