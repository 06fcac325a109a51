package launcher

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"

	"github.com/shoal-hpc/shoal/nodeagent/obs"
)

// ObserveOptions configure what the head node records and serves (docs/observability.md).
type ObserveOptions struct {
	// Off records nothing and serves no dashboard (--observability=off).
	Off bool
	// DashboardHost is the address the dashboard listens on (default 127.0.0.1: reached
	// with ssh -L); DashboardPort its port (0: one the OS picks).
	DashboardHost string
	DashboardPort int
	// NoDashboard serves no dashboard and no /metrics; the recorder records all the same
	// (--dashboard=false).
	NoDashboard bool
	// ReportFile, when set, receives the end-of-job report as JSON; Quiet keeps it off stderr.
	ReportFile string
	Quiet      bool
	// LogLines and LogBytes bound the worker lines each node's agent keeps of its own
	// (--log-lines, --log-bytes; 0: obs.DefaultMaxLogLines, obs.DefaultMaxLogBytes).
	LogLines, LogBytes int
}

// newRecorder is the head node's recorder, or nil when observability is off.
func newRecorder(o ObserveOptions, stdout, stderr *os.File) *obs.Recorder {
	if o.Off {
		return nil
	}
	var opts []obs.Option
	if o.LogLines > 0 {
		opts = append(opts, obs.WithMaxLogLines(o.LogLines))
	}
	if o.LogBytes > 0 {
		opts = append(opts, obs.WithMaxLogBytes(o.LogBytes))
	}
	r := obs.NewRecorder(opts...)
	if stdout == nil {
		stdout = os.Stdout
	}
	if stderr == nil {
		stderr = os.Stderr
	}
	r.SetLogEcho(obs.EchoTo(stdout, stderr)) // the lines of a driver that reads none (Go)
	return r
}

// startDashboard serves the dashboard and /metrics behind a token made for this cluster and
// kept in the session directory (0600, like the secret). A dashboard that cannot listen is
// said at Warn; the cluster runs on without it.
func (c *Cluster) startDashboard(o ObserveOptions) error {
	if c.rec == nil || o.NoDashboard {
		return nil
	}
	host := o.DashboardHost
	if host == "" {
		host = "127.0.0.1"
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		c.log.Warn("the dashboard listens beyond this node's loopback; its token travels in clear HTTP there, so reach it through an ssh tunnel where the network is not trusted",
			"dashboard_host", host)
	}
	token := obs.NewToken()
	if err := c.sess.WriteFile(obs.TokenFile, []byte(token+"\n")); err != nil {
		return fmt.Errorf("write the dashboard token: %w", err)
	}
	srv := obs.NewServer(c.log.Named("dashboard"), c.rec, c.agent, token)
	if err := srv.Start(host, o.DashboardPort); err != nil {
		c.log.Warn("no dashboard for this cluster", "error", err)
		return nil
	}
	c.dash = srv
	c.rec.SetDashboard(srv.URL(), token)
	c.log.Debug("dashboard serving", "url", srv.URL())
	return nil
}

// Recorder is the head node's recorder (nil when observability is off).
func (c *Cluster) Recorder() *obs.Recorder { return c.rec }

// DashboardURL is where the dashboard serves ("" when it does not).
func (c *Cluster) DashboardURL() string {
	if c.dash == nil {
		return ""
	}
	return c.dash.URL()
}

// WriteReport prints the end-of-job report on w (unless o.Quiet, or no task was submitted) and
// writes it as JSON to o.ReportFile (when set). Without a recorder it says why there is none.
func (c *Cluster) WriteReport(w io.Writer, o ObserveOptions) error {
	if c.rec == nil {
		if o.ReportFile != "" {
			return fmt.Errorf("--report %s: observability is off (--observability=off), so there is nothing to report", o.ReportFile)
		}
		return nil
	}
	rep := c.rec.Report()
	if !o.Quiet && rep.Tasks+rep.Actors+rep.ActorCalls > 0 { // a driver that used no task needs no report
		rep.Write(w)
	}
	if o.ReportFile != "" {
		b, _ := json.MarshalIndent(rep, "", "  ")
		if err := os.WriteFile(o.ReportFile, append(b, '\n'), 0o644); err != nil {
			return fmt.Errorf("--report: write %s: %w", o.ReportFile, err)
		}
	}
	return nil
}
