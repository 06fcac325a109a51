package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/shoal-hpc/shoal/launcher"
)

// addressRecord is what `shoal address --json` prints: what a driver needs to join a running
// cluster (shoal.init(address="auto") reads it; a driver outside the allocation reads it from
// a copied file, docs/remote-drivers.md).
type addressRecord struct {
	ID      string `json:"id"`
	Address string `json:"address"`
	TCP     string `json:"tcp,omitempty"`
	Secret  string `json:"secret"`
}

func addressCommand() *cli.Command {
	return &cli.Command{
		Name:  "address",
		Usage: "print how to join a running cluster: its address and secret (for a second driver)",
		UsageText: "shoal address [--cluster ID] [--tcp] [--json]\n\n" +
			"   Example: eval $(shoal address)          # a second driver on this machine\n" +
			"            shoal address --tcp --json > ~/.shoal-cluster.json   # for a driver outside the allocation\n" +
			"   The record holds the cluster's secret: keep the file private (0600), as the session directory is.",
		Flags: append(targetFlags(),
			&cli.BoolFlag{Name: "tcp", EnvVars: []string{"SHOAL_ADDRESS_TCP"},
				Usage: "give the agent's TCP address (TLS, for drivers on other machines) instead of its Unix socket (default: the socket)"},
			&cli.BoolFlag{Name: "json", EnvVars: []string{"SHOAL_ADDRESS_JSON"},
				Usage: "print the record as JSON (default: export lines for a shell)"},
			&cli.BoolFlag{Name: "all",
				Usage: "print the records of every running cluster of this user here, one JSON line each (default: one cluster's)"}),
		Action: func(c *cli.Context) error {
			if c.Bool("all") {
				cs, err := launcher.Clusters(c.String("tmpdir"))
				if err != nil {
					return cli.Exit(err.Error(), 1)
				}
				for _, ci := range cs {
					b, _ := json.Marshal(addressRecord{ID: ci.ID, Address: ci.Address, TCP: ci.TCP, Secret: ci.Secret})
					fmt.Println(string(b))
				}
				return nil
			}
			if c.String("cluster") == "" && os.Getenv("SHOAL_ADDRESS") == "" {
				// a second driver must not join some other cluster by chance
				cs, err := launcher.Clusters(c.String("tmpdir"))
				if err != nil {
					return cli.Exit(err.Error(), 1)
				}
				if len(cs) > 1 {
					ids := make([]string, len(cs))
					for i, ci := range cs {
						ids[i] = ci.ID
					}
					return cli.Exit(fmt.Sprintf("%d clusters of this user run on this machine (%s); name one with --cluster ID (SHOAL_CLUSTER)",
						len(cs), strings.Join(ids, ", ")), 1)
				}
			}
			info, err := launcher.Find(c.String("tmpdir"), c.String("cluster"))
			if err != nil {
				return cli.Exit(err.Error(), 1)
			}
			if info.TCP == "" && info.ID != "" {
				// named by SHOAL_ADDRESS: the record in its session directory has the rest
				if full, err := launcher.Find(c.String("tmpdir"), info.ID); err == nil {
					info = full
				}
			}
			rec := addressRecord{ID: info.ID, Address: info.Address, TCP: info.TCP, Secret: info.Secret}
			if c.Bool("tcp") {
				if info.TCP == "" {
					return cli.Exit(fmt.Sprintf("cluster %s has no TCP address in its record (it was named by SHOAL_ADDRESS); run `shoal address --cluster ID --tcp` on its head node", info.ID), 1)
				}
				rec.Address = info.TCP
			}
			if c.Bool("json") {
				b, _ := json.Marshal(rec)
				fmt.Fprintln(os.Stdout, string(b))
				return nil
			}
			fmt.Printf("export SHOAL_ADDRESS=%s SHOAL_SECRET=%s SHOAL_CLUSTER_ID=%s\n", rec.Address, rec.Secret, rec.ID)
			return nil
		},
	}
}
