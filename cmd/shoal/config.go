package main

import (
	"fmt"
	"os"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/shoal-hpc/shoal/config"
)

// loadedConfig is the admin's file, read once by loadConfig.
var loadedConfig struct {
	path   string
	values map[string]string
}

// loadConfig reads the config file named by --config / SHOAL_CONFIG (default
// /etc/shoal/shoal.toml; a missing default file is fine).
func loadConfig(c *cli.Context) error {
	p := c.String("config")
	f, err := config.Load(p, c.IsSet("config"))
	if err != nil {
		return cli.Exit(err.Error(), 2)
	}
	loadedConfig.path, loadedConfig.values = p, f.Values()
	// global settings apply now; command settings when a command reads its options
	for _, name := range []string{"log-level", "log-format"} {
		if v, ok := loadedConfig.values[name]; ok && !c.IsSet(name) {
			if err := c.Set(name, v); err != nil {
				return cli.Exit(fmt.Sprintf("%s: %s = %q: %v", p, name, v, err), 2)
			}
		}
	}
	return nil
}

// applyConfig gives every flag of c's command that neither the command line nor a SHOAL_*
// variable set the value from the config file.
func applyConfig(c *cli.Context) error {
	for _, f := range c.Command.Flags {
		name := f.Names()[0]
		v, ok := loadedConfig.values[name]
		if !ok || c.IsSet(name) {
			continue
		}
		if err := c.Set(name, v); err != nil {
			return cli.Exit(fmt.Sprintf("%s: %s = %q: %v", loadedConfig.path, name, v, err), 2)
		}
	}
	return nil
}

// source says where a flag's value comes from.
func source(c *cli.Context, f cli.Flag) string {
	name := f.Names()[0]
	for _, a := range os.Args[1:] {
		if a == "--"+name || strings.HasPrefix(a, "--"+name+"=") {
			return "flag --" + name
		}
		if a == "--" {
			break
		}
	}
	if ev, ok := f.(interface{ GetEnvVars() []string }); ok {
		for _, e := range ev.GetEnvVars() {
			if _, set := os.LookupEnv(e); set {
				return "env " + e
			}
		}
	}
	if _, ok := loadedConfig.values[name]; ok {
		return "file " + loadedConfig.path
	}
	return "default"
}

func configCommand() *cli.Command {
	return &cli.Command{
		Name:  "config",
		Usage: "the node defaults in effect",
		Subcommands: []*cli.Command{{
			Name:  "show",
			Usage: "print every setting, its value and where it came from (flag, SHOAL_* variable, config file, default)",
			UsageText: "shoal config show [--config FILE] [cluster options]\n\n" +
				"   Example: SHOAL_CONFIG=examples/shoal.toml shoal config show",
			Flags: append(clusterFlags(), heartbeatFlag()),
			Action: func(c *cli.Context) error {
				if err := applyConfig(c); err != nil {
					return err
				}
				type row struct{ name, value, src string }
				var rows []row
				for _, f := range c.App.Flags {
					n := f.Names()[0]
					if n == "help" || n == "version" {
						continue
					}
					rows = append(rows, row{n, c.String(n), source(c, f)})
				}
				for _, f := range c.Command.Flags {
					n := f.Names()[0]
					if n == "help" {
						continue
					}
					rows = append(rows, row{n, fmt.Sprint(c.Value(n)), source(c, f)})
				}
				sort.SliceStable(rows, func(i, j int) bool { return rows[i].name < rows[j].name })
				tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "SETTING\tVALUE\tFROM")
				for _, r := range rows {
					v := r.value
					if v == "" || v == "0" {
						v = "(auto)"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\n", r.name, v, r.src)
				}
				return tw.Flush()
			},
		}},
	}
}
