package main

import (
	"context"
	"os"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/shoal-hpc/shoal/launcher"
	"github.com/shoal-hpc/shoal/nodeagent"
	"github.com/shoal-hpc/shoal/slurm"
)

func launchCommand() *cli.Command {
	return &cli.Command{
		Name:      "launch",
		Usage:     "turn a Slurm allocation into a cluster: run once per node (srun), or once from the batch script",
		ArgsUsage: "-- CMD [ARGS...]",
		UsageText: "srun shoal launch [options] -- python train.py\n\n" +
			"   Example sbatch script:\n" +
			"     #SBATCH -N 4 --ntasks-per-node=1\n" +
			"     srun shoal launch -- python train.py\n" +
			"   The first node runs the head and CMD; every node runs an agent; every node's step exits\n" +
			"   with CMD's exit code. Without srun, the batch script's `shoal launch -- CMD` starts the\n" +
			"   other nodes' agents itself (srun --overlap -N n-1 -n n-1 --ntasks-per-node=1).",
		Flags: append(append(clusterFlags(), reportFlags()...),
			&cli.StringFlag{Name: "rendezvous-dir", EnvVars: []string{"SHOAL_RENDEZVOUS_DIR"},
				Usage: "directory shared by the job's nodes where the first node leaves its address and secret (0600) (default: $HOME/.shoal/launch)"},
			&cli.StringFlag{Name: "rendezvous-key", EnvVars: []string{"SHOAL_RENDEZVOUS_KEY"}, Hidden: true},
			// set by the batch-script mode on the agents it starts: never the head, even on the
			// first node of a heterogeneous job's component (no variable: it would leak into steps)
			&cli.BoolFlag{Name: "member", Hidden: true},
			&cli.DurationFlag{Name: "join-timeout", Value: 2 * time.Minute, EnvVars: []string{"SHOAL_JOIN_TIMEOUT"},
				Usage: "how long the first node waits for the others to join"},
			heartbeatFlag(),
		),
		Action: func(c *cli.Context) error {
			o, err := options(c)
			if err != nil {
				return err
			}
			if o.HeartbeatTimeout, err = heartbeatTimeout(c); err != nil {
				return err
			}
			env, err := slurm.FromOS()
			if err != nil {
				return cli.Exit(err.Error(), 2)
			}
			// every node takes its CPUs and memory from Slurm's share of it, not the first node's
			extra := passOn(c, "num-cpus", "memory", "state-dir") // only the head keeps state
			exe, _ := os.Executable()
			code, err := launcher.Launch(context.Background(), logger(c), launcher.LaunchOptions{Options: o,
				RendezvousDir: c.String("rendezvous-dir"), RendezvousKey: c.String("rendezvous-key"),
				JoinTimeout: c.Duration("join-timeout"), Self: exe, ExtraArgs: extra, Member: c.Bool("member")}, env, c.Args().Slice())
			if err != nil {
				return cli.Exit(err.Error(), max(code, 1))
			}
			if code != 0 {
				return cli.Exit("", code)
			}
			return nil
		},
	}
}

// heartbeatFlag is --heartbeat-timeout, for the commands that start a multi-node cluster's head.
func heartbeatFlag() cli.Flag {
	return &cli.DurationFlag{Name: "heartbeat-timeout", Value: nodeagent.DefaultHeartbeatTimeout, EnvVars: []string{"SHOAL_HEARTBEAT_TIMEOUT"},
		Usage: "how long a node may stay silent (no heartbeat: a cut link, a stopped agent) before the head gives it up and retries its tasks elsewhere, " +
			"and a member its head; members send one every fifth of it; a negative value turns heartbeats off (a node is then lost only when its connection closes)"}
}

// heartbeatTimeout reads and checks --heartbeat-timeout.
func heartbeatTimeout(c *cli.Context) (time.Duration, error) {
	d := c.Duration("heartbeat-timeout")
	if err := (nodeagent.Heartbeat{Timeout: d}).Validate(); err != nil {
		return 0, cli.Exit(err.Error(), 2)
	}
	if d == 0 {
		return 0, cli.Exit("--heartbeat-timeout 0: give a duration such as 5s, or a negative one to turn heartbeats off", 2)
	}
	return d, nil
}
