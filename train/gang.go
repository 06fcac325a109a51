package train

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/shoal-hpc/shoal/client"
)

// Config configures Run.
type Config struct {
	Argv         []string           // the rank's command
	Ranks        int                // world size
	Resources    map[string]float64 // each rank's bundle
	Strategy     string             // PACK (default), SPREAD, STRICT_PACK, STRICT_SPREAD
	MaxRestarts  int                // restarts of the whole gang after a failure
	GPUMode      string             // GPUsPerRank (default) or GPUsShared
	Allowed      []string           // interfaces NCCL may use (names or globs); empty: any
	Cwd          string
	Env          []string      // extra variables for every rank
	StopGrace    time.Duration // SIGTERM to SIGKILL when stopping a gang (default 5 s)
	PlaceTimeout time.Duration // how long to wait for room for the gang (default 60 s)
	Poll         time.Duration // how long one Poll of a rank waits (default 500 ms)
	Progress     io.Writer     // progress lines (default stderr)
	Signals      <-chan os.Signal
	RunID        string
	// Preload are the modules each rank's warm spare imports (spare.go; a name ending in "?"
	// is skipped where it is not installed); empty: no spares, every attempt starts cold.
	Preload []string
	// SpareWait is the longest a spare waits for an idle CPU on its node before it starts
	// (default 30 s).
	SpareWait time.Duration

	// Across allocations (requeue.go, history.go).
	History    *History // where attempts and checkpoints are recorded; nil: nowhere
	Checkpoint string   // the checkpoint the first attempt resumes from
	// FirstAttempt numbers the first attempt in History (the attempts before it, in earlier
	// allocations).
	FirstAttempt int
	// WarnSignal is the time-limit warning (--signal=USR1@T); 0: none. CheckpointSignal is
	// sent to every rank when a checkpoint is due; 0: none.
	WarnSignal, CheckpointSignal syscall.Signal
	CheckpointTimeout            time.Duration // how long to wait for it (default 60 s)
	// Requeue requeues the job after the time-limit warning's checkpoint (RequeueJob), and
	// starts the ranks with SIGTERM ignored.
	Requeue    bool
	RequeueJob func() error
	// Preempted says whether the job is in a preemption's grace time (nil: never).
	Preempted func() bool
	// Replan, when set (--nnodes MIN:MAX, elastic.go), gives the ranks and each one's
	// resources anew after an attempt lost a node; an error ends the run.
	Replan func() (int, map[string]float64, error)
	// SpareNodes (--spare-nodes K) keeps standby ranks with warm spares on the K spare nodes
	// (standby.go), which take a lost node's ranks; 0: none.
	SpareNodes int
	// GrowCheck is how often a gang with Replan that runs fewer ranks than Replan would give
	// looks for nodes that joined (a YARN replacement container, `shoal join`), to grow back at
	// the next checkpoint (grow.go); default 2 s.
	GrowCheck time.Duration
}

// Result is how a gang ended.
type Result struct {
	Code       int    // 0, the failing rank's exit code, or 128+signal
	Restarts   int    // restarts used
	FailedRank int    // -1 when none failed
	Node       string // the failing rank's node
	Tail       string // the failing rank's last output
	Checkpoint string // the last checkpoint rank 0 reported
	// End is why the attempt ended when a checkpoint was asked for (EndPreempted,
	// EndRequeued, EndTimeLimit); Hold says the caller must hold the allocation until Slurm
	// ends the job (it is being preempted, or was requeued).
	End  string
	Hold bool
	// Grow says the gang stopped at a checkpoint to restart on nodes that joined (grow.go).
	Grow bool
}

// ErrPlacement wraps failures to place the gang.
var ErrPlacement = errors.New("cannot place the ranks")

type gang struct {
	c      *client.Client
	cfg    Config
	log    hclog.Logger
	pg     *client.PlacementGroup
	actors []*client.Actor // one per bundle, kept across attempts
	placed []Placed        // where each actor runs
	ckpt   string
	signal chan os.Signal
	// the current attempt's: its id in History, rank 0's actor and checkpoint reports, and a
	// checkpoint asked for (requeue.go)
	attemptID int64
	rank0     int
	rank0Seq  int
	pending   *dueState
	// standby ranks on the spare nodes (standby.go), in a group of their own
	standby       []*client.Actor
	standbyPlaced []Placed
	standbyPG     *client.PlacementGroup
	standbyTried  bool
	// failures are the restarts after a failure so far (--max-restarts counts them; a restart
	// to grow does not)
	failures int
}

// Run runs cfg.Ranks copies of cfg.Argv as one gang on the cluster c is connected to, and
// restarts the gang after a failure up to cfg.MaxRestarts times. It returns how the last
// attempt ended; an error means the gang could not be placed or started at all.
func Run(ctx context.Context, log hclog.Logger, c *client.Client, cfg Config) (Result, error) {
	if len(cfg.Argv) == 0 {
		return Result{Code: 2}, errors.New("no command to run: shoal train [options] -- CMD ARGS")
	}
	if cfg.Ranks <= 0 {
		return Result{Code: 2}, fmt.Errorf("%d ranks: need at least one", cfg.Ranks)
	}
	if cfg.GPUMode == "" {
		cfg.GPUMode = GPUsPerRank
	}
	if cfg.GPUMode != GPUsPerRank && cfg.GPUMode != GPUsShared {
		return Result{Code: 2}, fmt.Errorf("GPU mode %q: use %s or %s", cfg.GPUMode, GPUsPerRank, GPUsShared)
	}
	if cfg.StopGrace <= 0 {
		cfg.StopGrace = 5 * time.Second
	}
	if cfg.PlaceTimeout <= 0 {
		cfg.PlaceTimeout = time.Minute
	}
	if cfg.Poll <= 0 {
		cfg.Poll = 500 * time.Millisecond
	}
	if cfg.Progress == nil {
		cfg.Progress = os.Stderr
	}
	if cfg.RunID == "" {
		cfg.RunID = fmt.Sprintf("shoal-%d", os.Getpid())
	}
	if cfg.CheckpointTimeout <= 0 {
		cfg.CheckpointTimeout = time.Minute
	}
	if cfg.GrowCheck <= 0 {
		cfg.GrowCheck = 2 * time.Second
	}
	g := &gang{c: c, cfg: cfg, log: log, signal: make(chan os.Signal, 4), ckpt: cfg.Checkpoint}
	defer g.dropActors()
	for attempt := 0; ; attempt++ {
		res, err := g.attempt(ctx, attempt)
		res.Restarts = attempt
		res.Checkpoint = g.ckpt
		g.endAttempt(res, err)
		if err == nil && res.Grow {
			if err := g.grow(); err != nil {
				return res, err
			}
			continue
		}
		if err != nil || res.FailedRank < 0 || res.Code == 0 || res.Hold {
			return res, err
		}
		if g.failures >= cfg.MaxRestarts {
			g.say("rank %d on %s failed (%s) and no restarts are left (%d of %d used); its last output:\n%s",
				res.FailedRank, res.Node, how(res), g.failures, cfg.MaxRestarts, indent(res.Tail))
			return res, nil
		}
		g.failures++
		from := "from the start"
		if g.ckpt != "" {
			from = "from checkpoint " + g.ckpt
		}
		g.say("rank %d on %s failed (%s); restarting the gang %s (restart %d of %d)",
			res.FailedRank, res.Node, how(res), from, g.failures, cfg.MaxRestarts)
		if g.pg == nil && cfg.Replan != nil { // a node was lost: place the gang on what is left
			n, r, err := cfg.Replan()
			if err != nil {
				g.say("cannot go on: %v", err)
				return res, fmt.Errorf("%w: %v", ErrPlacement, err)
			}
			if n != g.cfg.Ranks {
				g.say("elastic: %d ranks instead of %d on the nodes left", n, g.cfg.Ranks)
			}
			g.cfg.Ranks, g.cfg.Resources = n, r
		}
	}
}

// endAttempt records in History how the attempt ended.
func (g *gang) endAttempt(res Result, err error) {
	if g.cfg.History == nil || g.attemptID == 0 {
		return
	}
	reason, detail := res.End, ""
	switch {
	case reason != "":
	case err != nil:
		reason, detail = EndLost, err.Error()
	case res.FailedRank >= 0:
		reason, detail = EndFailed, fmt.Sprintf("rank %d on %s: %s", res.FailedRank, res.Node, how(res))
	case res.Code == 0:
		reason = EndCompleted
	default:
		reason = EndCancelled
	}
	if err := g.cfg.History.EndAttempt(g.attemptID, reason, res.Code, detail); err != nil {
		g.log.Warn("record the attempt's end in the run's history", "error", err)
	}
	g.attemptID = 0
}

func countTrue(v []bool) int {
	n := 0
	for _, b := range v {
		if b {
			n++
		}
	}
	return n
}

func how(r Result) string {
	if r.Code > 128 && r.Code < 160 {
		return fmt.Sprintf("killed by signal %d", r.Code-128)
	}
	if r.Code < 0 {
		return "its process or node was lost"
	}
	return fmt.Sprintf("exit code %d", r.Code)
}

func indent(s string) string {
	if s == "" {
		return "    (no output)"
	}
	return "    " + strings.ReplaceAll(s, "\n", "\n    ")
}

func (g *gang) say(format string, args ...any) {
	fmt.Fprintf(g.cfg.Progress, "shoal train: "+format+"\n", args...)
}

// place reserves the gang's bundles, once; a gang that lost an actor gets a new group.
func (g *gang) place(ctx context.Context) error {
	if g.pg != nil {
		return nil
	}
	bundles := make([]map[string]float64, g.cfg.Ranks)
	for i := range bundles {
		bundles[i] = g.cfg.Resources
	}
	pctx, cancel := context.WithTimeout(ctx, g.cfg.PlaceTimeout)
	defer cancel()
	pg, err := g.c.NewPlacementGroup(pctx, bundles, g.cfg.Strategy, "shoal-train")
	if err != nil {
		what := fmt.Sprintf("%d ranks of %s (%s)", g.cfg.Ranks, resString(g.cfg.Resources), strategyName(g.cfg.Strategy))
		if errors.Is(err, client.ErrInfeasible) {
			return fmt.Errorf("%w: the cluster can never hold %s: %v; ask for fewer ranks or resources per rank, or another placement strategy", ErrPlacement, what, err)
		}
		if errors.Is(err, context.DeadlineExceeded) {
			avail, _ := g.c.AvailableResources()
			return fmt.Errorf("%w: no room for %s within %s; the cluster has %s available now", ErrPlacement, what, g.cfg.PlaceTimeout, resString(avail))
		}
		return fmt.Errorf("%w: %s: %v", ErrPlacement, what, err)
	}
	g.pg = pg
	return nil
}

func strategyName(s string) string {
	if s == "" {
		return "PACK"
	}
	return s
}

func resString(r map[string]float64) string {
	var parts []string
	for _, k := range []string{"CPU", "GPU", "memory"} {
		if v, ok := r[k]; ok {
			parts = append(parts, fmt.Sprintf("%s:%g", k, v))
		}
	}
	for k, v := range r {
		if k != "CPU" && k != "GPU" && k != "memory" && k != "object_store_memory" {
			parts = append(parts, fmt.Sprintf("%s:%g", k, v))
		}
	}
	return "{" + strings.Join(parts, " ") + "}"
}

// newActors creates one RankActor in each bundle and asks each where it runs.
func (g *gang) newActors(ctx context.Context) error {
	opts := []any{client.MaxRestarts(0)}
	for k, v := range g.cfg.Resources {
		opts = append(opts, client.Resource(k, v))
	}
	g.actors = make([]*client.Actor, g.cfg.Ranks)
	for i := range g.actors {
		a, err := g.c.NewActor(ActorType, append([]any{client.InBundle(g.pg, i)}, opts...)...)
		if err != nil {
			return fmt.Errorf("create rank %d's actor: %w", i, err)
		}
		g.actors[i] = a
	}
	g.placed = make([]Placed, len(g.actors))
	if err := g.callAll(ctx, g.actors, &g.placed, "Info", func(int) []any { return []any{g.cfg.Allowed} }); err != nil {
		return fmt.Errorf("start the ranks' actors: %w", err)
	}
	return nil
}

// dropActors kills the actors and gives the placement group back: an actor was lost, perhaps
// with its node, and the next attempt places the gang anew.
func (g *gang) dropActors() {
	for _, a := range g.actors {
		if a != nil {
			g.c.Kill(a)
		}
	}
	g.actors, g.placed = nil, nil
	if g.pg != nil {
		g.pg.Remove()
		g.pg = nil
	}
	g.dropStandbys()
}

// attempt runs the gang once.
func (g *gang) attempt(ctx context.Context, attempt int) (Result, error) {
	fail := Result{FailedRank: -1}
	if err := g.place(ctx); err != nil {
		return Result{Code: 1, FailedRank: -1}, err
	}
	// The actors outlive a failed attempt (their processes are stopped, the workers stay), so a
	// restart costs no worker start-up; they are made anew when one of them was lost.
	if g.actors == nil {
		if err := g.newActors(ctx); err != nil {
			g.dropActors()
			return Result{Code: 1, FailedRank: -1}, err
		}
	}
	actors, placed := g.actors, g.placed
	lostNode := false
	lost := map[int]bool{} // the actors known lost; none known: the gang is placed anew
	defer func() {
		if lostNode && !g.takeOver(lostList(lost)) {
			g.dropActors()
		}
	}()
	nodes, err := g.c.Nodes()
	if err != nil {
		return Result{Code: 1, FailedRank: -1}, err
	}
	order := NodeOrder(nodes)
	addr := map[string]string{}
	for _, n := range nodes {
		addr[n.ID] = n.Addr
	}
	ranks := Layout(placed, order)
	r0 := actors[ranks[0].Actor]
	var port int
	ref, err := r0.Call("ReservePort")
	if err == nil {
		err = g.c.Get(ctx, ref, &port)
		ref.Release()
	}
	if err != nil {
		lostNode = true
		return Result{Code: 1, FailedRank: -1}, fmt.Errorf("reserve MASTER_PORT on %s: %w", ranks[0].Node, err)
	}
	master := masterAddr(addr[ranks[0].Node], len(nodes))
	cpus := g.cfg.Resources["CPU"]
	w := World{Size: len(ranks), MasterAddr: master, MasterPort: port, Attempt: attempt, MaxRestarts: g.cfg.MaxRestarts,
		CPUs: cpus, GPUMode: g.cfg.GPUMode, Checkpoint: g.ckpt, RunID: g.cfg.RunID}
	byActor := make([]Rank, len(ranks))
	for _, r := range ranks {
		byActor[r.Actor] = r
	}
	warm := make([]bool, len(actors))
	spare := g.failures < g.cfg.MaxRestarts && len(g.cfg.Preload) > 0 // a spare only where a next attempt may come
	if err := g.callAll(ctx, actors, &warm, "Start", func(i int) []any {
		r := byActor[i]
		env := append(Env(r, placed[i], w), g.cfg.Env...)
		return []any{StartSpec{Argv: g.cfg.Argv, Env: env, Cwd: g.cfg.Cwd, Prefix: fmt.Sprintf("[rank%d]: ", r.Rank),
			Spare: spare, Preload: g.cfg.Preload, SpareWaitMs: int(g.cfg.SpareWait / time.Millisecond), SyncCheckpoints: r.Rank == 0,
			Ignore: g.ignored()}}
	}); err != nil {
		lostNode = true
		return Result{Code: 1, FailedRank: -1}, fmt.Errorf("start the ranks: %w", err)
	}
	warmNote := ""
	if n := countTrue(warm); n > 0 {
		warmNote = fmt.Sprintf(", %d from warm spares", n)
	}
	g.say("%d ranks running (attempt %d%s): %s; MASTER_ADDR=%s MASTER_PORT=%d", len(ranks), attempt, warmNote, Describe(ranks), master, port)
	g.makeStandbys(ctx, ranks, w)
	g.rank0, g.rank0Seq, g.pending = ranks[0].Actor, 0, nil
	if h := g.cfg.History; h != nil {
		if g.attemptID, err = h.BeginAttempt(g.cfg.FirstAttempt+attempt, len(ranks), Describe(ranks), g.ckpt); err != nil {
			g.log.Warn("record the attempt in the run's history", "error", err)
		}
	}
	// watch
	pollMS := int(g.cfg.Poll / time.Millisecond)
	pending := make([]client.ObjectRef, len(actors))
	defer func() {
		for _, r := range pending {
			r.Release() // the polls still out when a rank failed; releasing twice does nothing
		}
	}()
	owner := map[string]int{}
	acks := make([]int, len(actors)) // the checkpoint reports of each rank this process has
	for i, a := range actors {
		ref, err := a.Call("Poll", pollMS, 0)
		if err != nil {
			return Result{Code: 1, FailedRank: -1}, err
		}
		pending[i] = ref
		owner[ref.Hex()] = i
	}
	done := make([]bool, len(actors))
	left := len(actors)
	var sigCode int
	var failExited, failSeen int64 // when the failed rank exited, and when its failure was seen
	looked := time.Now()           // when the gang last looked for nodes to grow onto (grow.go)
	roomSeen := 0                  // the ranks it found room for then
	sigs := g.cfg.Signals
	for left > 0 {
		wctx, cancel := context.WithTimeout(ctx, 2*g.cfg.Poll+time.Second)
		var live []client.ObjectRef
		for i, r := range pending {
			if !done[i] {
				live = append(live, r)
			}
		}
		ready, _, werr := g.waitOrSignal(wctx, live, sigs, actors, &sigCode)
		cancel()
		if werr != nil && !errors.Is(werr, context.DeadlineExceeded) {
			return Result{Code: 1, FailedRank: -1}, werr
		}
		for _, ref := range ready {
			i := owner[ref.Hex()]
			delete(owner, ref.Hex())
			var st Status
			err := g.c.Get(ctx, ref, &st)
			ref.Release()
			r := byActor[i]
			if err != nil {
				// the worker or its node is gone
				lostNode, lost[i] = true, true
				fail = Result{Code: -1, FailedRank: r.Rank, Node: r.Node, Tail: "(lost: " + err.Error() + ")"}
				break
			}
			if st.Last != nil {
				acks[i] = st.Last.Seq // rank 0's report() returns once this Poll's ack arrives
				if r.Rank == 0 && st.Last.Seq > g.rank0Seq {
					g.noteCheckpoint(st.Last)
				}
			}
			if st.Done {
				done[i] = true
				left--
				if st.Code != 0 {
					fail = Result{Code: st.Code, FailedRank: r.Rank, Node: r.Node, Tail: st.Tail}
					failExited, failSeen = st.ExitedMs, time.Now().UnixMilli()
					break
				}
				continue
			}
			nref, err := actors[i].Call("Poll", pollMS, acks[i])
			if err != nil {
				return Result{Code: 1, FailedRank: -1}, err
			}
			pending[i] = nref
			owner[nref.Hex()] = i
		}
		if fail.FailedRank >= 0 {
			break
		}
		if g.dueDone(left) {
			if g.pending.reason == DueTimeLimit && !g.cfg.Requeue && left > 0 {
				g.pending = nil // checkpointed after the warning; the gang goes on
				continue
			}
			if g.pending.reason == DueGrow && left == 0 && g.pending.ckptAt.IsZero() {
				return Result{FailedRank: -1}, nil // the ranks ended by themselves: the run is done
			}
			return g.finishDue(actors, done), nil
		}
		if g.pending == nil && time.Since(looked) >= g.cfg.GrowCheck {
			looked = time.Now()
			// room seen at two looks in a row: a moment's room is no reason to stop the gang
			n := g.roomToGrow(placed)
			n, roomSeen = min(n, roomSeen), n
			if n > g.cfg.Ranks {
				g.say("elastic: the live nodes have room for %d ranks, %d run; asking for a checkpoint to restart on them", n, len(ranks))
				g.due(actors, DueGrow, 0)
			}
		}
	}
	if fail.FailedRank < 0 {
		return Result{FailedRank: -1, Code: sigCode}, nil
	}
	for i, st := range g.stopAll(actors, done) {
		if st == nil {
			lostNode, lost[i] = true, true // its actor did not answer: start the next attempt with new ones
			continue
		}
		// the rank whose failure came first to be seen may not be the first that failed: one
		// killed on another node is seen after the ranks that lost their connections to it
		// (a collective's "peer closed the connection"); the cause is the one that exited first,
		// before the failure was seen (the others exited when stopAll stopped them)
		if failExited > 0 && st.Done && st.Code != 0 && st.ExitedMs > 0 && st.ExitedMs < failExited && st.ExitedMs <= failSeen {
			r := byActor[i]
			fail = Result{Code: st.Code, FailedRank: r.Rank, Node: r.Node, Tail: st.Tail}
			failExited = st.ExitedMs
		}
		if byActor[i].Rank == 0 && st.Last != nil && st.Last.Seq > g.rank0Seq {
			g.noteCheckpoint(st.Last) // what rank 0 reported since its last poll
		}
	}
	if !lostNode {
		// A rank that failed may be the first sign of its node going away: a YARN container
		// whose agent died is cleaned up by its NodeManager, which SIGTERMs the rank while its
		// worker (whose actor still answers the stop) lives on for a moment, and the head may
		// not have seen the agent go yet. Restarting on the same actors would spend a restart
		// on a node about to be lost, so ask the head which nodes are alive (grow.go).
		for i := range g.goneNodes(placed, fail.Code == 128+int(syscall.SIGTERM)) {
			lostNode, lost[i] = true, true
		}
	}
	// Slurm signals every process of the step at once: a rank may die of scancel's SIGTERM
	// before this process sees its own; by now (every rank stopped) it has arrived.
	for drained := false; !drained; {
		select {
		case s := <-sigs:
			if sig := s.(syscall.Signal); sig == syscall.SIGTERM && g.preempted() {
				g.due(nil, DuePreempted, 0)
			} else if sig == syscall.SIGTERM || sig == syscall.SIGINT || sig == syscall.SIGHUP {
				sigCode = 128 + int(sig)
			}
		default:
			drained = true
		}
	}
	if g.pending != nil && (g.pending.reason == DuePreempted || g.cfg.Requeue) {
		// a rank failed (or died of the preemption's SIGTERM) while a checkpoint was due: no
		// restart in this allocation; the next one resumes
		g.say("rank %d on %s ended (%s) while a checkpoint was due", fail.FailedRank, fail.Node, how(fail))
		return g.finishDue(nil, nil), nil
	}
	if sigCode != 0 {
		// stopped on purpose (scancel, Ctrl-C): no restart
		fail.Code = sigCode
		fail.FailedRank = -1
		return fail, nil
	}
	return fail, nil
}

// waitOrSignal waits for one of refs, and passes on the signals that arrive meanwhile to
// every rank.
func (g *gang) waitOrSignal(ctx context.Context, refs []client.ObjectRef, sigs <-chan os.Signal, actors []*client.Actor, sigCode *int) ([]client.ObjectRef, []client.ObjectRef, error) {
	type res struct {
		ready, not []client.ObjectRef
		err        error
	}
	ch := make(chan res, 1)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		r, n, err := g.c.Wait(wctx, refs, 1)
		ch <- res{r, n, err}
	}()
	for {
		select {
		case r := <-ch:
			return r.ready, r.not, r.err
		case s := <-sigs:
			sig := s.(syscall.Signal)
			if g.onSignal(sig, actors) {
				*sigCode = 128 + int(sig)
			}
		}
	}
}

// stopAll stops every rank (those that exited only free their port) all at once, and returns
// each one's last status (nil where its actor is gone).
func (g *gang) stopAll(actors []*client.Actor, done []bool) []*Status {
	out := make([]*Status, len(actors))
	var wg sync.WaitGroup
	for i, a := range actors {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ref, err := a.Call("Stop", int(g.cfg.StopGrace/time.Millisecond))
			if err != nil {
				return
			}
			ctx, cancel := context.WithTimeout(context.Background(), g.cfg.StopGrace+10*time.Second)
			defer cancel()
			var st Status
			if g.c.Get(ctx, ref, &st) == nil {
				out[i] = &st
			}
			ref.Release()
		}()
	}
	wg.Wait()
	return out
}

// callAll calls method on every actor with args(i) and decodes the results into out (a
// pointer to a slice of len(actors) elements, or to a nil []any to drop them).
func (g *gang) callAll(ctx context.Context, actors []*client.Actor, out any, method string, args func(int) []any) error {
	refs := make([]client.ObjectRef, len(actors))
	for i, a := range actors {
		ref, err := a.Call(method, args(i)...)
		if err != nil {
			return err
		}
		refs[i] = ref
	}
	defer func() {
		for _, r := range refs {
			r.Release()
		}
	}()
	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if p, ok := out.(*[]any); ok && *p == nil {
		for _, r := range refs {
			if err := g.c.Get(cctx, r, nil); err != nil {
				return fmt.Errorf("%s: %w", method, err)
			}
		}
		return nil
	}
	if err := g.c.GetAll(cctx, refs, out); err != nil {
		return fmt.Errorf("%s: %w", method, err)
	}
	return nil
}

// masterAddr is the address the other ranks reach rank 0's node at.
func masterAddr(addr string, nodes int) string {
	if a, ok := strings.CutPrefix(addr, "tcp:"); ok {
		if h, _, err := net.SplitHostPort(a); err == nil {
			addr = h
		}
	}
	if nodes <= 1 || addr == "" || addr == "0.0.0.0" {
		return "127.0.0.1"
	}
	return addr
}
