package main

import (
	"context"
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/shoal-hpc/shoal/launcher"
)

// joinCommand is `shoal join`: one more node for a running cluster, outside any allocation
// manager (shoal.cluster_utils.Cluster starts these on one machine; an operator may start
// them by hand). It is the member path of `shoal launch` (launcher.RunMember) with the head's
// address and secret given directly instead of through a rendezvous file.
func joinCommand() *cli.Command {
	return &cli.Command{
		Name:  "join",
		Usage: "add this process as a node of a running cluster (a member agent) until the cluster ends",
		UsageText: "SHOAL_SECRET=... shoal join --address tcp:HOST:PORT --node-name NAME [cluster options]\n\n" +
			"   Example: eval $(shoal address --tcp); shoal join --node-name extra-1 --num-cpus 2 &\n" +
			"   The secret is read from SHOAL_SECRET only (never a flag: it would show in ps). Each node\n" +
			"   needs a name of its own; several may run on one machine (shoal.cluster_utils.Cluster).",
		Flags: append(clusterFlags(),
			&cli.StringFlag{Name: "address", EnvVars: []string{"SHOAL_ADDRESS"},
				Usage: "the head node agent's TCP address, tcp:HOST:PORT (`shoal address --tcp`) (default: none, required)"},
			&cli.StringFlag{Name: "node-name", EnvVars: []string{"SHOAL_NODE_NAME"},
				Usage: "this node's name in the cluster, unique in it (default: none, required)"},
			&cli.StringFlag{Name: "node-address", EnvVars: []string{"SHOAL_NODE_ADDRESS"},
				Usage: "the address this node's object store listens on for the other nodes (default: the node name's address)"},
			&cli.StringFlag{Name: "cluster", EnvVars: []string{"SHOAL_CLUSTER_ID"},
				Usage: "the cluster's id, which names this node's store (default: a new id)"},
			&cli.DurationFlag{Name: "join-timeout", Value: time.Minute, EnvVars: []string{"SHOAL_JOIN_TIMEOUT"},
				Usage: "how long to keep trying to reach the head"},
		),
		Action: func(c *cli.Context) error {
			o, err := options(c)
			if err != nil {
				return err
			}
			addr, name, secret := c.String("address"), c.String("node-name"), os.Getenv("SHOAL_SECRET")
			switch {
			case addr == "":
				return cli.Exit("shoal join: give the head's address with --address tcp:HOST:PORT (`shoal address --tcp` prints it)", 2)
			case name == "":
				return cli.Exit("shoal join: give this node a name with --node-name", 2)
			case secret == "":
				return cli.Exit("shoal join: SHOAL_SECRET is not set; it is the cluster's secret (`shoal address` prints it)", 2)
			}
			if o.NumGPUs > 0 && len(o.SlurmGPUs) == 0 {
				// logical GPUs, as Ray's add_node(num_gpus=) on a machine without them: indices
				// 0..n-1, which NVML narrows to where it finds devices
				for i := 0; i < int(o.NumGPUs); i++ {
					o.SlurmGPUs = append(o.SlurmGPUs, i)
				}
			}
			id := c.String("cluster")
			if id == "" {
				id = launcher.NewID()
			}
			code, sig, err := launcher.RunMember(context.Background(), logger(c), o, launcher.MemberSpec{Cluster: id, HeadAddr: addr,
				Secret: secret, Node: name, Addr: c.String("node-address")}, time.Now().Add(c.Duration("join-timeout")), 100*time.Millisecond)
			if sig != nil {
				return cli.Exit("", 128+int(sig.(syscall.Signal)))
			}
			if err != nil {
				return cli.Exit(fmt.Sprintf("shoal join: %v", err), max(code, 1))
			}
			if code != 0 {
				return cli.Exit("", code)
			}
			return nil
		},
	}
}
