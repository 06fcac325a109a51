package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/shoal-hpc/shoal/launcher"
	"github.com/shoal-hpc/shoal/nodeagent/confine"
)

func adminCommand() *cli.Command {
	return &cli.Command{
		Name:  "admin",
		Usage: "commands for HPC admins",
		Subcommands: []*cli.Command{{
			Name:  "epilog",
			Usage: "remove what a Slurm job left of shoal on this node (for slurm.conf's Epilog)",
			UsageText: "shoal admin epilog [--job ID]\n\n" +
				"   Example slurm.conf line:  Epilog=/etc/slurm/epilog.d/shoal   (a script running `shoal admin epilog`)\n" +
				"   Kills the job's shoal processes, removes its /dev/shm object stores, session directories,\n" +
				"   rendezvous files and leftover confinement cgroups; other jobs are not touched. Exits 0\n" +
				"   even when something could not be removed (it says what), so a node is never drained for it.",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "job", EnvVars: []string{"SLURM_JOB_ID"}, Usage: "the Slurm job id (Slurm sets SLURM_JOB_ID for epilogs)"},
				&cli.IntFlag{Name: "uid", Value: -1, EnvVars: []string{"SLURM_JOB_UID"}, Usage: "the job's user id, for its rendezvous files"},
				&cli.StringFlag{Name: "tmpdir", EnvVars: []string{"SHOAL_TMPDIR"}, Usage: "parent of session directories, besides the system temp dir"},
				&cli.StringFlag{Name: "rendezvous-dir", EnvVars: []string{"SHOAL_RENDEZVOUS_DIR"}, Usage: "a rendezvous directory besides the user's $HOME/.shoal/launch"},
			},
			Action: func(c *cli.Context) error {
				job := c.String("job")
				if _, err := strconv.ParseUint(job, 10, 64); err != nil {
					return cli.Exit(fmt.Sprintf("--job %q: want a Slurm job id (digits); Slurm sets SLURM_JOB_ID for epilogs", job), 2)
				}
				roots := []string{os.TempDir()}
				if t := c.String("tmpdir"); t != "" && t != os.TempDir() {
					roots = append(roots, t)
				}
				cg := ""
				if f, err := os.Open("/proc/self/mountinfo"); err == nil {
					cg, _ = confine.FindCgroup2(f)
					f.Close()
				}
				var rdv []string
				if d := c.String("rendezvous-dir"); d != "" {
					rdv = append(rdv, d)
				}
				r := launcher.Epilog(logger(c), launcher.EpilogOptions{Job: job, UID: c.Int("uid"), TmpRoots: roots, CgroupV2: cg, RendezvousDirs: rdv})
				fmt.Printf("shoal epilog: job %s: %d cluster(s) %s, killed %d process(es), removed %d path(s)\n",
					job, len(r.Clusters), strings.Join(r.Clusters, ","), len(r.Killed), len(r.Removed))
				for _, p := range r.Removed {
					fmt.Println("  removed", p)
				}
				for _, p := range r.Problems {
					fmt.Fprintln(os.Stderr, "shoal epilog:", p)
				}
				return nil
			},
		}},
	}
}
