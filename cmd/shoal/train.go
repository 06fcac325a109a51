package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"

	"github.com/shoal-hpc/shoal/client"
	"github.com/shoal-hpc/shoal/train"
)

// A shoal binary started by an agent as a worker of `shoal train` (SHOAL_WORKER_ID set, no
// arguments) serves the rank actors and never reaches main.
func init() {
	if os.Getenv("SHOAL_WORKER_ID") != "" && len(os.Args) == 1 {
		train.Register()
		client.Init() // serves until the agent closes the connection, then exits
		os.Exit(1)
	}
}

func trainCommand() *cli.Command {
	return &cli.Command{
		Name:      "train",
		Usage:     "run a gang of training ranks with the torch.distributed environment (a cluster-aware torchrun)",
		ArgsUsage: "-- CMD [ARGS...]",
		UsageText: "shoal train [options] -- python train.py\n\n" +
			"   In an sbatch script, instead of torchrun or the deepspeed launcher:\n" +
			"     #SBATCH -N 4 --ntasks-per-node=1 --gres=gpu:8\n" +
			"     srun shoal launch -- shoal train --nproc-per-node auto --max-restarts 3 -- python train.py\n" +
			"   Each rank gets MASTER_ADDR/MASTER_PORT, RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE,\n" +
			"   NODE_RANK, TORCHELASTIC_RESTART_COUNT, CUDA_VISIBLE_DEVICES, OMP_NUM_THREADS and NCCL's\n" +
			"   interface/HCA; a failed rank restarts the whole gang from the last shoal.train.report\n" +
			"   checkpoint (SHOAL_TRAIN_CHECKPOINT), from warm spares that have imported torch already (--preload).\n" +
			"   Outside a cluster it starts a one-node one (shoal run).",
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "nproc-per-node", Value: "auto", EnvVars: []string{"SHOAL_TRAIN_NPROC_PER_NODE"},
				Usage: "ranks per node: a number, gpu, cpu, or auto (the node's GPUs, else its CPUs)"},
			&cli.StringFlag{Name: "nnodes", EnvVars: []string{"SHOAL_TRAIN_NNODES"},
				Usage: "nodes to use: N, or MIN:MAX for an elastic gang that goes on with fewer nodes (at least MIN) when one " +
					"is lost, ranks renumbered, and grows back (up to MAX) at a checkpoint when nodes join (default: every node of the cluster)"},
			&cli.IntFlag{Name: "spare-nodes", EnvVars: []string{"SHOAL_TRAIN_SPARE_NODES"},
				Usage: "nodes that run no rank but stand by: when a rank's node is lost, the gang restarts from its checkpoint " +
					"with a spare in its place and the same world size; each spare holds warm standby ranks (--preload) made at start"},
			&cli.Float64Flag{Name: "cpus-per-rank", EnvVars: []string{"SHOAL_TRAIN_CPUS_PER_RANK"},
				Usage: "CPUs each rank reserves, and its OMP_NUM_THREADS (default: the node's CPUs divided among its ranks)"},
			&cli.Float64Flag{Name: "gpus-per-rank", Value: -1, EnvVars: []string{"SHOAL_TRAIN_GPUS_PER_RANK"},
				Usage: "GPUs each rank reserves (default: the node's GPUs divided among its ranks)"},
			&cli.StringFlag{Name: "placement-strategy", Value: "PACK", EnvVars: []string{"SHOAL_TRAIN_PLACEMENT_STRATEGY"},
				Usage: "how the gang's bundles are placed: PACK, SPREAD, STRICT_PACK or STRICT_SPREAD"},
			&cli.IntFlag{Name: "max-restarts", EnvVars: []string{"SHOAL_TRAIN_MAX_RESTARTS"},
				Usage: "restarts of the whole gang after a rank fails"},
			&cli.StringFlag{Name: "cuda-visible-devices", Value: train.GPUsPerRank, EnvVars: []string{"SHOAL_TRAIN_CUDA_VISIBLE_DEVICES"},
				Usage: "per-rank: each rank sees its own GPUs; shared: the node's GPUs, picked with LOCAL_RANK"},
			&cli.StringFlag{Name: "allowed-interfaces", EnvVars: []string{"SHOAL_ALLOWED_INTERFACES"},
				Usage: "comma-separated interfaces (names or globs) NCCL may use (default: the best one discovery finds)"},
			&cli.DurationFlag{Name: "stop-grace", Value: 5 * time.Second, EnvVars: []string{"SHOAL_TRAIN_STOP_GRACE"},
				Usage: "time between SIGTERM and SIGKILL when a failed gang is stopped"},
			&cli.DurationFlag{Name: "place-timeout", Value: time.Minute, EnvVars: []string{"SHOAL_TRAIN_PLACE_TIMEOUT"},
				Usage: "how long to wait for room for the whole gang"},
			&cli.StringFlag{Name: "preload", Value: "auto", EnvVars: []string{"SHOAL_TRAIN_PRELOAD"},
				Usage: "for a Python command, modules each rank's warm spare imports so that a restart does not start Python " +
					"and import them again (comma-separated; auto: torch where it is installed; '' : no spares, every attempt " +
					"starts cold). A spare costs the memory of those imports per rank (torch: ~530 MB RSS, ~290 MB of it private) while restarts are left"},
			&cli.DurationFlag{Name: "spare-wait", Value: 30 * time.Second, EnvVars: []string{"SHOAL_TRAIN_SPARE_WAIT"},
				Usage: "a warm spare starts once its node has an idle CPU, so that it does not slow starting ranks, or after this long"},
		}, requeueFlags()...),
		Subcommands: []*cli.Command{trainHistoryCommand(), trainRunStateCommand(), trainSlurmJobCommand(), {
			Name:   "nccl-env",
			Hidden: true, // used by shoal.train in Python: the NCCL variables discovery picks on this node
			Usage:  "print NCCL_SOCKET_IFNAME / NCCL_IB_HCA for this node as JSON",
			Flags: []cli.Flag{&cli.StringFlag{Name: "allowed-interfaces", EnvVars: []string{"SHOAL_ALLOWED_INTERFACES"},
				Usage: "comma-separated interfaces (names or globs) NCCL may use"}},
			Action: func(c *cli.Context) error {
				var allowed []string
				if s := c.String("allowed-interfaces"); s != "" {
					allowed = strings.Split(s, ",")
				}
				p, _ := train.NCCL(allowed)
				return json.NewEncoder(os.Stdout).Encode(p)
			},
		}},
		Action: func(c *cli.Context) error {
			argv := c.Args().Slice()
			if len(argv) == 0 {
				return cli.Exit("no command to run; usage: shoal train [options] -- python train.py", 2)
			}
			if os.Getenv("SHOAL_ADDRESS") == "" {
				return trainStandalone()
			}
			train.Register()
			cl, err := client.Init(client.WithAddress(os.Getenv("SHOAL_ADDRESS"), os.Getenv("SHOAL_SECRET")))
			if err != nil {
				return cli.Exit(err.Error(), 1)
			}
			defer cl.Close()
			nodes, err := cl.Nodes()
			if err != nil {
				return cli.Exit(err.Error(), 1)
			}
			lo, hi, err := train.ParseNNodes(c.String("nnodes"))
			if err != nil {
				return cli.Exit(err.Error(), 2)
			}
			popts := train.PlanOptions{NprocPerNode: c.String("nproc-per-node"), NNodes: hi,
				CPUsPerRank: c.Float64("cpus-per-rank"), GPUsPerRank: c.Float64("gpus-per-rank")}
			var replan func() (int, map[string]float64, error)
			if k := c.Int("spare-nodes"); k != 0 {
				if lo, hi, err = spareNodes(nodes, k, c.String("nnodes")); err != nil {
					return cli.Exit(err.Error(), 2)
				}
				replan = train.Replanner(cl.Nodes, popts, lo, hi)
			} else if lo < hi { // elastic: as many nodes as are live, up to hi, at least lo
				replan = train.Replanner(cl.Nodes, popts, lo, hi)
			}
			n, res, err := train.Plan(nodes, popts)
			if replan != nil {
				n, res, err = replan()
			}
			if err != nil {
				return cli.Exit(err.Error(), 2)
			}
			var allowed []string
			if s := c.String("allowed-interfaces"); s != "" {
				allowed = strings.Split(s, ",")
			}
			preload, err := preloadList(c.String("preload"))
			if err != nil {
				return cli.Exit(err.Error(), 2)
			}
			sigs := make(chan os.Signal, 8)
			signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGUSR1, syscall.SIGUSR2)
			defer signal.Stop(sigs)
			cwd, _ := os.Getwd()
			var env []string
			if p, ok := os.LookupEnv("PYTHONPATH"); ok { // agents keep their own from workers
				env = append(env, "PYTHONPATH="+p)
			}
			log := logger(c).Named("train")
			cfg := train.Config{Argv: argv, Ranks: n, Resources: res,
				Strategy: strings.ToUpper(c.String("placement-strategy")), MaxRestarts: c.Int("max-restarts"),
				GPUMode: c.String("cuda-visible-devices"), Allowed: allowed, Cwd: cwd, Env: env, StopGrace: c.Duration("stop-grace"),
				PlaceTimeout: c.Duration("place-timeout"), Signals: sigs, Preload: preload, SpareWait: c.Duration("spare-wait")}
			cfg.Replan, cfg.SpareNodes = replan, c.Int("spare-nodes")
			st, err := setupRequeue(c, log, &cfg)
			if err != nil {
				return cli.Exit(err.Error(), 2)
			}
			r, err := train.Run(context.Background(), log, cl, cfg)
			st.finish(r, sigs, log)
			if err != nil {
				return cli.Exit(err.Error(), max(r.Code, 1))
			}
			if r.Code != 0 {
				return cli.Exit("", max(r.Code, 1))
			}
			return nil
		},
	}
}

var moduleName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$`)

// preloadList reads --preload: "auto" is train.PreloadAuto, "" none, else module names.
func preloadList(s string) ([]string, error) {
	if strings.TrimSpace(s) == "auto" {
		return train.PreloadAuto, nil
	}
	var out []string
	for _, m := range strings.Split(s, ",") {
		if m = strings.TrimSpace(m); m == "" {
			continue
		}
		if !moduleName.MatchString(m) {
			return nil, fmt.Errorf("--preload %q: %q is not a Python module name; give names like torch,numpy, auto, or '' for none", s, m)
		}
		out = append(out, m)
	}
	return out, nil
}

// trainStandalone runs `shoal run -- shoal train ...` with the same arguments: a one-node
// cluster for the gang's lifetime.
func trainStandalone() error {
	exe, err := os.Executable()
	if err != nil {
		return cli.Exit("find the shoal executable: "+err.Error(), 1)
	}
	i := 1
	for i < len(os.Args) && os.Args[i] != "train" {
		i++
	}
	args := append([]string{exe}, os.Args[1:i]...)
	args = append(args, "run", "--", exe)
	args = append(args, os.Args[i:]...)
	if err := unix.Exec(exe, args, os.Environ()); err != nil {
		return cli.Exit("start a one-node cluster for shoal train: "+err.Error(), 1)
	}
	return nil
}
