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
			UsageText: "shoal admin epilog [--job ID] [--uid UID]\n\n" +
				"   Example slurm.conf line:  Epilog=/etc/slurm/epilog.d/shoal   (a script running `shoal admin epilog`;\n" +
				"   Slurm sets SLURM_JOB_ID and SLURM_JOB_UID for it), or the SPANK plugin's job epilog.\n" +
				"   Runs as root. Kills the job's processes (those in Slurm's job_<id> cgroup; where there is\n" +
				"   none, those of the job's uid whose environment names the job and shoal) through pidfds, and\n" +
				"   removes its /dev/shm object stores, session directories, rendezvous files and leftover\n" +
				"   confinement cgroups: only what the job's user owns, other jobs and users are not touched.\n" +
				"   Without a uid only the job's cgroup is killed. Exits 0 even when something could not be\n" +
				"   removed (it says what), so a node is never drained for it.",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "job", EnvVars: []string{"SLURM_JOB_ID"}, Usage: "the Slurm job id (Slurm sets SLURM_JOB_ID for epilogs)"},
				&cli.IntFlag{Name: "uid", Value: -1, EnvVars: []string{"SLURM_JOB_UID"}, Usage: "the job's user id (Slurm sets SLURM_JOB_UID for epilogs); -1: unknown, only the job's cgroup is killed"},
				&cli.StringFlag{Name: "tmpdir", EnvVars: []string{"SHOAL_TMPDIR"}, Usage: "parent of the per-user session bases (shoal-<uid>), besides the system temp dir"},
				&cli.StringFlag{Name: "rendezvous-dir", EnvVars: []string{"SHOAL_RENDEZVOUS_DIR"}, Usage: "a rendezvous directory besides the user's $HOME/.shoal/launch"},
			},
			Action: func(c *cli.Context) error {
				job := c.String("job")
				if _, err := strconv.ParseUint(job, 10, 64); err != nil {
					return cli.Exit(fmt.Sprintf("--job %q: want a Slurm job id (digits); Slurm sets SLURM_JOB_ID for epilogs", job), 2)
				}
				uid := c.Int("uid")
				if uid < -1 || uid > 1<<32-2 {
					return cli.Exit(fmt.Sprintf("--uid %d: want the job's numeric user id; Slurm sets SLURM_JOB_UID for epilogs", uid), 2)
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
				r := launcher.Epilog(logger(c), launcher.EpilogOptions{Job: job, UID: uid, TmpRoots: roots, CgroupV2: cg, RendezvousDirs: rdv})
				fmt.Printf("shoal epilog: job %s uid %d: %d cluster(s) %s, %d job cgroup(s), killed %d process(es), removed %d path(s)\n",
					job, uid, len(r.Clusters), strings.Join(r.Clusters, ","), len(r.Cgroups), len(r.Killed), len(r.Removed))
				for _, p := range r.Cgroups {
					fmt.Println("  job cgroup", p)
				}
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
