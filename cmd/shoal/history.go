package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/shoal-hpc/shoal/head"
)

func historyCommand() *cli.Command {
	return &cli.Command{
		Name:  "history",
		Usage: "list the clusters kept in a state directory: their jobs, actors (final states, death causes) and placement groups",
		UsageText: "shoal history --state-dir DIR [--cluster ID] [--json]\n\n" +
			"   Example:\n" +
			"     shoal run --state-dir ~/shoal-history -- python job.py\n" +
			"     shoal history --state-dir ~/shoal-history\n" +
			"   Each cluster started with --state-dir (or SHOAL_STATE_DIR, or [head] state_dir in shoal.toml)\n" +
			"   leaves one file there, shoal-ID.db; a cluster still running shows no end.",
		Flags: []cli.Flag{
			stateDirFlag("the state directory that clusters were started with (required)"),
			&cli.StringFlag{Name: "cluster", EnvVars: []string{"SHOAL_HISTORY_CLUSTER"}, Usage: "show only the cluster whose id starts with this (default: all)"},
			&cli.BoolFlag{Name: "json", Usage: "print JSON: a list of {cluster, nodes, jobs, actors, placement_groups}"},
		},
		Action: func(c *cli.Context) error {
			if err := applyConfig(c); err != nil {
				return err
			}
			dir := c.String("state-dir")
			if dir == "" {
				return cli.Exit("shoal history needs --state-dir DIR (or SHOAL_STATE_DIR): the directory clusters were started with", 2)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			states, err := head.History(ctx, dir)
			if len(states) == 0 && err != nil {
				return cli.Exit(err.Error(), 1)
			}
			if err != nil {
				fmt.Fprintf(os.Stderr, "shoal: some files could not be read: %v\n", err)
			}
			if id := c.String("cluster"); id != "" {
				var keep []head.State
				for _, s := range states {
					if strings.HasPrefix(s.Cluster.ID, id) {
						keep = append(keep, s)
					}
				}
				if len(keep) == 0 {
					return cli.Exit(fmt.Sprintf("no cluster %q in %s (%d there); run `shoal history --state-dir %s` to list them", id, dir, len(states), dir), 1)
				}
				states = keep
			}
			if c.Bool("json") {
				if states == nil {
					states = []head.State{}
				}
				b, _ := json.MarshalIndent(states, "", "  ")
				fmt.Println(string(b))
				return nil
			}
			if len(states) == 0 {
				fmt.Printf("no clusters in %s yet; start one with `shoal run --state-dir %s -- CMD`\n", dir, dir)
				return nil
			}
			for i, s := range states {
				if i > 0 {
					fmt.Println()
				}
				printHistory(os.Stdout, s)
			}
			return nil
		},
	}
}

// stamp formats a time in milliseconds since the epoch; 0 is "-".
func stamp(ms int64) string {
	if ms == 0 {
		return "-"
	}
	return time.UnixMilli(ms).Format("2006-01-02 15:04:05")
}

// span formats a start and an end, with the duration.
func span(start, end int64) string {
	if end == 0 {
		return stamp(start) + " -> (no end recorded)"
	}
	return fmt.Sprintf("%s -> %s (%s)", stamp(start), stamp(end), time.Duration(end-start)*time.Millisecond)
}

// printHistory writes one cluster's record: the cluster, then its tables.
func printHistory(w io.Writer, s head.State) {
	cl := s.Cluster
	fmt.Fprintf(w, "cluster %s  shoal %s on %s", cl.ID, cl.Kind, cl.Node)
	if cl.SlurmJob != "" {
		fmt.Fprintf(w, " (Slurm job %s)", cl.SlurmJob)
	}
	fmt.Fprintf(w, "  %s", span(cl.StartedMS, cl.EndedMS))
	if cl.ExitCode != nil {
		fmt.Fprintf(w, "  exit %d", *cl.ExitCode)
	}
	if cl.EndedMS == 0 {
		fmt.Fprint(w, "  (running, or killed before it could record its end)")
	}
	fmt.Fprintln(w)
	if cl.Command != "" {
		fmt.Fprintf(w, "  command: %s\n", cl.Command)
	}
	if s.Path != "" {
		fmt.Fprintf(w, "  file:    %s\n", s.Path)
	}
	if cl.Dropped > 0 || cl.Failed > 0 {
		fmt.Fprintf(w, "  incomplete: %d events dropped (write queue full), %d writes failed; see the head's log\n", cl.Dropped, cl.Failed)
	}
	fmt.Fprintf(w, "  nodes: %d\n", len(s.Nodes))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, n := range s.Nodes {
		st := "LOST"
		if n.Alive {
			st = "ALIVE"
		} else if cl.EndedMS != 0 && n.LeftMS == cl.EndedMS {
			st = "ENDED"
		}
		fmt.Fprintf(tw, "    %s\t%s\t%s\t%s\t%s\n", n.ID, n.Addr, st, span(n.JoinedMS, n.LeftMS), resString(n.Resources))
	}
	tw.Flush()
	printTables(w, s)
}

// printTables writes the job, actor and placement-group tables of s.
func printTables(w io.Writer, s head.State) {
	table(w, "jobs", "JOB\tSTATUS\tEXIT\tSTARTED\tENDED\tDRIVER", len(s.Jobs), func(i int) []any {
		j := s.Jobs[i]
		exit := "-"
		if j.ExitCode != nil {
			exit = fmt.Sprint(*j.ExitCode)
		}
		return []any{j.ID, j.Status, exit, stamp(j.StartedMS), stamp(j.EndedMS), fmt.Sprintf("pid %d %s", j.PID, j.Entry)}
	})
	table(w, "actors", "ACTOR\tNAME\tCLASS\tSTATE\tRESTARTS\tNODE\tJOB\tDEATH", len(s.Actors), func(i int) []any {
		a := s.Actors[i]
		name := dash(a.Name)
		if a.Name != "" && a.NS != "" {
			name = a.NS + "/" + a.Name
		}
		return []any{a.ID, name, a.Class, a.State, a.Restarts, a.Node, a.Job, dash(oneLine(a.Death))}
	})
	table(w, "placement groups", "GROUP\tNAME\tSTRATEGY\tSTATE\tCREATED\tREMOVED\tBUNDLES", len(s.PlacementGroups), func(i int) []any {
		p := s.PlacementGroups[i]
		var bs []string
		for _, b := range p.Bundles {
			bs = append(bs, "{"+resString(b)+"}")
		}
		return []any{p.ID, dash(p.Name), p.Strategy, p.State, stamp(p.CreatedMS), stamp(p.RemovedMS), strings.Join(bs, " ")}
	})
}

// table writes "  TITLE: N" and, when there are rows, a table of them under header (columns
// separated by tabs), row(i) giving the cells of row i.
func table(w io.Writer, title, header string, n int, row func(i int) []any) {
	fmt.Fprintf(w, "  %s: %d\n", title, n)
	if n == 0 {
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "    "+header)
	for i := 0; i < n; i++ {
		cells := row(i)
		parts := make([]string, len(cells))
		for k, c := range cells {
			parts[k] = fmt.Sprint(c)
		}
		fmt.Fprintln(tw, "    "+strings.Join(parts, "\t"))
	}
	tw.Flush()
}

// resString is "CPU 2, GPU 1" in key order.
func resString(r map[string]float64) string {
	keys := make([]string, 0, len(r))
	for k := range r {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		if k == "memory" || k == "object_store_memory" {
			parts[i] = k + " " + hb(int64(r[k]))
		} else {
			parts[i] = fmt.Sprintf("%s %g", k, r[k])
		}
	}
	return strings.Join(parts, ", ")
}

// oneLine keeps the first line of a death cause (a traceback's last line is its message; the
// full text is in --json).
func oneLine(s string) string {
	s = strings.TrimSpace(s)
	lines := strings.Split(s, "\n")
	if len(lines) == 1 {
		return s
	}
	return strings.TrimSpace(lines[len(lines)-1]) + " (+traceback, see --json)"
}
