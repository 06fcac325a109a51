package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/urfave/cli/v2"
)

// compatCommand runs the SDK's check (python -m shoal.compat, shoal/compat.py): the check
// itself is Python's ast, so it lives beside the table it reads (shoal/_compat_table.py).
func compatCommand() *cli.Command {
	return &cli.Command{
		Name:  "compat",
		Usage: "list the Ray APIs a Python script uses and whether shoal supports, refuses or lacks each; --run runs it with `import ray` mapped to shoal",
		UsageText: "shoal compat [--run] [--json] [--quiet] SCRIPT.py [ARGS...]\n\n" +
			"   Example: shoal compat train.py                # exit 1 when an API is lacking or refused\n" +
			"            shoal compat --run train.py --epochs 3   # then run it; `import ray` imports shoal\n" +
			"   The check reads the script (it is not run): imports, ray.* names, and the options of\n" +
			"   @ray.remote, @ray.method, .options() and ray.init(). README.md lists the same table.",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "run", EnvVars: []string{"SHOAL_COMPAT_RUN"}, Usage: "after the check, run the script with `import ray` mapped to shoal (default: check only)"},
			&cli.BoolFlag{Name: "json", EnvVars: []string{"SHOAL_COMPAT_JSON"}, Usage: "print the check as JSON (default: a table)"},
			&cli.BoolFlag{Name: "quiet", EnvVars: []string{"SHOAL_COMPAT_QUIET"}, Usage: "with --run, print the check only when an API is not supported"},
			&cli.StringFlag{Name: "python", Value: "python3", EnvVars: []string{"SHOAL_PYTHON"}, Usage: "the Python that checks and runs the script"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() < 1 {
				return cli.Exit("shoal compat needs a script, e.g. `shoal compat train.py`", 2)
			}
			args := []string{"-m", "shoal.compat"}
			for _, f := range []string{"run", "json", "quiet"} {
				if c.Bool(f) {
					args = append(args, "--"+f)
				}
			}
			args = append(append(args, "--"), c.Args().Slice()...)
			cmd := exec.Command(c.String("python"), args...)
			cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
			cmd.Env = compatEnv()
			err := cmd.Run()
			var ee *exec.ExitError
			switch {
			case err == nil:
				return nil
			case errors.As(err, &ee):
				return cli.Exit("", ee.ExitCode())
			}
			return cli.Exit(fmt.Sprintf("run %s -m shoal.compat: %v; set --python (SHOAL_PYTHON) to a Python with the shoal package", c.String("python"), err), 1)
		},
	}
}

// compatEnv is this environment, with the SDK beside this binary first on PYTHONPATH (a
// checkout's python/; a wheel's binary is inside the package, which its Python finds).
func compatEnv() []string {
	env := os.Environ()
	exe, err := os.Executable()
	if err != nil {
		return env
	}
	if real, err := filepath.EvalSymlinks(exe); err == nil {
		exe = real
	}
	sdk, _ := filepath.Abs(filepath.Join(filepath.Dir(exe), "..", "python"))
	if _, err := os.Stat(filepath.Join(sdk, "shoal", "compat.py")); err != nil {
		return env
	}
	pp := sdk
	if old := os.Getenv("PYTHONPATH"); old != "" {
		pp += string(os.PathListSeparator) + old
	}
	return setEnv(env, "PYTHONPATH", pp)
}
