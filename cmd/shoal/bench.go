package main

import "github.com/urfave/cli/v2"

func benchCommand() *cli.Command {
	return &cli.Command{
		Name:  "bench",
		Usage: "run shoal's benchmarks",
		Subcommands: []*cli.Command{{
			Name:  "core",
			Usage: "core microbenchmarks (tasks, actors, objects, placement groups) through the Python SDK",
			Action: func(c *cli.Context) error {
				return cli.Exit("not built yet", 1)
			},
		}},
	}
}
