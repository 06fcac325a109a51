package yarn

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/shoal-hpc/shoal/launcher"
	"github.com/shoal-hpc/shoal/yarn/ipc"
)

// ApplicationMaster lifecycle (`shoal yarn am`, in the AM container):
//
//	read spec + token file ─> register with the RM ─> start head + agent (this container)
//	  ─> ask for N containers ─> start `shoal yarn agent` in each (NM) ─> wait for N joins
//	  ─> run the driver ─> STOP{code} to members ─> stop every container ─> unregister
//	     (SUCCEEDED for code 0, FAILED otherwise; "driver exited with code N" in diagnostics)
//
// A member container that ends before the driver does is reported (log, diagnostics) and
// replaced while replacements last. SIGTERM (the application was killed) stops the driver and
// the agents at once; YARN kills the member containers itself.

// RosterFile is the ApplicationMaster's log file that lists every member container it was
// granted: "<container id> <node web address> <node address>" per line.
const RosterFile = "containers.txt"

// maxAllocateFailures is how many heartbeats in a row may fail before the AM gives up.
const maxAllocateFailures = 60

// amPriority is the priority of the member container asks.
const amPriority = 1

// member is one member container.
type member struct {
	c       ipc.Container
	started bool
	joined  bool
}

type startResult struct {
	id  string
	err error
}

// RunAM runs the ApplicationMaster in this container and returns its process exit code.
func RunAM(ctx context.Context, log hclog.Logger) int {
	code, err := runAM(ctx, log)
	if err != nil {
		log.Error("application master failed", "error", err)
		fmt.Fprintln(os.Stderr, "shoal yarn am:", err)
	}
	return code
}

func readSpec() (*AMSpec, error) {
	raw := os.Getenv(SpecEnv)
	if raw == "" {
		return nil, fmt.Errorf("%s is not set: `shoal yarn am` runs only as the ApplicationMaster of an application `shoal yarn submit` made", SpecEnv)
	}
	return parseSpec(raw)
}

// parseSpec decodes SHOAL_YARN_SPEC (base64 of JSON) and checks what the AM cannot do without.
func parseSpec(raw string) (*AMSpec, error) {
	var s AMSpec
	b, err := base64.StdEncoding.DecodeString(raw)
	if err != nil {
		return nil, fmt.Errorf("decode %s: %w", SpecEnv, err)
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("parse %s: %w", SpecEnv, err)
	}
	if s.Containers < 1 || len(s.Driver) == 0 || s.SchedulerAddress == "" {
		return nil, fmt.Errorf("%s lacks containers, driver or scheduler address", SpecEnv)
	}
	if s.JoinTimeoutMS <= 0 {
		s.JoinTimeoutMS = 5 * 60 * 1000
	}
	return &s, nil
}

// listenIP is the address this node's agent listens on, which member containers on other hosts
// must reach: what NM_HOST resolves to (IPv4 first). When that is a loopback address although the
// ResourceManager is elsewhere (Debian maps the host name to 127.0.1.1), it is instead this
// host's address on the route to the ResourceManager's scheduler.
func listenIP(host, scheduler string) (string, error) {
	var ips []net.IP
	if ip := net.ParseIP(host); ip != nil {
		ips = []net.IP{ip}
	} else {
		var err error
		if ips, err = net.LookupIP(host); err != nil || len(ips) == 0 {
			return "", fmt.Errorf("resolve this node's name %q (NM_HOST): %v", host, err)
		}
	}
	return pickListenIP(ips, func() (net.IP, error) {
		c, err := net.Dial("udp", scheduler) // no packet is sent: only the route is looked up
		if err != nil {
			return nil, err
		}
		defer c.Close()
		return c.LocalAddr().(*net.UDPAddr).IP, nil
	}), nil
}

// pickListenIP chooses among the addresses of this node's name; route gives this host's address
// towards the ResourceManager.
func pickListenIP(ips []net.IP, route func() (net.IP, error)) string {
	best := ips[0]
	for _, ip := range ips {
		if ip.To4() != nil {
			best = ip
			break
		}
	}
	if best.IsLoopback() {
		if r, err := route(); err == nil && r != nil && !r.IsLoopback() {
			return r.String()
		}
	}
	return best.String()
}

func runAM(ctx context.Context, log hclog.Logger) (int, error) {
	spec, err := readSpec()
	if err != nil {
		return 2, err
	}
	self, err := ipc.ParseContainerID(os.Getenv("CONTAINER_ID"))
	if err != nil {
		return 2, fmt.Errorf("this container's id: %w", err)
	}
	creds, err := ipc.ReadTokenFile(os.Getenv("HADOOP_TOKEN_FILE_LOCATION"))
	if err != nil {
		return 2, fmt.Errorf("read the ApplicationMaster's tokens: %w", err)
	}
	amrm, ok := creds.ByKind(ipc.KindAMRMToken)
	if !ok {
		return 2, fmt.Errorf("the token file has no %s token", ipc.KindAMRMToken)
	}
	nmHost := os.Getenv("NM_HOST")
	ip, err := listenIP(nmHost, spec.SchedulerAddress)
	if err != nil {
		return 1, err
	}
	log = log.With("app", self.Attempt.App.String())

	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sigs)

	rm, err := ipc.DialAMRM(ctx, spec.SchedulerAddress, spec.User, amrm, log.Named("amrm"))
	if err != nil {
		return 1, fmt.Errorf("connect to the ResourceManager's scheduler at %s (--scheduler-address): %w", spec.SchedulerAddress, err)
	}
	defer rm.Close()
	max, err := rm.Register(ctx, nmHost, 0, "")
	if err != nil {
		return 1, fmt.Errorf("register the ApplicationMaster: %w", err)
	}
	finish := func(status ipc.FinalStatus, diag string) {
		fctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := rm.Finish(fctx, status, diag, ""); err != nil {
			log.Error("unregister", "error", err)
		}
	}
	// the members' launch contexts carry the cluster's secret to the NodeManagers: in clear on
	// the network unless Hadoop RPC is encrypted (hadoop.rpc.protection=privacy, cluster-wide)
	if p := rm.Protection(); p < ipc.Privacy {
		if spec.RequirePrivacy {
			msg := fmt.Sprintf("shoal: the ResourceManager negotiated hadoop.rpc.protection=%s, and --require-rpc-privacy needs privacy "+
				"(the containers' launch contexts carry the cluster's secret): set hadoop.rpc.protection=privacy on the cluster, or submit without --require-rpc-privacy", p)
			finish(ipc.Failed, msg)
			return 1, errors.New(msg)
		}
		log.Warn("Hadoop RPC is not encrypted on this cluster: the cluster's secret goes to the NodeManagers in clear; set hadoop.rpc.protection=privacy to encrypt it, --require-rpc-privacy to insist",
			"protection", p.String())
	} else {
		log.Info("Hadoop RPC is encrypted", "protection", p.String())
	}
	if max.MemoryMB > 0 && (spec.MemoryMB > max.MemoryMB || spec.VCores > max.VCores) {
		msg := fmt.Sprintf("shoal: containers of %d MB, %d vcores are larger than the cluster's largest (%d MB, %d vcores)",
			spec.MemoryMB, spec.VCores, max.MemoryMB, max.VCores)
		finish(ipc.Failed, msg)
		return 1, errors.New(msg)
	}

	logDir := "."
	if d := strings.Split(os.Getenv("LOG_DIRS"), ",")[0]; d != "" {
		logDir = d
	}
	dout, derr, err := driverOutput(logDir)
	if err != nil {
		finish(ipc.Failed, "shoal: "+err.Error())
		return 1, err
	}
	defer dout.Close()
	defer derr.Close()

	c, err := launcher.Start(log.Named("head"), launcher.Options{NumCPUs: float64(spec.AMVCores),
		Memory: spec.AMMemoryMB << 20, ListenTCP: net.JoinHostPort(ip, "0"), Stdout: dout, Stderr: derr,
		InsecureDataPlane: spec.InsecureData, StateDir: spec.StateDir, Kind: "yarn", Command: spec.Driver,
		HeartbeatTimeout: time.Duration(spec.HeartbeatMS) * time.Millisecond})
	if err != nil {
		finish(ipc.Failed, "shoal: start the head: "+err.Error())
		return 1, fmt.Errorf("start the head: %w", err)
	}
	defer c.Close()
	head := c.Agent().TCPAddr()
	log.Info("head started", "addr", head, "cluster", c.ID, "containers", spec.Containers)

	roster, err := os.OpenFile(filepath.Join(logDir, RosterFile), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		finish(ipc.Failed, "shoal: "+err.Error())
		return 1, fmt.Errorf("open the container roster: %w", err)
	}
	defer roster.Close()
	tokens, err := memberCredentials(creds, []byte(c.Secret))
	if err != nil {
		finish(ipc.Failed, "shoal: "+err.Error())
		return 1, fmt.Errorf("the members' credentials: %w", err)
	}
	am := &appMaster{log: log, spec: spec, rm: rm, cluster: c, head: head, self: self, roster: roster,
		members: map[string]*member{}, nms: map[string]*ipc.NMClient{}, started: make(chan startResult, 64),
		tokens: tokens}
	defer am.closeNMs()
	code, status, diag := am.run(ctx, sigs, dout, derr)
	if status != ipc.Killed { // obs: the end-of-job report ends driver.err, which `yarn submit` follows,
		// and is kept as JSON beside it for `yarn submit --report FILE` and `yarn logs --file`
		if err := c.WriteReport(derr, launcher.ObserveOptions{Quiet: spec.Quiet, ReportFile: filepath.Join(logDir, ReportFile)}); err != nil {
			log.Debug("no report file", "error", err)
		}
	}
	if status == ipc.Killed {
		// killed by YARN (SIGTERM) or told to shut down: no unregistering, just leave nothing behind
		am.stopAll(code, diag)
		removeStaging(log, spec, 200*time.Millisecond) // YARN's SIGKILL follows soon
		log.Info("stopped", "reason", diag)
		return code, nil
	}
	am.stopAll(am.driverCode, diag)
	finish(status, diag)
	log.Info("unregistered", "status", status, "diagnostics", diag)
	removeStaging(log, spec, 30*time.Second)
	return 0, nil
}

// removeStaging deletes the files the client staged on HDFS for this application.
func removeStaging(log hclog.Logger, spec *AMSpec, within time.Duration) {
	if spec.Staging == "" {
		return
	}
	w, dir, err := decodeStaging(spec.Staging, spec.User)
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), within)
		err = w.Delete(ctx, dir)
		cancel()
	}
	if err != nil {
		log.Warn("remove the staged files", "error", err)
	}
}

func driverOutput(dir string) (*os.File, *os.File, error) {
	out, err := os.OpenFile(filepath.Join(dir, "driver.out"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("open the driver's output file: %w", err)
	}
	errf, err := os.OpenFile(filepath.Join(dir, "driver.err"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		out.Close()
		return nil, nil, fmt.Errorf("open the driver's error file: %w", err)
	}
	return out, errf, nil
}

type appMaster struct {
	log     hclog.Logger
	spec    *AMSpec
	rm      *ipc.AMRMClient
	cluster *launcher.Cluster
	head    string
	self    ipc.ContainerID
	tokens  []byte   // the members' Credentials (memberCredentials): their token file, with the secret
	roster  *os.File // RosterFile: every member container and its node, for `shoal yarn logs`

	members     map[string]*member // live member containers by id
	outstanding int                // asked for, not yet received
	replaced    int
	lost        []string // what happened to containers that ended early
	started     chan startResult
	release     []ipc.ContainerID
	driverCode  int // the driver's exit code, passed on to the members with STOP

	nmMu sync.Mutex
	nms  map[string]*ipc.NMClient
}

// run drives the application until the driver exits, the application is killed, or the
// agents do not all join in time. It returns the AM's exit code, final status and diagnostics.
func (a *appMaster) run(ctx context.Context, sigs <-chan os.Signal, dout, derr *os.File) (int, ipc.FinalStatus, string) {
	a.outstanding = a.spec.Containers
	joinDeadline := time.Now().Add(time.Duration(a.spec.JoinTimeoutMS) * time.Millisecond)
	var driver *exec.Cmd
	driverDone := make(chan int, 1)
	lastJoined := -1
	failures := 0
	tick := time.NewTimer(0)
	defer tick.Stop()
	for {
		select {
		case s := <-sigs:
			a.log.Info("signal: stopping", "signal", s.String())
			if driver != nil && driver.Process != nil {
				driver.Process.Signal(syscall.SIGTERM)
			}
			return 128 + int(s.(syscall.Signal)), ipc.Killed, "shoal: the application master got " + s.String()
		case <-ctx.Done():
			return 1, ipc.Killed, "shoal: cancelled"
		case code := <-driverDone:
			a.driverCode = code
			a.log.Info("driver exited", "code", code)
			return 0, statusFor(code), a.diagnostics(fmt.Sprintf("shoal: driver exited with code %d", code))
		case r := <-a.started:
			m := a.members[r.id]
			if m == nil {
				continue
			}
			if r.err != nil {
				a.log.Error("start agent container", "container", r.id, "error", r.err)
				delete(a.members, r.id)
				a.containerLost(r.id, "could not start: "+r.err.Error())
				continue
			}
			m.started = true
		case <-tick.C:
			joined := a.checkJoins()
			res, err := a.rm.Allocate(ctx, a.asks(), a.takeRelease(), ProgressFor(joined, a.spec.Containers, driver != nil))
			if errors.Is(err, ipc.ErrShutdown) {
				return 1, ipc.Killed, "shoal: the ResourceManager told the application master to shut down"
			}
			if err != nil {
				a.log.Error("allocate", "error", err)
				if ctx.Err() != nil {
					return 1, ipc.Killed, "shoal: cancelled"
				}
				// The RM expires an AM that is silent for 10 minutes; give up well before, without
				// unregistering (that needs the RM too), so that YARN sees the attempt fail.
				if failures++; failures >= maxAllocateFailures {
					if driver != nil && driver.Process != nil {
						driver.Process.Signal(syscall.SIGTERM)
					}
					return 1, ipc.Killed, fmt.Sprintf("shoal: lost the ResourceManager: %d heartbeats failed, the last with: %v", failures, err)
				}
			} else {
				failures = 0
				a.handleAllocation(res)
			}
			if joined != lastJoined {
				a.log.Info("agents joined", "joined", joined, "want", a.spec.Containers, "containers", len(a.members))
				lastJoined = joined
			}
			if driver == nil && joined >= a.spec.Containers {
				a.log.Info("all agents joined; starting the driver", "driver", strings.Join(a.spec.Driver, " "))
				var err error
				driver, err = a.startDriver(dout, derr, driverDone)
				if err != nil {
					fmt.Fprintln(derr, "shoal:", err)
					return 0, ipc.Failed, a.diagnostics(fmt.Sprintf("shoal: %v; driver exited with code 127", err))
				}
				// the allocate right after reports the driver as running
				tick.Reset(10 * time.Millisecond)
				continue
			}
			if driver == nil && time.Now().After(joinDeadline) {
				return 0, ipc.Failed, a.diagnostics(fmt.Sprintf("shoal: timed out after %s waiting for agents: %d/%d joined, %d containers granted; is the cluster full, or can containers reach the head at %s?",
					time.Duration(a.spec.JoinTimeoutMS)*time.Millisecond, joined, a.spec.Containers, len(a.members), a.head))
			}
			every := time.Second
			if driver == nil || a.outstanding > 0 {
				every = 100 * time.Millisecond
			}
			tick.Reset(every)
		}
	}
}

func statusFor(code int) ipc.FinalStatus {
	if code == 0 {
		return ipc.Succeeded
	}
	return ipc.Failed
}

func (a *appMaster) diagnostics(first string) string {
	var b strings.Builder
	b.WriteString(first)
	if len(a.lost) > 0 {
		fmt.Fprintf(&b, "; %d container(s) lost, %d replaced: %s", len(a.lost), a.replaced, strings.Join(a.lost, "; "))
	}
	return b.String()
}

func (a *appMaster) asks() []ipc.Ask {
	return []ipc.Ask{{Priority: amPriority, NumContainers: int32(a.outstanding), NodeLabel: a.spec.NodeLabel,
		Resource: ipc.Resource{MemoryMB: a.spec.MemoryMB, VCores: a.spec.VCores}}}
}

func (a *appMaster) takeRelease() []ipc.ContainerID {
	r := a.release
	a.release = nil
	return r
}

// checkJoins marks the members whose agents have joined the head and returns how many have.
func (a *appMaster) checkJoins() int {
	alive := map[string]bool{}
	for _, n := range a.cluster.Agent().Nodes() {
		alive[n] = true
	}
	k := 0
	for id, m := range a.members {
		if alive[id] {
			if !m.joined {
				a.log.Info("agent joined", "container", id, "node", m.c.NodeAddr())
			}
			m.joined = true
			k++
		}
	}
	return k
}

func (a *appMaster) handleAllocation(res *ipc.AllocateResult) {
	for _, c := range res.Allocated {
		id := c.ID.String()
		if a.outstanding <= 0 {
			a.log.Debug("releasing a container beyond the ask", "container", id)
			a.release = append(a.release, c.ID)
			continue
		}
		a.outstanding--
		a.members[id] = &member{c: c}
		a.log.Info("container granted", "container", id, "node", c.NodeAddr())
		fmt.Fprintf(a.roster, "%s %s %s\n", id, c.NodeHTTPAddress, c.NodeAddr())
		go func(c ipc.Container) {
			a.started <- startResult{id: c.ID.String(), err: a.startAgent(c)}
		}(c)
	}
	for _, st := range res.Completed {
		id := st.ID.String()
		if _, ok := a.members[id]; !ok {
			continue
		}
		delete(a.members, id)
		why := fmt.Sprintf("exit status %d", st.ExitStatus)
		if d := firstLine(st.Diagnostics); d != "" {
			why += ": " + d
		}
		a.containerLost(id, why)
	}
}

// containerLost records a member container that ended early and asks for a replacement while
// the limit allows.
func (a *appMaster) containerLost(id, why string) {
	note := fmt.Sprintf("container %s ended (%s)", id, why)
	if a.replaced < a.spec.MaxReplacements {
		a.replaced++
		a.outstanding++
		note += fmt.Sprintf(", replaced (%d/%d)", a.replaced, a.spec.MaxReplacements)
		a.log.Warn("member container lost; asking for a replacement", "container", id, "why", why,
			"replacements", a.replaced, "limit", a.spec.MaxReplacements)
	} else {
		note += ", not replaced (replacement limit reached)"
		a.log.Error("member container lost; replacement limit reached", "container", id, "why", why, "limit", a.spec.MaxReplacements)
	}
	a.lost = append(a.lost, note)
}

func (a *appMaster) nm(ctx context.Context, addr string) (*ipc.NMClient, error) {
	a.nmMu.Lock()
	defer a.nmMu.Unlock()
	if n := a.nms[addr]; n != nil {
		return n, nil
	}
	tok, ok := a.rm.NMToken(addr)
	if !ok {
		return nil, fmt.Errorf("no NMToken for node %s", addr)
	}
	var opts []ipc.DialOption
	if a.spec.RequirePrivacy {
		opts = append(opts, ipc.RequireProtection(ipc.Privacy))
	}
	n, err := ipc.DialNM(ctx, addr, a.spec.User, tok, a.log.Named("nm"), opts...)
	if err != nil {
		return nil, err
	}
	a.nms[addr] = n
	return n, nil
}

func (a *appMaster) closeNMs() {
	a.nmMu.Lock()
	defer a.nmMu.Unlock()
	for _, n := range a.nms {
		n.Close()
	}
}

// launchContext is what a member container runs: `shoal yarn agent`, with the head's address in
// the environment and the cluster's secret in its token file.
func (a *appMaster) launchContext() (ipc.LaunchContext, error) {
	res := map[string]ipc.LocalResource{}
	for name, r := range a.spec.LocalResources {
		lr, err := toIPCResource(r)
		if err != nil {
			return ipc.LaunchContext{}, fmt.Errorf("local resource %s: %w", name, err)
		}
		res[name] = lr
	}
	env := map[string]string{}
	for k, v := range a.spec.Env {
		env[k] = v
	}
	env["SHOAL_YARN_HEAD"] = a.head
	env["SHOAL_YARN_CLUSTER"] = a.cluster.ID
	if a.spec.InsecureData {
		env["SHOAL_INSECURE_DATA_PLANE"] = "1" // every node must agree (docs/security.md)
	}
	env["SHOAL_YARN_MEMORY_MB"] = strconv.FormatInt(a.spec.MemoryMB, 10)
	env["SHOAL_YARN_VCORES"] = strconv.Itoa(int(a.spec.VCores))
	env["SHOAL_YARN_JOIN_TIMEOUT_MS"] = strconv.FormatInt(a.spec.JoinTimeoutMS, 10)
	level := a.spec.LogLevel
	if level == "" {
		level = "info"
	}
	return ipc.LaunchContext{
		Command:        []string{"./shoal", "--log-level", level, "yarn", "agent", "1><LOG_DIR>/stdout", "2><LOG_DIR>/stderr"},
		Env:            env,
		LocalResources: res,
		Tokens:         a.tokens,
	}, nil
}

func toIPCResource(r LocalResource) (ipc.LocalResource, error) {
	u, err := url.Parse(r.URL)
	if err != nil {
		return ipc.LocalResource{}, err
	}
	port := int32(-1)
	if p := u.Port(); p != "" {
		n, _ := strconv.Atoi(p)
		port = int32(n)
	}
	typ := ipc.File
	switch r.Type {
	case "ARCHIVE":
		typ = ipc.Archive
	case "PATTERN":
		typ = ipc.Pattern
	}
	vis := ipc.Application
	switch r.Visibility {
	case "PUBLIC":
		vis = ipc.Public
	case "PRIVATE":
		vis = ipc.Private
	}
	return ipc.LocalResource{URL: ipc.URL{Scheme: u.Scheme, Host: u.Hostname(), Port: port, File: u.Path, UserInfo: u.User.String()},
		Size: r.Size, Timestamp: r.Timestamp, Type: typ, Visibility: vis}, nil
}

func (a *appMaster) startAgent(c ipc.Container) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	lc, err := a.launchContext()
	if err != nil {
		return err
	}
	n, err := a.nm(ctx, c.NodeAddr())
	if err != nil {
		return err
	}
	return n.StartContainer(ctx, c, lc)
}

func (a *appMaster) startDriver(dout, derr *os.File, done chan<- int) (*exec.Cmd, error) {
	argv := a.spec.Driver
	path, err := exec.LookPath(argv[0])
	if err != nil {
		return nil, fmt.Errorf("run the driver %q: %w", argv[0], err)
	}
	cmd := exec.Command(path, argv[1:]...)
	cmd.Args = argv
	cmd.Env = append(os.Environ(), a.cluster.Env()...)
	cmd.Env = append(cmd.Env, "SHOAL_YARN_CONTAINERS="+strconv.Itoa(a.spec.Containers))
	cmd.Stdout, cmd.Stderr = dout, derr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start the driver %q: %w", argv[0], err)
	}
	go func() {
		err := cmd.Wait()
		code := launcher.ExitCode(cmd.ProcessState, err)
		a.cluster.CommandExited(cmd.Process.Pid, code)
		done <- code
	}()
	return cmd, nil
}

// stopAll tells the member agents to stop, then stops their containers through the
// NodeManagers, so that no agent outlives the application whatever STOP reached.
func (a *appMaster) stopAll(code int, why string) {
	a.cluster.Agent().StopMembers(code, why)
	ids := make([]string, 0, len(a.members))
	for id := range a.members {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	var wg sync.WaitGroup
	for _, id := range ids {
		m := a.members[id]
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			n, err := a.nm(ctx, m.c.NodeAddr())
			if err == nil {
				err = n.StopContainer(ctx, m.c.ID)
			}
			if err != nil {
				a.log.Warn("stop container", "container", id, "error", err)
			}
		}()
	}
	wg.Wait()
}
