package main

import (
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/shoal-hpc/shoal/launcher"
)

func nodeCommand() *cli.Command {
	return &cli.Command{
		Name:  "node",
		Usage: "what this node's agent finds and offers",
		Subcommands: []*cli.Command{{
			Name:  "info",
			Usage: "print the CPUs, NUMA nodes, memory, GPUs and resources an agent here would offer",
			UsageText: "shoal node info [--json] [cluster options]\n\n   Example: shoal node info --json | jq .offer\n" +
				"   The same options as `shoal run` (--num-cpus, --object-store-memory, ...) change the offer.",
			Flags: append(clusterFlags(), &cli.BoolFlag{Name: "json", EnvVars: []string{"SHOAL_JSON"}, Usage: "print JSON"}),
			Action: func(c *cli.Context) error {
				o, err := options(c)
				if err != nil {
					return err
				}
				r, err := launcher.Describe(logger(c), o)
				if err != nil {
					return cli.Exit(err.Error(), 1)
				}
				if c.Bool("json") {
					b, _ := json.MarshalIndent(r, "", "  ")
					fmt.Println(string(b))
					return nil
				}
				return printNode(r)
			},
		}},
	}
}

func printNode(r *launcher.NodeReport) error {
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	h := r.Host
	fmt.Fprintf(tw, "node\t%s (host %s)\n", r.NodeID, h.Hostname)
	fmt.Fprintf(tw, "cpus\t%d allowed %v; %d socket(s), %d core(s), %d thread(s) per core", len(h.CPUs), compactInts(h.CPUs), h.Sockets, h.Cores, h.ThreadsPerCore)
	if h.CPUQuota > 0 {
		fmt.Fprintf(tw, "; cgroup quota %.2f CPUs", h.CPUQuota)
	}
	fmt.Fprintln(tw)
	for _, n := range h.NUMANodes {
		fmt.Fprintf(tw, "  numa %d\tcpus %v, %s\n", n.ID, compactInts(n.CPUs), hb(int64(n.MemoryBytes)))
	}
	fmt.Fprintf(tw, "memory\t%s (from %s)\n", hb(int64(h.MemoryBytes)), h.MemorySource)
	if len(r.GPUs.Devices) == 0 {
		fmt.Fprintf(tw, "gpus\tnone\n")
	} else {
		fmt.Fprintf(tw, "gpus\t%d (driver %s, CUDA %s, NVSwitch %v)\n", len(r.GPUs.Devices), r.GPUs.Driver, r.GPUs.CUDA, r.GPUs.NVSwitch)
		for _, d := range r.GPUs.Devices {
			fmt.Fprintf(tw, "  gpu %d\t%s %s, %s, bus %s, numa %d, /dev/nvidia%d\n", d.Index, d.Name, d.UUID, hb(int64(d.MemoryBytes)), d.PCIBusID, d.NUMANode, d.MinorNumber)
		}
	}
	for _, n := range r.Net.NICs {
		speed := "speed unknown"
		if n.SpeedMbps > 0 {
			speed = fmt.Sprintf("%d Mb/s", n.SpeedMbps)
		}
		fmt.Fprintf(tw, "  nic %s\t%s, up=%v, %v, mtu %d, %s, numa %d\n", n.Name, n.Kind, n.Up, n.Addrs, n.MTU, speed, n.NUMANode)
	}
	if len(r.Net.RDMA) == 0 {
		fmt.Fprintf(tw, "rdma\tnone\n")
	}
	for _, d := range r.Net.RDMA {
		for _, p := range d.Ports {
			fmt.Fprintf(tw, "  hca %s:%d\t%s %s, %g Gb/s, netdev %v, numa %d\n", d.Name, p.Port, p.LinkLayer, p.State, p.RateGbps, d.NetDevs, d.NUMANode)
		}
	}
	fmt.Fprintf(tw, "object store\t%s in %s\n", hb(r.StoreSize), r.StoreDir)
	keys := make([]string, 0, len(r.Offer))
	for k := range r.Offer {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	fmt.Fprintf(tw, "offers\t")
	for i, k := range keys {
		if i > 0 {
			fmt.Fprint(tw, ", ")
		}
		if k == "memory" || k == "object_store_memory" {
			fmt.Fprintf(tw, "%s %s", k, hb(int64(r.Offer[k])))
		} else {
			fmt.Fprintf(tw, "%s %g", k, r.Offer[k])
		}
	}
	fmt.Fprintln(tw)
	return tw.Flush()
}

// compactInts writes 0,1,2,3,8 as "0-3,8".
func compactInts(xs []int) string {
	s := ""
	for i := 0; i < len(xs); {
		j := i
		for j+1 < len(xs) && xs[j+1] == xs[j]+1 {
			j++
		}
		if s != "" {
			s += ","
		}
		if j > i {
			s += fmt.Sprintf("%d-%d", xs[i], xs[j])
		} else {
			s += fmt.Sprint(xs[i])
		}
		i = j + 1
	}
	return s
}
