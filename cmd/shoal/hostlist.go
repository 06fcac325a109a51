package main

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/shoal-hpc/shoal/slurm"
	"github.com/urfave/cli/v2"
)

// hostlistCommand is `shoal hostlist expand|compress`: Slurm 22.05 hostlists without
// scontrol, for job scripts on machines that have no Slurm client.
func hostlistCommand() *cli.Command {
	return &cli.Command{
		Name:  "hostlist",
		Usage: "expand or compress Slurm hostlists such as node[01-04],login1",
		UsageText: "shoal hostlist expand \"$SLURM_JOB_NODELIST\"\n" +
			"shoal hostlist compress n01 n02 n03",
		Description: "Reads and writes hostlists exactly as Slurm 22.05's `scontrol show hostnames` and\n" +
			"`scontrol show hostlist` do. Invalid input exits with status 2.",
		Subcommands: []*cli.Command{
			{
				Name:      "expand",
				Usage:     "print every host name of the hostlists, in Slurm's order",
				ArgsUsage: "[HOSTLIST...]",
				UsageText: "shoal hostlist expand 'n[01-03],m1'           # n01 n02 n03 m1, one per line\n" +
					"shoal hostlist expand --sep , \"$SLURM_JOB_NODELIST\"\n" +
					"echo 'rack[1-2]-gpu[1-4]' | shoal hostlist expand  # no argument, or -, reads stdin",
				Flags: []cli.Flag{
					&cli.StringFlag{
						Name:        "sep",
						Value:       "\n",
						DefaultText: "newline",
						EnvVars:     []string{"SHOAL_HOSTLIST_SEP"},
						Usage:       "separator written between names; escapes such as \\t and \\n are understood",
					},
				},
				Action: hostlistExpand,
			},
			{
				Name:      "compress",
				Usage:     "print the Slurm hostlist of the given host names, keeping their order",
				ArgsUsage: "[NAME|HOSTLIST...]",
				UsageText: "shoal hostlist compress n01 n02 n03 m1            # n[01-03],m1\n" +
					"scontrol show hostnames | shoal hostlist compress  # no argument, or -, reads stdin",
				Action: hostlistCompress,
			},
		},
	}
}

func hostlistExpand(c *cli.Context) error {
	sep, err := unescapeSep(c.String("sep"))
	if err != nil {
		return cli.Exit(err, 2)
	}
	names, err := hostlistArgs(c)
	if err != nil {
		return err
	}
	if len(names) == 0 {
		return nil
	}
	_, err = fmt.Fprint(c.App.Writer, strings.Join(names, sep)+"\n")
	return err
}

func hostlistCompress(c *cli.Context) error {
	names, err := hostlistArgs(c)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(c.App.Writer, slurm.Compress(names))
	return err
}

// hostlistArgs expands every argument as a hostlist, so that both "n01 n02" and
// "n[01-02]" are accepted; with no argument, or the single argument "-", it reads
// whitespace-separated hostlists from stdin instead.
func hostlistArgs(c *cli.Context) ([]string, error) {
	inputs := c.Args().Slice()
	if len(inputs) == 0 || (len(inputs) == 1 && inputs[0] == "-") {
		var err error
		if inputs, err = readFields(c.App.Reader); err != nil {
			return nil, fmt.Errorf("read hostlists from stdin: %w", err)
		}
	}
	var names []string
	for _, in := range inputs {
		expanded, err := slurm.Expand(in)
		if err != nil {
			return nil, cli.Exit(err, 2)
		}
		names = append(names, expanded...)
	}
	return names, nil
}

// readFields splits r at whitespace, newlines included.
func readFields(r io.Reader) ([]string, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 64<<20) // a hostlist on one line can be long
	sc.Split(bufio.ScanWords)
	var fields []string
	for sc.Scan() {
		fields = append(fields, sc.Text())
	}
	return fields, sc.Err()
}

// unescapeSep turns `\t`, `\n` and other Go escapes typed on a command line into the
// characters they stand for.
func unescapeSep(sep string) (string, error) {
	if !strings.Contains(sep, `\`) {
		return sep, nil
	}
	s, err := strconv.Unquote(`"` + strings.ReplaceAll(sep, `"`, `\"`) + `"`)
	if err != nil {
		return "", fmt.Errorf("--sep %q: not a valid escape sequence; use \\t, \\n or a plain string", sep)
	}
	return s, nil
}
