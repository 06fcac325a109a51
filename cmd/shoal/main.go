// Command shoal turns a Slurm allocation, a YARN container set or one machine into an
// ephemeral cluster for distributed Python and Go programs. main builds the CLI and maps
// errors to exit codes; the work happens in the domain packages.
package main

import (
	"errors"
	"fmt"
	"os"
	"runtime/debug"

	"github.com/hashicorp/go-hclog"
	"github.com/urfave/cli/v2"

	"github.com/shoal-hpc/shoal/config"

	_ "github.com/shoal-hpc/shoal/internal/cgotrace" // C frames in crash tracebacks
)

// version and commit are set by the build: make build and scripts/release.sh pass
// -ldflags "-X main.version=<python/shoal/__init__.py's __version__> -X main.commit=<git HEAD>".
// A plain `go build` leaves version "dev" and takes the commit from the toolchain's VCS stamp.
var (
	version = "dev"
	commit  = ""
)

// versionString is what `shoal --version` prints after "shoal version ": the version, then the
// commit the binary was built from ("-dirty" when the tree had uncommitted changes).
func versionString() string {
	c := commit
	if c == "" {
		if info, ok := debug.ReadBuildInfo(); ok {
			dirty := false
			for _, s := range info.Settings {
				switch s.Key {
				case "vcs.revision":
					c = s.Value
				case "vcs.modified":
					dirty = s.Value == "true"
				}
			}
			if c != "" && dirty {
				c += "-dirty"
			}
		}
	}
	if c == "" {
		c = "unknown"
	}
	return fmt.Sprintf("%s (commit %s)", version, c)
}

func main() {
	app := newApp()
	if err := app.Run(os.Args); err != nil {
		var ec cli.ExitCoder
		if errors.As(err, &ec) {
			if msg := err.Error(); msg != "" {
				fmt.Fprintln(os.Stderr, "shoal:", msg)
			}
			os.Exit(ec.ExitCode())
		}
		fmt.Fprintln(os.Stderr, "shoal:", err)
		os.Exit(1)
	}
}

func newApp() *cli.App {
	return &cli.App{
		Name:    "shoal",
		Usage:   "turn an allocation into an ephemeral cluster for distributed Python and Go programs",
		Version: versionString(),
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "log-level", Value: "warn", EnvVars: []string{"SHOAL_LOG_LEVEL"},
				Usage: "log level: trace, debug, info, warn or error"},
			&cli.StringFlag{Name: "log-format", Value: "text", EnvVars: []string{"SHOAL_LOG_FORMAT"},
				Usage: "log format: text or json"},
			&cli.StringFlag{Name: "config", Value: config.DefaultPath, EnvVars: []string{"SHOAL_CONFIG"},
				Usage: "the admin's node defaults (TOML); flags and SHOAL_* variables override it"},
		},
		Before: loadConfig,
		Commands: []*cli.Command{
			runCommand(),
			launchCommand(),
			trainCommand(),
			upCommand(),
			statusCommand(),
			historyCommand(),
			downCommand(),
			addressCommand(), // address.go
			joinCommand(),    // join.go
			serveCommand(),
			nodeCommand(),
			configCommand(),
			adminCommand(),
			hostlistCommand(),
			benchCommand(),
			yarnCommand(),
			transportsCommand(),
			dashboardCommand(),
			timelineCommand(),
			logsCommand(),
			listCommand(),
			compatCommand(),
		},
		ExitErrHandler: func(*cli.Context, error) {}, // main prints and exits
	}
}

// logger builds the root logger from the global flags.
func logger(c *cli.Context) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{
		Name:       "shoal",
		Level:      hclog.LevelFromString(c.String("log-level")),
		JSONFormat: c.String("log-format") == "json",
		Output:     os.Stderr,
	})
}
