package main

import (
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/shoal-hpc/shoal/launcher"
	"github.com/shoal-hpc/shoal/nodeagent/obs"
	"github.com/shoal-hpc/shoal/wire"
)

// observeFlags are the head node's observability flags; clusterFlags holds them, so that
// `shoal run`, `up`, `launch` and `yarn` take them alike.
func observeFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "observability", Value: "on", EnvVars: []string{"SHOAL_OBSERVABILITY"},
			Usage: "record tasks for the dashboard, /metrics, `shoal timeline` and the end-of-job report: on or off"},
		&cli.StringFlag{Name: "dashboard-host", Value: "127.0.0.1", EnvVars: []string{"SHOAL_DASHBOARD_HOST"},
			Usage: "address the head's dashboard and /metrics listen on (default: loopback; reach it with ssh -L)"},
		&cli.IntFlag{Name: "dashboard-port", Value: 0, EnvVars: []string{"SHOAL_DASHBOARD_PORT"},
			Usage: "port of the dashboard (default 0: one the OS picks; `shoal dashboard` prints it)"},
		&cli.BoolFlag{Name: "dashboard", Value: true, EnvVars: []string{"SHOAL_DASHBOARD"},
			Usage: "serve the dashboard and /metrics; --dashboard=false records all the same (shoal timeline, logs, the report) but listens on no port (Ray's include_dashboard=False)"},
		&cli.IntFlag{Name: "log-lines", Value: obs.DefaultMaxLogLines, EnvVars: []string{"SHOAL_LOG_LINES"},
			Usage: "worker output lines each node's agent keeps of its own workers (the oldest go first; shoal logs reads them)"},
		&cli.IntFlag{Name: "log-bytes", Value: obs.DefaultMaxLogBytes, EnvVars: []string{"SHOAL_LOG_BYTES"},
			Usage: "bytes of worker output text each node's agent keeps (64 MiB)"},
	}
}

// reportFlags are the end-of-job report's flags of `shoal run` and `shoal launch`.
func reportFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "report", EnvVars: []string{"SHOAL_REPORT"},
			Usage: "also write the end-of-job report to this file as JSON (default: none)"},
		&cli.BoolFlag{Name: "quiet", EnvVars: []string{"SHOAL_QUIET"},
			Usage: "print no end-of-job report on stderr (default: print it)"},
	}
}

// observeOptions reads observeFlags and reportFlags.
func observeOptions(c *cli.Context) (launcher.ObserveOptions, error) {
	o := launcher.ObserveOptions{DashboardHost: c.String("dashboard-host"), DashboardPort: c.Int("dashboard-port"),
		ReportFile: c.String("report"), Quiet: c.Bool("quiet"), LogLines: c.Int("log-lines"), LogBytes: c.Int("log-bytes"),
		NoDashboard: !c.Bool("dashboard")}
	if o.LogLines < 1 || o.LogBytes < 1 {
		return o, cli.Exit(fmt.Sprintf("--log-lines %d, --log-bytes %d: each node keeps at least one line; give both above 0", o.LogLines, o.LogBytes), 2)
	}
	switch v := c.String("observability"); v {
	case "", "on":
	case "off":
		o.Off = true
	default:
		return o, cli.Exit(fmt.Sprintf("--observability %q: use on or off", v), 2)
	}
	if o.DashboardPort < 0 || o.DashboardPort > 65535 {
		return o, cli.Exit(fmt.Sprintf("--dashboard-port %d: use a port from 1 to 65535, or 0 for one the OS picks", o.DashboardPort), 2)
	}
	if h := o.DashboardHost; h != "" && net.ParseIP(h) == nil {
		if _, err := net.LookupHost(h); err != nil {
			return o, cli.Exit(fmt.Sprintf("--dashboard-host %q: not an address, and it does not resolve (%v)", h, err), 2)
		}
	}
	return o, nil
}

// observe asks the cluster's head node agent for a recording (wire OBSERVE).
func observe(c *cli.Context, what string) ([]byte, launcher.Info, error) {
	conn, info, err := dialCLI(c)
	if err != nil {
		return nil, info, err
	}
	defer conn.Close()
	var r wire.ObserveReply
	if err := conn.Call(wire.TObserve, 1, &wire.Observe{What: what}, &r); err != nil {
		return nil, info, cli.Exit(fmt.Sprintf("ask cluster %s for its %s: %v", info.ID, what, err), 1)
	}
	return r.Data, info, nil
}

func dashboardCommand() *cli.Command {
	return &cli.Command{
		Name:  "dashboard",
		Usage: "print the running cluster's dashboard URL, token included",
		UsageText: "shoal dashboard [--cluster ID] [--json]\n\n" +
			"   Example (the head runs on node gpu01 of a Slurm job):\n" +
			"     ssh gpu01 shoal dashboard            # http://127.0.0.1:41234/?token=...\n" +
			"     ssh -L 41234:127.0.0.1:41234 gpu01   # then open the URL on your machine\n" +
			"   Prometheus scrapes http://HOST:PORT/metrics with `authorization: {credentials: TOKEN}`.",
		Flags: append(targetFlags(), &cli.BoolFlag{Name: "json", Usage: "print {\"url\", \"token\"} as JSON"}),
		Action: func(c *cli.Context) error {
			data, _, err := observe(c, wire.ObserveDashboard)
			if err != nil {
				return err
			}
			var d struct {
				URL   string `json:"url"`
				Token string `json:"token"`
			}
			if err := json.Unmarshal(data, &d); err != nil {
				return cli.Exit(fmt.Sprintf("read the dashboard's address: %v", err), 1)
			}
			if c.Bool("json") {
				fmt.Println(string(data))
				return nil
			}
			fmt.Println(d.URL + "?token=" + url.QueryEscape(d.Token))
			if u, err := url.Parse(d.URL); err == nil {
				if host, _ := os.Hostname(); host != "" {
					fmt.Fprintf(os.Stderr, "shoal: from another machine: ssh -L %s:%s %s, then open the URL there\n", u.Port(), u.Host, host)
				}
			}
			return nil
		},
	}
}
