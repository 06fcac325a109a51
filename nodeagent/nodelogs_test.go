package nodeagent

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/shoal-hpc/shoal/nodeagent/obs"
	"github.com/shoal-hpc/shoal/sched"
	"github.com/shoal-hpc/shoal/wire"
)

// logCluster starts a head agent that records (its nodes keep at most maxLines lines) and a
// member m1 joined over TLS whose frames a real Member's log code answers (handleLogs), as
// Member.Run does.
func logCluster(t *testing.T, maxLines int) (*Agent, *Member, chan struct{}) {
	t.Helper()
	dir := t.TempDir()
	var opts []obs.Option
	if maxLines > 0 {
		opts = append(opts, obs.WithMaxLogLines(maxLines))
	}
	rec := obs.NewRecorder(opts...)
	a, err := New(hclog.NewNullLogger(), nil, Config{ClusterID: "0123456789ab", Secret: spawnSecret, NodeID: "head",
		SessionDir: dir, StoreDir: filepath.Join(dir, "store"), SpillDir: filepath.Join(dir, "spill"),
		Resources: sched.Resources{"CPU": 1}, ObjectStoreMemory: 1 << 20, ListenTCP: "127.0.0.1:0", Observer: rec})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	conn, _, err := wire.Dial(a.TCPAddr(), spawnSecret, wire.Auth{Role: "member", PID: os.Getpid()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	var r wire.NodeJoinReply
	if err := conn.Call(wire.TNodeJoin, 1, &wire.NodeJoin{Node: "m1", Addr: "127.0.0.1", Resources: map[string]float64{"CPU": 1}}, &r); err != nil {
		t.Fatal(err)
	}
	m := &Member{conn: conn, node: "m1", logs: newMemberLogs()}
	configs := make(chan struct{}, 16)
	go func() {
		for {
			f, err := conn.Read()
			if err != nil {
				return
			}
			if f.Type == wire.TLogQuery || f.Type == wire.TLogConfig {
				if err := m.handleLogs(f); err != nil {
					return
				}
				if f.Type == wire.TLogConfig {
					configs <- struct{}{}
				}
			}
		}
	}()
	select {
	case <-configs: // LOG_CONFIG follows NODE_JOIN's answer
	case <-time.After(5 * time.Second):
		t.Fatal("no LOG_CONFIG after NODE_JOIN")
	}
	return a, m, configs
}

func workerLine(node, job string, i int) obs.Line {
	return obs.Line{Time: time.Now(), Node: node, Job: job, Worker: job + "-w1", PID: 7, Stream: "stdout",
		Task: strings.Repeat("ab", 16), Name: "f", Text: fmt.Sprintf("%s line %d", node, i)}
}

// A member keeps its own lines within the bound the head gave it; the head answers from its
// own ring and the member's (asked with LOG_QUERY), merged by time, page by page; --node asks one
// node; a member gone is named, its lines gone with it.
func TestClusterLogsFromMembers(t *testing.T) {
	a, m, _ := logCluster(t, 50)
	if st := m.logs.stats(); st.MaxLines != 50 {
		t.Fatalf("the member's ring bound is %d lines; the head's LOG_CONFIG said 50", st.MaxLines)
	}
	r := a.cfg.Observer
	r.RegisterDriver("quiet", false) // lines only kept: no LOG, no echo
	a.logDriversChanged()
	for i := 0; i < 80; i++ {
		if i%2 == 0 {
			r.AddLog(workerLine("head", "quiet", i))
		} else {
			m.memberLine(workerLine("m1", "quiet", i))
		}
		time.Sleep(50 * time.Microsecond) // distinct times, interleaved
	}
	if st := r.LogStats(); st.Lines != 40 {
		t.Fatalf("the head's ring holds %d lines; want its own 40 (the member's stay on the member)", st.Lines)
	}
	var got []string
	cur := obs.Cursor{}
	dropped := map[string]uint64{}
	for rounds := 0; ; rounds++ {
		res, err := a.ClusterLogs(obs.LogFilter{}, cur, 15)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range res.Lines {
			got = append(got, l.Text)
		}
		for n, d := range res.Dropped {
			dropped[n] += d
		}
		cur = res.Next
		if !res.More {
			break
		}
		if rounds > 20 {
			t.Fatal("pages do not end")
		}
	}
	if len(got) != 80 || got[0] != "head line 0" || got[1] != "m1 line 1" || got[79] != "m1 line 79" {
		t.Fatalf("merged %d lines: %v", len(got), got)
	}
	if len(dropped) != 0 {
		t.Fatalf("dropped %v with 40 lines a node and a bound of 50", dropped)
	}
	// past the bound: the member keeps its newest 50 and a fresh reader is told of the rest
	for i := 80; i < 200; i += 2 {
		m.memberLine(workerLine("m1", "quiet", i+1))
	}
	res, err := a.ClusterLogs(obs.LogFilter{Node: "m1"}, obs.Cursor{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Lines) != 50 || res.Lines[49].Text != "m1 line 199" || res.Dropped["m1"] != 50 || res.Next["head"] != 0 {
		t.Fatalf("--node m1 past its bound: %d lines (last %q), dropped %v, next %v", len(res.Lines), res.Lines[len(res.Lines)-1].Text, res.Dropped, res.Next)
	}
	if _, err := a.ClusterLogs(obs.LogFilter{Node: "nosuch"}, nil, 0); err == nil || !strings.Contains(err.Error(), "nosuch") {
		t.Fatalf("an unknown node: %v", err)
	}
	// the member goes: its lines with it
	m.conn.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		res, err = a.ClusterLogs(obs.LogFilter{}, cur, 0)
		if err != nil {
			t.Fatal(err)
		}
		if res.Gone["m1"] != "" || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(res.Gone["m1"], "gone") {
		t.Fatalf("a lost member is not named: %+v", res)
	}
}

// LOG_CONFIG says which jobs' lines the head wants: a member sends LOG for a job whose driver
// prints its lines (and for one whose driver registered nothing, which the head echoes), and
// none for a job whose driver only keeps them.
func TestMemberSendsLinesOnlyForDrivers(t *testing.T) {
	a, m, configs := logCluster(t, 0)
	r := a.cfg.Observer
	var echoed []string
	done := make(chan struct{}, 16)
	r.SetLogEcho(func(l obs.Line) { echoed = append(echoed, l.Text); done <- struct{}{} })
	r.RegisterDriver("printing", true)
	r.RegisterDriver("quiet", false)
	a.logDriversChanged()
	<-configs
	m.memberLine(workerLine("m1", "quiet", 1))
	m.memberLine(workerLine("m1", "printing", 2))
	m.memberLine(workerLine("m1", "godriver", 3))
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the unregistered job's line was not echoed")
	}
	deadline := time.Now().Add(5 * time.Second)
	for r.DriverLines()["m1"] < 1 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	lines, _ := r.DriverLogs("printing", 0, 0)
	if len(lines) != 1 || lines[0].Text != "m1 line 2" || lines[0].Node != "m1" {
		t.Fatalf("the driver's queue: %+v", lines)
	}
	if q, _ := r.DriverLogs("quiet", 0, 0); len(q) != 0 || len(echoed) != 1 || echoed[0] != "m1 line 3" {
		t.Fatalf("quiet job queued %v; echoed %v", q, echoed)
	}
	if st := m.logs.stats(); st.Lines != 3 {
		t.Fatalf("the member keeps %d lines; want all 3", st.Lines)
	}
}

// The cost over a member's connection, in bytes per line (frame header and body): before, a LOG
// frame per line for every line; now LOG only for jobs whose driver prints them, and LOG_PAGE,
// a page of up to 1000 lines, when someone asks. docs/observability.md quotes these figures.
func TestLogBytesPerLine(t *testing.T) {
	l := lineToWire(workerLine("node2", "3f9a1c0b-0001", 12))
	l.Worker, l.Text = "3f9a1c0b-0001-w2", "epoch 3 loss 0.4213 accuracy 0.8812 lr 0.001"
	one, err := wire.Encode(wire.TLog, 0, &wire.LogLines{Lines: []wire.LogLine{l}})
	if err != nil {
		t.Fatal(err)
	}
	page := wire.LogPage{Next: 1000}
	for i := range 1000 {
		l.Seq = uint64(i + 1)
		page.Lines = append(page.Lines, l)
	}
	pg, err := wire.Encode(wire.TLogPage, 1, &page)
	if err != nil {
		t.Fatal(err)
	}
	q, _ := wire.Encode(wire.TLogQuery, 1, &wire.LogQuery{Since: 12345, Max: 1000, MaxBytes: 1 << 20})
	perPage := float64(len(pg)) / 1000
	t.Logf("text %d B; LOG: %d B/line; LOG_PAGE of 1000: %.1f B/line (+ a %d B LOG_QUERY)", len(l.Text), len(one), perPage, len(q))
	if perPage >= float64(len(one)) {
		t.Fatalf("a page costs %.1f B a line, a LOG frame %d", perPage, len(one))
	}
}
