package main

import (
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/shoal-hpc/shoal/nodeagent/obs"
	"github.com/shoal-hpc/shoal/wire"
)

func logsCommand() *cli.Command {
	return &cli.Command{
		Name:  "logs",
		Usage: "print what the cluster's workers wrote, by task, actor, node or worker",
		UsageText: "shoal logs [--task ID | --actor NAME|ID | --node NODE | --worker ID] [--follow] [--json]\n\n" +
			"   Example: shoal logs --actor trainer --follow\n" +
			"   Each line is prefixed as in the driver: (function pid=PID, node=NODE). A task or actor id\n" +
			"   may be a prefix of its hex id (the page and `shoal timeline` show them). Each node's agent\n" +
			"   keeps its own workers' latest lines (--log-lines, default 100,000, and --log-bytes,\n" +
			"   default 64 MiB, where the cluster starts); the head asks every node (or the one --node\n" +
			"   names) and merges their lines by time. A line on stderr names each node that is gone\n" +
			"   (its lines went with it) and each that dropped lines for its bound.",
		Flags: append(targetFlags(),
			&cli.StringFlag{Name: "task", EnvVars: []string{"SHOAL_LOGS_TASK"}, Usage: "only this task's lines (hex id or a prefix of it)"},
			&cli.StringFlag{Name: "actor", EnvVars: []string{"SHOAL_LOGS_ACTOR"}, Usage: "only this actor's lines (its name, or hex id or a prefix)"},
			&cli.StringFlag{Name: "node", EnvVars: []string{"SHOAL_LOGS_NODE"}, Usage: "only lines of workers on this node"},
			&cli.StringFlag{Name: "worker", EnvVars: []string{"SHOAL_LOGS_WORKER"}, Usage: "only this worker's lines (e.g. 3f9a1c0b-0001-w2)"},
			&cli.BoolFlag{Name: "follow", Aliases: []string{"f"}, EnvVars: []string{"SHOAL_LOGS_FOLLOW"}, Usage: "keep printing new lines until the cluster ends (default: print and exit)"},
			&cli.BoolFlag{Name: "json", Usage: "one JSON object per line (default: prefixed text)"},
		),
		Action: func(c *cli.Context) error {
			conn, info, err := dialCLI(c)
			if err != nil {
				return err
			}
			defer conn.Close()
			q := wire.Observe{What: wire.ObserveLogs, Task: c.String("task"), Actor: c.String("actor"),
				Node: c.String("node"), Worker: c.String("worker")}
			enc := json.NewEncoder(os.Stdout)
			said := map[string]bool{} // notes already printed (--follow prints each once)
			for {
				var r wire.ObserveReply
				if err := conn.Call(wire.TObserve, 1, &q, &r); err != nil {
					if c.Bool("follow") && q.Cursor != nil {
						return nil // the cluster ended
					}
					return cli.Exit(fmt.Sprintf("ask cluster %s for its logs: %v", info.ID, err), 1)
				}
				var page obs.Merged
				if err := json.Unmarshal(r.Data, &page); err != nil {
					return cli.Exit(fmt.Sprintf("read the logs: %v", err), 1)
				}
				for _, n := range page.Notes() {
					if !said[n] {
						said[n] = true
						fmt.Fprintln(os.Stderr, n)
					}
				}
				for _, l := range page.Lines {
					if c.Bool("json") {
						enc.Encode(l)
					} else {
						fmt.Println(l.Prefix() + l.Text)
					}
				}
				q.Cursor = page.Next
				if page.More {
					continue // the next page at once
				}
				if !c.Bool("follow") {
					return nil
				}
				time.Sleep(250 * time.Millisecond)
			}
		},
	}
}
