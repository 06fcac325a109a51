package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/shoal-hpc/shoal/wire"
)

// listKinds maps what `shoal list` takes (Ray's `ray list` spelling) to the STATE_LIST table.
var listKinds = map[string]string{
	"actors": wire.StateActors, "tasks": wire.StateTasks, "nodes": wire.StateNodes, "objects": wire.StateObjects,
	"placement-groups": wire.StatePlacementGroups, "workers": wire.StateWorkers, "jobs": wire.StateJobs,
}

func listKindNames() string {
	ks := make([]string, 0, len(listKinds))
	for k := range listKinds {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return strings.Join(ks, "|")
}

// errFilter is wrapped by parseFilter's errors.
var errFilter = errors.New("bad filter")

// parseFilter reads one --filter: "COLUMN=VALUE" or "COLUMN!=VALUE" (spaces around the
// predicate allowed), as `ray list --filter` takes it.
func parseFilter(s string) ([]string, error) {
	op := "="
	i := strings.Index(s, "!=")
	if i >= 0 {
		op = "!="
	} else if i = strings.IndexByte(s, '='); i < 0 {
		return nil, fmt.Errorf("%w %q: write COLUMN=VALUE or COLUMN!=VALUE, e.g. --filter state=ALIVE", errFilter, s)
	}
	k, v := strings.TrimSpace(s[:i]), strings.TrimSpace(s[i+len(op):])
	if k == "" {
		return nil, fmt.Errorf("%w %q: no column before %s; e.g. --filter state=ALIVE", errFilter, s, op)
	}
	return []string{k, op, v}, nil
}

func listCommand() *cli.Command {
	kinds := make([]string, 0, len(listKinds))
	for k := range listKinds {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	var subs []*cli.Command
	for _, k := range kinds {
		subs = append(subs, listKindCommand(k))
	}
	return &cli.Command{
		Name:  "list",
		Usage: "list the running cluster's actors, tasks, nodes, objects, placement groups, workers or jobs (as `ray list`)",
		UsageText: "shoal list " + listKindNames() + " [--filter COLUMN=VALUE]... [--limit N] [--detail] [--json] [--cluster ID]\n\n" +
			"   Example: shoal list actors --filter state=ALIVE --filter class_name!=Trainer\n" +
			"            shoal list tasks --filter state=RUNNING --json | jq '.[].node_id'\n" +
			"   Rows carry Ray's state API field names (ray.util.state); values compare as strings,\n" +
			"   case-insensitively. Ended tasks are listed while the cluster's recorder keeps them.",
		Subcommands: subs,
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return cli.Exit(fmt.Sprintf("shoal list %s: unknown; pick one of %s", c.Args().First(), listKindNames()), 2)
			}
			return cli.Exit("shoal list needs one of "+listKindNames()+", e.g. `shoal list actors`", 2)
		},
	}
}

func listKindCommand(name string) *cli.Command {
	kind := listKinds[name]
	return &cli.Command{
		Name:      name,
		Usage:     "list the cluster's " + strings.ReplaceAll(name, "-", " "),
		UsageText: "shoal list " + name + " [--filter COLUMN=VALUE]... [--limit N] [--detail] [--json] [--cluster ID]",
		Flags: append(targetFlags(),
			&cli.StringSliceFlag{Name: "filter", Aliases: []string{"f"}, EnvVars: []string{"SHOAL_LIST_FILTER"},
				Usage: "COLUMN=VALUE or COLUMN!=VALUE; repeat to require all (default: none)"},
			&cli.IntFlag{Name: "limit", Value: 100, EnvVars: []string{"SHOAL_LIST_LIMIT"}, Usage: "at most this many rows (0: all)"},
			&cli.BoolFlag{Name: "detail", EnvVars: []string{"SHOAL_LIST_DETAIL"}, Usage: "every field of each row (default: the list columns)"},
			&cli.BoolFlag{Name: "json", EnvVars: []string{"SHOAL_LIST_JSON"}, Usage: "print the rows as a JSON array (default: a table)"}),
		Action: func(c *cli.Context) error {
			if c.NArg() != 0 {
				return cli.Exit(fmt.Sprintf("shoal list %s takes no argument (got %q); filters go in --filter COLUMN=VALUE", name, c.Args().First()), 2)
			}
			if c.Int("limit") < 0 {
				return cli.Exit(fmt.Sprintf("--limit %d: must be 0 (all) or more", c.Int("limit")), 2)
			}
			req := wire.StateList{Kind: kind, Limit: c.Int("limit")}
			for _, f := range c.StringSlice("filter") {
				ff, err := parseFilter(f)
				if err != nil {
					return cli.Exit("--filter "+err.Error(), 2)
				}
				req.Filters = append(req.Filters, ff)
			}
			conn, info, err := dialCLI(c)
			if err != nil {
				return err
			}
			defer conn.Close()
			var r wire.StateListReply
			if err := conn.Call(wire.TStateList, 1, &req, &r); err != nil {
				return cli.Exit(fmt.Sprintf("list the %s of cluster %s: %v", name, info.ID, err), 1)
			}
			var got struct {
				Rows    []map[string]any `json:"rows"`
				Total   int              `json:"total"`
				Columns []string         `json:"columns"`
			}
			if err := json.Unmarshal(r.Data, &got); err != nil {
				return cli.Exit(fmt.Sprintf("read the %s table: %v", kind, err), 1)
			}
			return printRows(got.Rows, got.Columns, got.Total, c.Bool("detail"), c.Bool("json"))
		},
	}
}

func printRows(rows []map[string]any, cols []string, total int, detail, asJSON bool) error {
	if detail && len(rows) > 0 {
		seen := map[string]bool{}
		for _, k := range cols {
			seen[k] = true
		}
		var more []string
		for _, r := range rows {
			for k := range r {
				if !seen[k] {
					seen[k] = true
					more = append(more, k)
				}
			}
		}
		sort.Strings(more)
		cols = append(cols, more...)
	}
	if asJSON {
		out := make([]map[string]any, len(rows))
		for i, r := range rows {
			out[i] = map[string]any{}
			for _, k := range cols {
				out[i][k] = r[k]
			}
		}
		b, err := json.MarshalIndent(out, "", "  ")
		if err != nil {
			return err
		}
		_, err = fmt.Println(string(b))
		return err
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	for i, k := range cols {
		if i > 0 {
			fmt.Fprint(tw, "\t")
		}
		fmt.Fprint(tw, strings.ToUpper(k))
	}
	fmt.Fprintln(tw)
	for _, r := range rows {
		for i, k := range cols {
			if i > 0 {
				fmt.Fprint(tw, "\t")
			}
			fmt.Fprint(tw, cell(r[k]))
		}
		fmt.Fprintln(tw)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if total > len(rows) {
		fmt.Fprintf(os.Stderr, "shoal: showing %d of %d rows; --limit 0 shows all\n", len(rows), total)
	}
	return nil
}

func cell(v any) string {
	switch x := v.(type) {
	case nil:
		return "-"
	case string:
		if x == "" {
			return "-"
		}
		return x
	case float64:
		return fmt.Sprintf("%g", x)
	case map[string]any, []any:
		b, _ := json.Marshal(x)
		return string(b)
	}
	return fmt.Sprint(v)
}
