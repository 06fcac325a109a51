package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/shoal-hpc/shoal/yarn"
)

func yarnCommand() *cli.Command {
	return &cli.Command{
		Name:  "yarn",
		Usage: "run a shoal cluster on Hadoop YARN: submit, status, kill, logs",
		UsageText: "shoal yarn submit --containers 8 --memory 4g --vcores 4 -- python job.py\n" +
			"   shoal yarn status application_1700000000000_0001\n" +
			"   shoal yarn logs application_1700000000000_0001",
		Subcommands: []*cli.Command{yarnSubmitCommand(), yarnStatusCommand(), yarnKillCommand(), yarnLogsCommand(),
			yarnAMCommand(), yarnAgentCommand()},
	}
}

// yarnConnFlags are the flags every client subcommand needs.
func yarnConnFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "rm", EnvVars: []string{"SHOAL_YARN_RM"},
			Usage: "the ResourceManager's web address (default: yarn.resourcemanager.webapp.address from $YARN_CONF_DIR or $HADOOP_CONF_DIR yarn-site.xml, else localhost:8088)"},
		&cli.StringFlag{Name: "user", EnvVars: []string{"SHOAL_YARN_USER"},
			Usage: "the YARN user (user.name; clusters without Kerberos) (default: $HADOOP_USER_NAME, else the current user)"},
	}
}

func yarnClient(c *cli.Context) (*yarn.Client, yarn.Site, error) {
	site, path, err := yarn.LoadSite()
	if err != nil {
		return nil, nil, cli.Exit(err.Error(), 2)
	}
	rm := c.String("rm")
	if rm == "" {
		rm = site.RMWebAddress()
		if rm != "" && path != "" {
			logger(c).Debug("ResourceManager from yarn-site.xml", "path", path, "rm", rm)
		}
	}
	if rm == "" {
		rm = "localhost:8088"
	}
	cl, err := yarn.NewClient(rm, c.String("user"))
	if err != nil {
		return nil, nil, cli.Exit(err.Error(), 2)
	}
	return cl, site, nil
}

func yarnSubmitCommand() *cli.Command {
	return &cli.Command{
		Name:      "submit",
		Usage:     "submit a shoal application: N containers with an agent each, the head and CMD in the ApplicationMaster's",
		ArgsUsage: "-- CMD [ARGS...]",
		UsageText: "shoal yarn submit [options] -- CMD [ARGS...]\n\n" +
			"   Example:\n" +
			"     shoal yarn submit --containers 8 --memory 4g --vcores 4 -- python job.py\n" +
			"   ships the shoal binary and job.py (a driver argument that names a local file is shipped),\n" +
			"   shows progress, and exits with the driver's exit code (143 when the application is killed).\n" +
			"   With --detach it prints the application id and returns at once.",
		Flags: append(yarnConnFlags(),
			&cli.StringFlag{Name: "scheduler-address", EnvVars: []string{"SHOAL_YARN_SCHEDULER_ADDRESS"},
				Usage: "the ResourceManager's scheduler address the ApplicationMaster registers at (default: yarn.resourcemanager.scheduler.address from yarn-site.xml)"},
			&cli.IntFlag{Name: "containers", Value: 1, EnvVars: []string{"SHOAL_YARN_CONTAINERS"},
				Usage: "containers to run agents in (the ApplicationMaster's container, with the head and driver, is extra)"},
			&cli.StringFlag{Name: "memory", Value: "1g", EnvVars: []string{"SHOAL_YARN_MEMORY"},
				Usage: "memory of each container, e.g. 4g or 512m (a bare number is MB)"},
			&cli.IntFlag{Name: "vcores", Value: 1, EnvVars: []string{"SHOAL_YARN_VCORES"}, Usage: "virtual cores of each container"},
			&cli.BoolFlag{Name: "quiet", EnvVars: []string{"SHOAL_QUIET"},
				Usage: "no end-of-job report at the end of the driver's stderr (default: the report, as `shoal run` prints it)"},
			&cli.StringFlag{Name: "report", EnvVars: []string{"SHOAL_REPORT"},
				Usage: "write the end-of-job report as JSON to this local file when the application ends (not with --detach: then read it with `shoal yarn logs --file report.json APP`)"},
			&cli.StringFlag{Name: "am-memory", Value: "1g", EnvVars: []string{"SHOAL_YARN_AM_MEMORY"},
				Usage: "memory of the ApplicationMaster's container (head, its agent and the driver)"},
			&cli.IntFlag{Name: "am-vcores", Value: 1, EnvVars: []string{"SHOAL_YARN_AM_VCORES"}, Usage: "virtual cores of the ApplicationMaster's container"},
			&cli.StringFlag{Name: "queue", EnvVars: []string{"SHOAL_YARN_QUEUE"}, Usage: "YARN queue (default: the cluster's default for you)"},
			&cli.StringFlag{Name: "name", EnvVars: []string{"SHOAL_YARN_NAME"}, Usage: "application name (default: shoal: CMD)"},
			&cli.StringSliceFlag{Name: "tags", EnvVars: []string{"SHOAL_YARN_TAGS"}, Usage: "application tags, comma-separated or repeated"},
			&cli.StringFlag{Name: "node-label", EnvVars: []string{"SHOAL_YARN_NODE_LABEL"}, Usage: "node label expression for all containers"},
			&cli.IntFlag{Name: "max-attempts", Value: 1, EnvVars: []string{"SHOAL_YARN_MAX_ATTEMPTS"},
				Usage: "ApplicationMaster attempts; a new attempt reruns the driver from the start"},
			&cli.StringSliceFlag{Name: "files", EnvVars: []string{"SHOAL_YARN_FILES"},
				Usage: "local files every container gets in its working directory, comma-separated or repeated"},
			&cli.StringSliceFlag{Name: "archives", EnvVars: []string{"SHOAL_YARN_ARCHIVES"},
				Usage: "archives (.tar.gz, .tgz, .tar, .zip) unpacked into every container, e.g. pyenv.tar.gz#env for a Python environment at ./env; comma-separated or repeated"},
			&cli.StringSliceFlag{Name: "env", EnvVars: []string{"SHOAL_YARN_ENV"},
				Usage: "KEY=VALUE set for the driver, the agents and their workers; repeat for more"},
			&cli.BoolFlag{Name: "detach", EnvVars: []string{"SHOAL_YARN_DETACH"}, Usage: "print the application id and return without waiting"},
			&cli.DurationFlag{Name: "join-timeout", Value: 5 * time.Minute, EnvVars: []string{"SHOAL_YARN_JOIN_TIMEOUT"},
				Usage: "how long the ApplicationMaster waits for all agents to join before it fails the application"},
			&cli.IntFlag{Name: "max-replacements", Value: -1, EnvVars: []string{"SHOAL_YARN_MAX_REPLACEMENTS"},
				Usage: "containers that die before the driver ends are replaced, this many in all (default: --containers)"},
			&cli.StringFlag{Name: "stage", Value: "auto", EnvVars: []string{"SHOAL_YARN_STAGE"},
				Usage: "where shipped files go: hdfs (uploaded through WebHDFS to /user/USER/.shoal/APP, removed at the end), local (file:// paths every node must see), auto (hdfs when fs.defaultFS in core-site.xml is hdfs://)"},
			&cli.StringFlag{Name: "webhdfs", EnvVars: []string{"SHOAL_YARN_WEBHDFS"},
				Usage: "the NameNode's web address for staging (default: dfs.namenode.http-address from hdfs-site.xml, else the fs.defaultFS host on port 9870)"},
			&cli.StringFlag{Name: "am-log-level", Value: "info", EnvVars: []string{"SHOAL_YARN_AM_LOG_LEVEL"},
				Usage: "log level of the ApplicationMaster and the agents (their stderr, see `shoal yarn logs`)"},
			&cli.BoolFlag{Name: "require-rpc-privacy", EnvVars: []string{"SHOAL_YARN_REQUIRE_RPC_PRIVACY"},
				Usage: "fail unless the cluster encrypts Hadoop RPC (hadoop.rpc.protection=privacy): the containers' launch contexts carry the cluster's secret from the ApplicationMaster to the NodeManagers"},
			&cli.BoolFlag{Name: "insecure-data-plane", EnvVars: []string{"SHOAL_INSECURE_DATA_PLANE"},
				Usage: "move objects and collectives between containers in clear (default: TLS 1.3), for networks you trust; the control plane stays encrypted (docs/security.md)"},
			stateDirFlag("absolute path, on the ApplicationMaster's node, where the head keeps its database after the application ends (a shared file system, to read it with `shoal history` elsewhere) (default: not kept)"),
			heartbeatFlag(),
		),
		Action: func(c *cli.Context) error {
			argv := c.Args().Slice()
			if len(argv) == 0 {
				return cli.Exit("no driver command; usage: shoal yarn submit [options] -- python job.py", 2)
			}
			sd := c.String("state-dir")
			if !c.IsSet("state-dir") {
				sd = loadedConfig.values["state-dir"] // the admin's [head] state_dir; no other setting of the file is a container's
			}
			if c.String("report") != "" && c.Bool("detach") {
				return cli.Exit(fmt.Sprintf("--report %s waits for the application's end, which --detach does not; drop one, or read the report later with `shoal yarn logs --file %s APP`", c.String("report"), yarn.ReportFile), 2)
			}
			if sd != "" && !filepath.IsAbs(sd) {
				return cli.Exit(fmt.Sprintf("--state-dir %q: give an absolute path; the head runs in a container whose working directory YARN removes", sd), 2)
			}
			cl, site, err := yarnClient(c)
			if err != nil {
				return err
			}
			mem, err := yarn.ParseMemoryMB(c.String("memory"))
			if err != nil {
				return cli.Exit("--memory: "+err.Error(), 2)
			}
			amMem, err := yarn.ParseMemoryMB(c.String("am-memory"))
			if err != nil {
				return cli.Exit("--am-memory: "+err.Error(), 2)
			}
			env := map[string]string{}
			for _, kv := range c.StringSlice("env") {
				k, v, ok := strings.Cut(kv, "=")
				if !ok || k == "" {
					return cli.Exit(fmt.Sprintf("--env %q: write KEY=VALUE", kv), 2)
				}
				env[k] = v
			}
			sched := c.String("scheduler-address")
			if sched == "" {
				sched = site.SchedulerAddress()
			}
			hb, err := heartbeatTimeout(c)
			if err != nil {
				return err
			}
			replace := c.Int("max-replacements")
			if replace < 0 {
				replace = c.Int("containers")
			}
			o := &yarn.SubmitOptions{Name: c.String("name"), Queue: c.String("queue"), Tags: c.StringSlice("tags"),
				NodeLabel: c.String("node-label"), MaxAttempts: c.Int("max-attempts"), Containers: c.Int("containers"),
				MemoryMB: mem, VCores: int32(c.Int("vcores")), AMMemoryMB: amMem, AMVCores: int32(c.Int("am-vcores")),
				Files: c.StringSlice("files"), Archives: c.StringSlice("archives"), Env: env, SchedulerAddress: sched, JoinTimeout: c.Duration("join-timeout"),
				MaxReplacements: replace, LogLevel: c.String("am-log-level"), RequireRPCPrivacy: c.Bool("require-rpc-privacy"),
				InsecureDataPlane: c.Bool("insecure-data-plane"), StateDir: sd, HeartbeatTimeout: hb, Quiet: c.Bool("quiet"), Argv: argv}
			if o.HDFS, err = stager(c, site, cl.User()); err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			id, err := cl.SubmitShoal(ctx, o)
			cancel()
			if err != nil {
				return cli.Exit(err.Error(), 1)
			}
			if c.Bool("detach") {
				fmt.Println(id)
				return nil
			}
			fmt.Fprintf(os.Stderr, "shoal: submitted %s to %s (%d containers of %d MB, %d vcores)\n", id, cl.Base(), o.Containers, mem, o.VCores)
			err = followApp(cl, id, o.Containers, c.String("report"))
			if o.HDFS != nil { // the AM removes them too; not when it was killed early
				dctx, dcancel := context.WithTimeout(context.Background(), 30*time.Second)
				o.HDFS.Delete(dctx, yarn.StagingDir(cl.User(), id))
				dcancel()
			}
			return err
		},
	}
}

// stager picks where shipped files go (--stage): nil for file:// resources, or HDFS.
func stager(c *cli.Context, site yarn.Site, user string) (*yarn.WebHDFS, error) {
	mode := c.String("stage")
	fs := site.DefaultFS()
	switch mode {
	case "local":
		return nil, nil
	case "auto":
		if !strings.HasPrefix(fs, "hdfs://") {
			return nil, nil
		}
	case "hdfs":
	default:
		return nil, cli.Exit(fmt.Sprintf("--stage %q: use auto, hdfs or local", mode), 2)
	}
	web := c.String("webhdfs")
	if web == "" {
		web = site.NameNodeWeb()
	}
	if fs == "" {
		return nil, cli.Exit("--stage hdfs: fs.defaultFS is unknown; point YARN_CONF_DIR at the cluster's configuration (core-site.xml)", 2)
	}
	w, err := yarn.NewWebHDFS(web, fs, user)
	if err != nil {
		return nil, cli.Exit("--stage hdfs: "+err.Error(), 2)
	}
	return w, nil
}

// followApp waits for the application, prints the driver's output, and exits with its code.
// Ctrl-C kills the application. With report set, the end-of-job report goes there as JSON.
func followApp(cl *yarn.Client, id string, want int, report string) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	go func() {
		if _, ok := <-sigs; ok {
			fmt.Fprintf(os.Stderr, "shoal: interrupted; killing %s\n", id)
			kctx, kcancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer kcancel()
			if err := cl.Kill(kctx, id); err != nil {
				fmt.Fprintln(os.Stderr, "shoal:", err)
			}
		}
	}()
	// the driver's output, as it grows
	out := cl.NewDriverOutput(id, os.Stdout, os.Stderr)
	tailCtx, stopTail := context.WithCancel(ctx)
	tailed := make(chan struct{})
	go func() {
		defer close(tailed)
		for {
			select {
			case <-tailCtx.Done():
				return
			case <-time.After(time.Second):
				out.Poll(tailCtx)
			}
		}
	}()
	app, err := cl.Follow(ctx, id, want, 500*time.Millisecond, os.Stderr)
	stopTail()
	<-tailed
	if err != nil {
		return cli.Exit(fmt.Sprintf("follow %s: %v", id, err), 1)
	}
	pctx, pcancel := context.WithTimeout(context.Background(), 30*time.Second)
	out.Poll(pctx) // the rest, now that the driver has ended
	var rerr error
	if report != "" {
		b, err := out.Report(pctx)
		if err == nil {
			err = os.WriteFile(report, b, 0o644)
		}
		if err != nil {
			rerr = cli.Exit(fmt.Sprintf("--report %s: %v", report, err), 1)
		}
	}
	pcancel()
	code := yarn.ExitCode(app)
	if _, ok := yarn.DriverExitCode(app.Diagnostics); !ok && app.Diagnostics != "" {
		fmt.Fprintf(os.Stderr, "shoal: %s diagnostics:\n%s\n", id, strings.TrimSpace(app.Diagnostics))
	}
	if code != 0 {
		if rerr != nil {
			fmt.Fprintln(os.Stderr, "shoal:", rerr)
		}
		return cli.Exit("", code)
	}
	return rerr
}

// yarnApp is the application id argument of a status, kill or logs command and a client of
// the ResourceManager the configuration names.
func yarnApp(c *cli.Context) (string, *yarn.Client, error) {
	id, err := oneAppID(c)
	if err != nil {
		return "", nil, err
	}
	cl, _, err := yarnClient(c)
	return id, cl, err
}

func oneAppID(c *cli.Context) (string, error) {
	if c.NArg() != 1 {
		return "", cli.Exit("give one application id, e.g. application_1700000000000_0001", 2)
	}
	id := c.Args().First()
	if err := yarn.ValidID(id); err != nil {
		return "", cli.Exit(err.Error(), 2)
	}
	return id, nil
}

func yarnStatusCommand() *cli.Command {
	return &cli.Command{
		Name:      "status",
		Usage:     "show an application's state, final status, progress and diagnostics",
		ArgsUsage: "APPLICATION_ID",
		UsageText: "shoal yarn status application_1700000000000_0001",
		Flags:     yarnConnFlags(),
		Action: func(c *cli.Context) error {
			id, cl, err := yarnApp(c)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			a, err := cl.App(ctx, id)
			if errors.Is(err, yarn.ErrNotFound) {
				return cli.Exit(fmt.Sprintf("%v (is it an application of the ResourceManager at %s?)", err, cl.Base()), 1)
			}
			if err != nil {
				return cli.Exit(err.Error(), 1)
			}
			fmt.Printf("id:           %s\nname:         %s\nuser:         %s\nqueue:        %s\nstate:        %s\nfinal status: %s\nprogress:     %.0f%%\n",
				a.ID, a.Name, a.User, a.Queue, a.State, a.FinalStatus, a.Progress)
			if a.RunningContainers >= 0 && !a.Terminal() {
				fmt.Printf("containers:   %d running (the ApplicationMaster's included)\n", a.RunningContainers)
			}
			if a.Tags != "" {
				fmt.Printf("tags:         %s\n", a.Tags)
			}
			if a.AppNodeLabel != "" {
				fmt.Printf("node label:   %s\n", a.AppNodeLabel)
			}
			if code, ok := yarn.DriverExitCode(a.Diagnostics); ok {
				fmt.Printf("driver exit:  %d\n", code)
			}
			if d := strings.TrimSpace(a.Diagnostics); d != "" {
				fmt.Printf("diagnostics:  %s\n", d)
			}
			return nil
		},
	}
}

func yarnKillCommand() *cli.Command {
	return &cli.Command{
		Name:      "kill",
		Usage:     "kill an application; YARN stops its containers, and with them every agent and worker",
		ArgsUsage: "APPLICATION_ID",
		UsageText: "shoal yarn kill application_1700000000000_0001",
		Flags: append(yarnConnFlags(),
			&cli.BoolFlag{Name: "wait", Value: true, EnvVars: []string{"SHOAL_YARN_KILL_WAIT"}, Usage: "wait until the application is KILLED"}),
		Action: func(c *cli.Context) error {
			id, cl, err := yarnApp(c)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			a, err := cl.App(ctx, id)
			if err != nil {
				return cli.Exit(err.Error(), 1)
			}
			if a.Terminal() {
				return cli.Exit(fmt.Sprintf("%s has already ended (%s, %s); nothing to kill", id, a.State, a.FinalStatus), 1)
			}
			if err := cl.Kill(ctx, id); err != nil {
				return cli.Exit(err.Error(), 1)
			}
			if !c.Bool("wait") {
				return nil
			}
			a, err = cl.Follow(ctx, id, 0, 300*time.Millisecond, nil)
			if err != nil {
				return cli.Exit(fmt.Sprintf("kill %s: %v", id, err), 1)
			}
			fmt.Fprintf(os.Stderr, "shoal: %s %s\n", id, a.State)
			return nil
		},
	}
}

func yarnLogsCommand() *cli.Command {
	return &cli.Command{
		Name:      "logs",
		Usage:     "print the log files of an application's containers (the ApplicationMaster's, with driver.out and driver.err, and every agent's)",
		ArgsUsage: "APPLICATION_ID",
		UsageText: "shoal yarn logs application_1700000000000_0001\n" +
			"   shoal yarn logs --file driver.out application_1700000000000_0001",
		Flags: append(yarnConnFlags(),
			&cli.StringSliceFlag{Name: "file", EnvVars: []string{"SHOAL_YARN_LOG_FILE"}, Usage: "only these log files (e.g. stderr, driver.out)"},
			&cli.BoolFlag{Name: "list", EnvVars: []string{"SHOAL_YARN_LOG_LIST"}, Usage: "list the containers and files, without their content"}),
		Action: func(c *cli.Context) error {
			id, cl, err := yarnApp(c)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			logs, err := cl.Logs(ctx, id)
			if err != nil {
				return cli.Exit(err.Error(), 1)
			}
			if len(logs) == 0 {
				return cli.Exit(fmt.Sprintf("no NodeManager has logs of %s (with log aggregation on, read them with `yarn logs -applicationId %s`)", id, id), 1)
			}
			only := map[string]bool{}
			for _, f := range c.StringSlice("file") {
				only[f] = true
			}
			for _, cl2 := range logs {
				if cl2.Err != nil {
					fmt.Fprintf(os.Stderr, "shoal: %s on %s: %v\n", cl2.Container, cl2.Node, cl2.Err)
				}
				for _, f := range cl2.Files {
					if len(only) > 0 && !only[f.Name] {
						continue
					}
					fmt.Printf("==> %s %s (%s, %d bytes) <==\n", cl2.Container, f.Name, cl2.Node, f.Size)
					if c.Bool("list") {
						continue
					}
					b, err := cl.ContainerLog(ctx, cl2.Node, cl2.Container, f.Name)
					if err != nil {
						fmt.Fprintln(os.Stderr, "shoal:", err)
						continue
					}
					os.Stdout.Write(b)
					if len(b) > 0 && b[len(b)-1] != '\n' {
						fmt.Println()
					}
				}
			}
			return nil
		},
	}
}

func yarnAMCommand() *cli.Command {
	return &cli.Command{
		Name:   "am",
		Usage:  "the ApplicationMaster (run by YARN in the application's first container)",
		Hidden: true,
		Action: func(c *cli.Context) error {
			code := yarn.RunAM(context.Background(), logger(c).Named("yarn-am"))
			if code != 0 {
				return cli.Exit("", code)
			}
			return nil
		},
	}
}

func yarnAgentCommand() *cli.Command {
	return &cli.Command{
		Name:   "agent",
		Usage:  "a member agent (run by the ApplicationMaster in each container)",
		Hidden: true,
		Action: func(c *cli.Context) error {
			code, err := yarn.RunMember(context.Background(), logger(c).Named("yarn-agent"))
			if err != nil {
				return cli.Exit(err.Error(), max(code, 1))
			}
			if code != 0 {
				return cli.Exit("", code)
			}
			return nil
		},
	}
}
