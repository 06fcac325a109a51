package nodeagent

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/shoal-hpc/shoal/sched"
	"github.com/shoal-hpc/shoal/wire"
)

var t0 = time.Date(2026, 12, 7, 8, 0, 0, 0, time.UTC)

func at(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

// TestLiveness drives the timing logic with a made-up clock: a peer is lost only once it has
// been silent for longer than the timeout, each sign of life starts the wait again, a late sign
// does not move it back, and a lost peer is reported once.
func TestLiveness(t *testing.T) {
	type step struct {
		op   string // track, heard, forget, check
		k    string
		ms   int
		want string // check: the peers lost, comma-separated, sorted
	}
	cases := []struct {
		name  string
		steps []step
	}{
		{"silent from the start", []step{{"track", "a", 0, ""}, {"check", "", 5000, ""}, {"check", "", 5001, "a"}, {"check", "", 9000, ""}}},
		{"heartbeats keep it", []step{{"track", "a", 0, ""}, {"heard", "a", 1000, ""}, {"heard", "a", 2000, ""}, {"check", "", 6999, ""},
			{"heard", "a", 7000, ""}, {"check", "", 12000, ""}, {"check", "", 12001, "a"}}},
		{"track does not reset", []step{{"track", "a", 0, ""}, {"track", "a", 4000, ""}, {"check", "", 5001, "a"}}},
		{"a late sign does not go back", []step{{"heard", "a", 3000, ""}, {"heard", "a", 1000, ""}, {"check", "", 7999, ""}, {"check", "", 8001, "a"}}},
		{"each its own", []step{{"track", "a", 0, ""}, {"track", "b", 0, ""}, {"heard", "b", 4000, ""}, {"check", "", 6000, "a"},
			{"check", "", 9001, "b"}}},
		{"forgotten is never lost", []step{{"track", "a", 0, ""}, {"forget", "a", 1000, ""}, {"check", "", 60000, ""}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l := newLiveness[string](5 * time.Second)
			for i, s := range tc.steps {
				switch s.op {
				case "track":
					l.track(s.k, at(s.ms))
				case "heard":
					l.heard(s.k, at(s.ms))
				case "forget":
					l.forget(s.k)
				case "check":
					var got []string
					for k := range l.silent(at(s.ms)) {
						got = append(got, k)
					}
					if strings.Join(sorted(got), ",") != s.want {
						t.Fatalf("step %d: lost at %d ms: %v, want %q", i, s.ms, got, s.want)
					}
				}
			}
		})
	}
}

func sorted(s []string) []string { sort.Strings(s); return s }

func TestHeartbeatSettings(t *testing.T) {
	cases := []struct {
		in      Heartbeat
		timeout time.Duration
		period  time.Duration
		bad     string
	}{
		{Heartbeat{}, DefaultHeartbeatTimeout, time.Second, ""},
		{Heartbeat{Timeout: 2 * time.Second}, 2 * time.Second, 400 * time.Millisecond, ""},
		{Heartbeat{Timeout: -1}, 0, 0, ""},
		{Heartbeat{Timeout: 100 * time.Millisecond}, 0, 0, "too short"},
		{Heartbeat{Timeout: time.Second, Period: time.Second}, 0, 0, "shorter than the timeout"},
	}
	for _, tc := range cases {
		if err := tc.in.Validate(); tc.bad != "" {
			if err == nil || !strings.Contains(err.Error(), tc.bad) {
				t.Errorf("%+v: Validate = %v, want %q", tc.in, err, tc.bad)
			}
			continue
		} else if err != nil {
			t.Errorf("%+v: %v", tc.in, err)
		}
		h := tc.in.withDefaults()
		if h.Timeout != tc.timeout || h.Period != tc.period {
			t.Errorf("%+v: got timeout %s period %s, want %s and %s", tc.in, h.Timeout, h.Period, tc.timeout, tc.period)
		}
	}
}

// liveAgent starts a head agent with a member playing over TLS (the test), joined as node m1.
func liveAgent(t *testing.T, hb Heartbeat) (*Agent, *wire.Conn, wire.NodeJoinReply) {
	t.Helper()
	dir := t.TempDir()
	a, err := New(hclog.NewNullLogger(), nil, Config{ClusterID: "0123456789ab", Secret: spawnSecret, NodeID: "head",
		SessionDir: dir, StoreDir: filepath.Join(dir, "store"), SpillDir: filepath.Join(dir, "spill"),
		Resources: sched.Resources{"CPU": 1}, ObjectStoreMemory: 1 << 20, ListenTCP: "127.0.0.1:0", Heartbeat: hb})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	member, _, err := wire.Dial(a.TCPAddr(), spawnSecret, wire.Auth{Role: "member", PID: os.Getpid()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { member.Close() })
	var r wire.NodeJoinReply
	if err := member.Call(wire.TNodeJoin, 1, &wire.NodeJoin{Node: "m1", Addr: "127.0.0.1", Resources: map[string]float64{"CPU": 1}}, &r); err != nil {
		t.Fatal(err)
	}
	return a, member, r
}

// TestHeadDeclaresASilentMemberLost: the head answers a member's HEARTBEAT and keeps it; a
// member silent for longer than the timeout (no FIN: its connection stays open) is lost as if
// its connection had closed, and its connection is closed. The check runs at made-up times; the
// agent's own ticker is an hour away.
func TestHeadDeclaresASilentMemberLost(t *testing.T) {
	a, member, r := liveAgent(t, Heartbeat{Timeout: time.Hour})
	if r.TimeoutMS != time.Hour.Milliseconds() || r.HeartbeatMS != (12*time.Minute).Milliseconds() {
		t.Fatalf("NODE_JOIN's answer: %+v, want the head's timeout and period", r)
	}
	before := time.Now()
	if err := member.Call(wire.THeartbeat, 7, nil, nil); err != nil {
		t.Fatalf("HEARTBEAT not answered: %v", err)
	}
	after := time.Now()
	// the heartbeat was recorded at some time in [before, after]
	if lost := a.checkLiveness(before.Add(time.Hour)); len(lost) != 0 {
		t.Fatalf("lost %v within the timeout of its heartbeat", lost)
	}
	if got := a.Nodes(); len(got) != 2 {
		t.Fatalf("nodes %v, want head and m1", got)
	}
	// a head agent that waited for its own lock for more than a period judges no one
	a.live.since = func(time.Time) time.Duration { return 13 * time.Minute }
	if lost := a.checkLiveness(after.Add(2 * time.Hour)); len(lost) != 0 {
		t.Fatalf("a stalled head gave %v up", lost)
	}
	a.live.since = func(time.Time) time.Duration { return 0 }
	lost := a.checkLiveness(after.Add(time.Hour + time.Millisecond))
	if len(lost) != 1 || lost[0] != "m1" {
		t.Fatalf("lost %v past the timeout, want [m1]", lost)
	}
	if got := a.Nodes(); len(got) != 1 || got[0] != "head" {
		t.Fatalf("nodes %v after the loss, want [head]", got)
	}
	member.Net().SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		if _, err := member.Read(); err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatal("the lost member's connection was not closed")
			}
			break
		}
	}
}

// TestHeartbeatOnlyFromMembers: a driver cannot pass for a node.
func TestHeartbeatOnlyFromMembers(t *testing.T) {
	a, _, _ := liveAgent(t, Heartbeat{Timeout: time.Hour})
	d, _, err := wire.Dial(a.Addr(), spawnSecret, wire.Auth{Role: "driver", Lang: "go", PID: os.Getpid(), Exe: "/bin/true", Path: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := d.Call(wire.THeartbeat, 3, nil, nil); err == nil || !strings.Contains(err.Error(), "only member agents") {
		t.Fatalf("HEARTBEAT from a driver: %v", err)
	}
}

// TestMemberGivesUpASilentHead: a member whose head stops answering (here: a head that reads
// but never writes) is lost past the timeout: its Run ends with ErrHeadLost naming the timeout,
// after its workers are killed. An answer in time keeps the head.
func TestMemberGivesUpASilentHead(t *testing.T) {
	head, mine := net.Pipe()
	defer head.Close()
	go func() { // the head's end: reads, never answers
		for {
			if _, err := wire.ReadFrame(head); err != nil {
				return
			}
		}
	}()
	m := &Member{log: hclog.NewNullLogger(), conn: wire.NewConn(mine), node: "m1", procs: &spawner{log: hclog.NewNullLogger()},
		cfg: MemberConfig{HeadAddr: "tcp:198.18.0.11:1"}, stdout: os.Stderr, stderr: os.Stderr,
		hb: Heartbeat{Timeout: 3 * time.Second, Period: 600 * time.Millisecond}}
	m.beats = newLiveness[string](m.hb.Timeout)
	m.beats.track("head", at(0))
	if !m.beatOnce(at(600)) || !m.beatOnce(at(3000)) {
		t.Fatal("gave the head up within the timeout")
	}
	m.handling.Store(true) // Run busy with a frame: silence does not count
	if !m.beatOnce(at(4000)) {
		t.Fatal("gave the head up while not reading")
	}
	m.handling.Store(false)
	if !m.beatOnce(at(7000)) || !m.beatOnce(at(7000)) {
		t.Fatal("gave the head up within the timeout after Run read again")
	}
	m.beats.heard("head", at(2500)) // an answer (older than the last sign: kept out)
	m.beats.heard("head", at(7500)) // an answer
	if !m.beatOnce(at(10500)) {
		t.Fatal("gave the head up within the timeout of its last answer")
	}
	if m.beatOnce(at(10501)) {
		t.Fatal("kept a head silent for longer than the timeout")
	}
	code, err := m.Run()
	if code != 1 || !errors.Is(err, ErrHeadLost) || !strings.Contains(err.Error(), "no answer from the head node's agent at tcp:198.18.0.11:1 for 3.001s (timeout 3s)") {
		t.Fatalf("Run = %d, %v", code, err)
	}
}
