package main

import (
	"fmt"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/shoal-hpc/shoal/wire"
)

func timelineCommand() *cli.Command {
	return &cli.Command{
		Name:  "timeline",
		Usage: "write every task and actor call of the running cluster as Chrome trace events (Perfetto opens them)",
		UsageText: "shoal timeline [--cluster ID] [-o FILE]\n\n" +
			"   Example: shoal timeline -o trace.json   # then open trace.json at https://ui.perfetto.dev\n" +
			"   One process per node, one thread per worker; each task's args hold its id, state, node,\n" +
			"   worker, attempt and times.",
		Flags: append(targetFlags(), &cli.StringFlag{Name: "output", Aliases: []string{"o"}, Value: "-",
			EnvVars: []string{"SHOAL_TIMELINE_OUTPUT"}, Usage: "file to write (default -: standard output)"}),
		Action: func(c *cli.Context) error {
			data, info, err := observe(c, wire.ObserveTimeline)
			if err != nil {
				return err
			}
			out := c.String("output")
			if out == "-" {
				_, err := os.Stdout.Write(append(data, '\n'))
				return err
			}
			if err := os.WriteFile(out, append(data, '\n'), 0o644); err != nil {
				return cli.Exit(fmt.Sprintf("write the timeline to %s: %v", out, err), 1)
			}
			fmt.Fprintf(os.Stderr, "shoal: wrote cluster %s's timeline to %s (open it at https://ui.perfetto.dev or chrome://tracing)\n", info.ID, out)
			return nil
		},
	}
}
