package yarn

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// AppType is the application type shoal's applications carry.
const AppType = "SHOAL"

// SubmitOptions describe a shoal application.
type SubmitOptions struct {
	Name        string   // application name (default: "shoal: " + the command)
	Queue       string   // YARN queue (default: the cluster's default for the user)
	Tags        []string // application tags
	NodeLabel   string   // node label expression for every container
	MaxAttempts int      // ApplicationMaster attempts (default 1: a driver is not rerun unasked)

	Containers int   // member containers, each running one agent (the AM's container is extra)
	MemoryMB   int64 // each member container's memory
	VCores     int32 // each member container's virtual cores
	AMMemoryMB int64 // the ApplicationMaster container's memory (head, agent and driver)
	AMVCores   int32

	Files []string // local files every container gets in its working directory
	// Archives (.tar.gz, .tgz, .tar, .zip, .jar; "path#name" names the directory) are unpacked
	// by the NodeManager into a directory of every container's working directory: a Python
	// environment, for instance.
	Archives []string
	Env      map[string]string // extra environment for the driver and the agents

	SchedulerAddress string        // the RM's scheduler address, which containers are not told
	Self             string        // the shoal binary shipped to the containers (default: this one)
	JoinTimeout      time.Duration // how long the AM waits for all agents to join
	MaxReplacements  int           // containers replaced after they die, in all (default: Containers)
	LogLevel         string        // the AM's and agents' log level
	// RequireRPCPrivacy makes the AM refuse to start members unless its connections to the
	// ResourceManager and each NodeManager are encrypted (hadoop.rpc.protection=privacy): the
	// members' launch context carries the cluster's secret.
	RequireRPCPrivacy bool
	// InsecureDataPlane moves objects and collectives between containers in clear; the
	// control plane stays in TLS.
	InsecureDataPlane bool
	// StateDir, an absolute path on the ApplicationMaster's node (a shared file system, to
	// read it from elsewhere), keeps the head's database after the application ends.
	StateDir string
	// HeartbeatTimeout is how long a silent container's agent has before the head gives it
	// up (zero: the default; negative: no heartbeats); see launcher.Options.
	HeartbeatTimeout time.Duration
	// Quiet: no end-of-job report in driver.err (docs/observability.md).
	Quiet bool
	// HDFS, when set, stages the shipped files on HDFS (hdfs:// resources, StagingDir) instead
	// of naming them as file:// resources, which only work on a file system every node mounts.
	HDFS *WebHDFS

	Argv []string // the driver command; relative paths to existing files are shipped
}

// AMSpec is what the client tells the ApplicationMaster, in SHOAL_YARN_SPEC (JSON).
type AMSpec struct {
	Containers       int                      `json:"containers"`
	MemoryMB         int64                    `json:"memory_mb"`
	VCores           int32                    `json:"vcores"`
	AMMemoryMB       int64                    `json:"am_memory_mb"`
	AMVCores         int32                    `json:"am_vcores"`
	NodeLabel        string                   `json:"node_label,omitempty"`
	SchedulerAddress string                   `json:"scheduler_address"`
	JoinTimeoutMS    int64                    `json:"join_timeout_ms"`
	HeartbeatMS      int64                    `json:"heartbeat_timeout_ms,omitempty"`
	MaxReplacements  int                      `json:"max_replacements"`
	Driver           []string                 `json:"driver"`
	Env              map[string]string        `json:"env,omitempty"`
	LocalResources   map[string]LocalResource `json:"local_resources"`
	LogLevel         string                   `json:"log_level,omitempty"`
	User             string                   `json:"user"`
	Staging          string                   `json:"staging,omitempty"` // removed by the AM at the end
	RequirePrivacy   bool                     `json:"require_rpc_privacy,omitempty"`
	// InsecureData: the cluster's data plane in clear (`--insecure-data-plane`).
	InsecureData bool `json:"insecure_data_plane,omitempty"`
	// StateDir: where the head keeps its database (`--state-dir`); empty: not kept.
	StateDir string `json:"state_dir,omitempty"`
	// Quiet: no end-of-job report at the end of driver.err (`--quiet`).
	Quiet bool `json:"quiet,omitempty"`
}

// SpecEnv is the environment variable that carries the AMSpec (JSON, base64-encoded).
const SpecEnv = "SHOAL_YARN_SPEC"

// fileResource describes a local file as a YARN local resource: a file:// URL with the file's
// exact size and modification time, which the NodeManager checks before it copies it.
func fileResource(path string) (LocalResource, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return LocalResource{}, err
	}
	st, err := os.Stat(abs)
	if err != nil {
		return LocalResource{}, fmt.Errorf("ship %s: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		return LocalResource{}, fmt.Errorf("ship %s: not a regular file", path)
	}
	return LocalResource{URL: "file://" + abs, Type: "FILE", Visibility: "APPLICATION",
		Size: st.Size(), Timestamp: st.ModTime().UnixMilli()}, nil
}

// Build turns the options into a submission for application id (from NewApplication), checking
// everything a user can get wrong before anything reaches YARN.
func (o *SubmitOptions) Build(ctx context.Context, id, user string) (*Submission, error) {
	if len(o.Argv) == 0 {
		return nil, errors.New("no driver command; usage: shoal yarn submit [options] -- python job.py")
	}
	if o.Containers < 1 {
		return nil, fmt.Errorf("--containers %d: ask for at least 1 container", o.Containers)
	}
	if o.MemoryMB < 1 || o.VCores < 1 || o.AMMemoryMB < 1 || o.AMVCores < 1 {
		return nil, errors.New("--memory, --vcores, --am-memory and --am-vcores must be positive")
	}
	if o.SchedulerAddress == "" {
		return nil, errors.New("the ResourceManager's scheduler address is unknown: set --scheduler-address (SHOAL_YARN_SCHEDULER_ADDRESS), e.g. rm.example.com:8030, or point YARN_CONF_DIR at the cluster's yarn-site.xml")
	}
	self := o.Self
	if self == "" {
		var err error
		if self, err = os.Executable(); err != nil {
			return nil, fmt.Errorf("find the shoal binary to ship: %w", err)
		}
	}
	res := map[string]LocalResource{}
	from := map[string]string{} // name -> local path
	// ext is an archive's extension, "" for a plain file: the NodeManager unpacks an ARCHIVE by
	// the extension of its URL, so a staged archive keeps it.
	add := func(name, path string, ext ...string) error {
		abs, err := filepath.Abs(path)
		if err != nil {
			return err
		}
		if old, ok := from[name]; ok {
			if old != abs {
				return fmt.Errorf("two files would be shipped as %q (%s and %s); rename one", name, old, path)
			}
			return nil
		}
		var r LocalResource
		archive := len(ext) > 0
		if o.HDFS != nil {
			remote := StagingDir(user, id) + "/" + name
			if archive {
				remote += ext[0]
			}
			r, err = o.HDFS.Stage(ctx, abs, remote)
		} else {
			r, err = fileResource(abs)
		}
		if err != nil {
			return err
		}
		if archive {
			r.Type = "ARCHIVE"
		}
		from[name], res[name] = abs, r
		return nil
	}
	if err := add("shoal", self); err != nil {
		return nil, err
	}
	for _, f := range o.Files {
		if f == "" {
			continue
		}
		if err := add(filepath.Base(f), f); err != nil {
			return nil, fmt.Errorf("--files: %w", err)
		}
	}
	for _, a := range o.Archives {
		if a == "" {
			continue
		}
		path, name, ext, err := archiveName(a)
		if err != nil {
			return nil, fmt.Errorf("--archives: %w", err)
		}
		if err := add(name, path, ext); err != nil {
			return nil, fmt.Errorf("--archives: %w", err)
		}
	}
	// A driver argument that is a relative path to an existing file is shipped and rewritten to
	// the name it has in the container's working directory.
	argv := append([]string(nil), o.Argv...)
	for i, a := range argv {
		if a == "" || filepath.IsAbs(a) || strings.HasPrefix(a, "-") {
			continue
		}
		st, err := os.Stat(a)
		if err != nil || !st.Mode().IsRegular() || (i == 0 && !strings.Contains(a, "/")) {
			continue
		}
		base := filepath.Base(a)
		if err := add(base, a); err != nil {
			return nil, err
		}
		argv[i] = base
		if i == 0 {
			argv[i] = "./" + base
		}
	}
	replace := o.MaxReplacements
	if replace < 0 {
		replace = 0
	}
	spec := AMSpec{Containers: o.Containers, MemoryMB: o.MemoryMB, VCores: o.VCores, AMMemoryMB: o.AMMemoryMB,
		AMVCores: o.AMVCores, NodeLabel: o.NodeLabel, SchedulerAddress: o.SchedulerAddress,
		JoinTimeoutMS: o.JoinTimeout.Milliseconds(), MaxReplacements: replace, Driver: argv, Env: o.Env,
		LocalResources: res, LogLevel: o.LogLevel, User: user, RequirePrivacy: o.RequireRPCPrivacy,
		InsecureData: o.InsecureDataPlane, StateDir: o.StateDir, HeartbeatMS: o.HeartbeatTimeout.Milliseconds(), Quiet: o.Quiet}
	if o.HDFS != nil {
		spec.Staging = encodeStaging(o.HDFS, StagingDir(user, id))
	}
	b, err := json.Marshal(spec)
	if err != nil {
		return nil, err
	}
	// base64: the NodeManager writes `export K="V"` into the launch script without escaping
	env := map[string]string{SpecEnv: base64.StdEncoding.EncodeToString(b)}
	for k, v := range o.Env {
		env[k] = v
	}
	name := o.Name
	if name == "" {
		name = "shoal: " + strings.Join(o.Argv, " ")
		if len(name) > 120 {
			name = name[:120]
		}
	}
	attempts := o.MaxAttempts
	if attempts <= 0 {
		attempts = 1
	}
	logLevel := o.LogLevel
	if logLevel == "" {
		logLevel = "info"
	}
	return &Submission{ID: id, Name: name, Type: AppType, Queue: o.Queue, Tags: o.Tags, NodeLabel: o.NodeLabel,
		MaxAttempts: attempts, AMResource: Resource{MemoryMB: o.AMMemoryMB, VCores: o.AMVCores},
		AM: ContainerSpec{
			Commands:       []string{"./shoal", "--log-level", logLevel, "yarn", "am", "1><LOG_DIR>/stdout", "2><LOG_DIR>/stderr"},
			Environment:    env,
			LocalResources: res,
		}}, nil
}

// archiveName splits "path[#name]" and checks that YARN can unpack the file; the default name
// is the file's name without its archive extension, ext.
func archiveName(a string) (path, name, ext string, err error) {
	path, name, _ = strings.Cut(a, "#")
	base := filepath.Base(path)
	for _, e := range []string{".tar.gz", ".tgz", ".tar", ".zip", ".jar"} {
		if strings.HasSuffix(strings.ToLower(base), e) {
			ext = e
			break
		}
	}
	if ext == "" {
		return "", "", "", fmt.Errorf("%s: YARN unpacks only .tar.gz, .tgz, .tar, .zip and .jar archives; ship other files with --files", path)
	}
	if name == "" {
		name = base[:len(base)-len(ext)]
	}
	if name == "" || strings.ContainsAny(name, "/\\") || name == "." || name == ".." {
		return "", "", "", fmt.Errorf("%q: the name after # must be a plain directory name", a)
	}
	return path, name, ext, nil
}

// SubmitShoal asks for a new application, checks the sizes against the cluster's largest container
// and submits. It returns the application id.
func (c *Client) SubmitShoal(ctx context.Context, o *SubmitOptions) (string, error) {
	na, err := c.NewApplication(ctx)
	if err != nil {
		return "", err
	}
	max := na.MaxSize
	if max.MemoryMB > 0 && (o.MemoryMB > max.MemoryMB || int64(o.VCores) > int64(max.VCores)) {
		return "", fmt.Errorf("containers of %d MB and %d vcores are larger than this cluster's largest (%s); lower --memory or --vcores",
			o.MemoryMB, o.VCores, max)
	}
	if max.MemoryMB > 0 && (o.AMMemoryMB > max.MemoryMB || int64(o.AMVCores) > int64(max.VCores)) {
		return "", fmt.Errorf("the ApplicationMaster's container (%d MB, %d vcores) is larger than this cluster's largest (%s); lower --am-memory or --am-vcores",
			o.AMMemoryMB, o.AMVCores, max)
	}
	s, err := o.Build(ctx, na.ID, c.user)
	if err != nil {
		return "", err
	}
	if err := c.Submit(ctx, s); err != nil {
		if o.HDFS != nil {
			o.HDFS.Delete(ctx, StagingDir(c.user, na.ID))
		}
		return "", err
	}
	return na.ID, nil
}

// Progress encoding: while agents join, the AM reports progress = 0.5*joined/containers; from
// the driver's start on it reports 0.5 or more. The REST API shows it as a percentage.
const driverRunningProgress = 0.5

// ProgressFor is the progress the AM reports with joined of want agents in, or with the driver
// running.
func ProgressFor(joined, want int, driverRunning bool) float32 {
	if driverRunning || want <= 0 {
		return driverRunningProgress
	}
	return float32(driverRunningProgress * float64(joined) / float64(want))
}

// Joined reads the number of joined agents back from a report's progress (percent), and whether
// the driver runs.
func Joined(progressPercent float64, want int) (joined int, driverRunning bool) {
	if progressPercent >= driverRunningProgress*100-1e-6 {
		return want, true
	}
	return int(math.Round(progressPercent / (driverRunningProgress * 100) * float64(want))), false
}

var driverExitRE = regexp.MustCompile(`driver exited with code (\d+)`)

// DriverExitCode finds the driver's exit code in the application's diagnostics, where the AM
// puts it when it unregisters.
func DriverExitCode(diag string) (int, bool) {
	m := driverExitRE.FindAllStringSubmatch(diag, -1)
	if len(m) == 0 {
		return 0, false
	}
	n, err := strconv.Atoi(m[len(m)-1][1])
	if err != nil || n > 255 {
		return 0, false
	}
	return n, true
}

// ExitCodeKilled is what `shoal yarn submit` returns for a killed application (128+SIGTERM,
// the signal YARN stops the ApplicationMaster with).
const ExitCodeKilled = 143

// ExitCode maps a finished application to the exit code `shoal yarn submit` returns: the
// driver's, 143 when killed, 1 when the application failed before the driver could finish.
func ExitCode(a *App) int {
	if code, ok := DriverExitCode(a.Diagnostics); ok {
		return code
	}
	switch {
	case a.State == "KILLED" || a.FinalStatus == "KILLED":
		return ExitCodeKilled
	case a.FinalStatus == "SUCCEEDED":
		return 0
	}
	return 1
}

// Follow polls the application until it ends, writing a progress line to w whenever its
// state, its granted containers or its joined agents change. want is the number of member
// containers asked for.
func (c *Client) Follow(ctx context.Context, id string, want int, every time.Duration, w io.Writer) (*App, error) {
	if every <= 0 {
		every = 500 * time.Millisecond
	}
	last := ""
	fails := 0
	for {
		a, err := c.App(ctx, id)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			if fails++; fails > 20 || errors.Is(err, ErrNotFound) {
				return nil, err
			}
		} else {
			fails = 0
			line := ProgressLine(a, want)
			if line != last && w != nil {
				fmt.Fprintf(w, "shoal: %s %s\n", id, line)
				last = line
			}
			if a.Terminal() {
				return a, nil
			}
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(every):
		}
	}
}

// ProgressLine says where an application stands, for a person.
func ProgressLine(a *App, want int) string {
	switch a.State {
	case "NEW", "NEW_SAVING", "SUBMITTED":
		return a.State
	case "ACCEPTED":
		return fmt.Sprintf("ACCEPTED (queue %s): waiting for the ApplicationMaster's container", a.Queue)
	case "RUNNING":
		granted := a.RunningContainers - 1 // the AM's own
		if granted < 0 {
			granted = 0
		}
		joined, driver := Joined(a.Progress, want)
		if driver {
			return fmt.Sprintf("RUNNING: %d/%d agents joined, driver running", want, want)
		}
		return fmt.Sprintf("RUNNING: containers %d/%d granted, agents %d/%d joined", granted, want, joined, want)
	}
	s := fmt.Sprintf("%s (%s)", a.State, a.FinalStatus)
	if code, ok := DriverExitCode(a.Diagnostics); ok {
		s += fmt.Sprintf(": driver exit code %d", code)
	} else if d := firstLine(a.Diagnostics); d != "" {
		s += ": " + d
	}
	return s
}
