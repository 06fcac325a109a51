package obs

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/shoal-hpc/shoal/wire"
)

// clock is a test clock that advances by hand.
type clock struct{ t time.Time }

func (c *clock) now() time.Time      { return c.t }
func (c *clock) add(d time.Duration) { c.t = c.t.Add(d) }
func id(b byte) (x wire.ID)          { x[0] = b; return }
func ev(t byte, s State, k Kind) Event {
	return Event{Task: id(t), Name: "f", Kind: k, State: s, Node: "n1", Worker: "w1", CPU: 2}
}

type fakeSource struct{ s Snapshot }

func (f fakeSource) Snapshot() Snapshot { return f.s }

func TestRecorderStatesAndReport(t *testing.T) {
	c := &clock{t: time.Unix(1000, 0)}
	r := NewRecorder(WithClock(c.now))
	r.SetSource(fakeSource{Snapshot{Nodes: []Node{{ID: "n1", Alive: true, Total: map[string]float64{"CPU": 4}, Store: Store{Bytes: 100}}}}})
	steps := []struct {
		name string
		e    Event
		d    time.Duration
	}{
		{"submit 1", ev(1, Submitted, KindTask), 0},
		{"run 1", ev(1, Running, KindTask), time.Second},
		{"worker died", ev(1, Retrying, KindTask), 2 * time.Second},
		{"run 1 again", ev(1, Running, KindTask), 0},
		{"finish 1", ev(1, Finished, KindTask), time.Second},
		{"submit 2", ev(2, Submitted, KindTask), 0},
		{"fail 2 before it ran", ev(2, Failed, KindTask), 0},
		{"second failure of 2 is ignored", ev(2, Failed, KindTask), 0},
		{"running for an unknown task is ignored", ev(9, Running, KindTask), 0},
		{"submit a call", ev(3, Submitted, KindActorMethod), 0},
	}
	for _, s := range steps {
		c.add(s.d)
		r.TaskEvent(s.e)
	}
	recs, dropped := r.Records()
	if len(recs) != 3 || dropped != 0 {
		t.Fatalf("records: %d (dropped %d), want 3", len(recs), dropped)
	}
	want := map[byte]State{1: Finished, 2: Failed, 3: Submitted}
	for _, rec := range recs {
		if rec.State != want[rec.Task[0]] {
			t.Errorf("task %d: state %s, want %s", rec.Task[0], rec.State, want[rec.Task[0]])
		}
	}
	rep := r.Report()
	if rep.Tasks != 2 || rep.TasksFailed != 1 || rep.TasksRetried != 1 || rep.ActorCalls != 1 || rep.Nodes != 1 {
		t.Errorf("report counts: %+v", rep)
	}
	// 2 CPUs held for 2 s (the retried attempt) + 1 s (the last)
	if rep.CPUSecondsUsed != 6 || rep.CPUSecondsGiven != 4*4 || rep.PeakStoreBytes != 100 {
		t.Errorf("report seconds: used %g given %g peak %d", rep.CPUSecondsUsed, rep.CPUSecondsGiven, rep.PeakStoreBytes)
	}
	var b strings.Builder
	rep.Write(&b)
	if !strings.Contains(b.String(), "tasks 2 (1 failed, 1 retried)") || !strings.Contains(b.String(), "6.0 of 16.0 given (38%)") {
		t.Errorf("report text: %s", b.String())
	}
}

func TestRecorderBoundKeepsTheNewest(t *testing.T) {
	r := NewRecorder(WithMaxRecords(2))
	for i := byte(1); i <= 5; i++ {
		r.TaskEvent(ev(i, Submitted, KindTask))
		r.TaskEvent(ev(i, Running, KindTask))
		r.TaskEvent(ev(i, Finished, KindTask))
	}
	recs, dropped := r.Records()
	if len(recs) != 2 || dropped != 3 || recs[0].Task[0] != 4 || recs[1].Task[0] != 5 {
		t.Fatalf("kept %v (dropped %d), want tasks 4 and 5", recs, dropped)
	}
	if rep := r.Report(); rep.Tasks != 5 || rep.DroppedTasks != 3 {
		t.Errorf("report counts every task: %+v", rep)
	}
}

func TestNilRecorderRecordsNothing(t *testing.T) {
	var r *Recorder
	r.TaskEvent(ev(1, Submitted, KindTask))
	r.Heartbeat("n", wire.NodeStats{})
	if recs, _ := r.Records(); recs != nil || r.Report() != (Report{}) {
		t.Fatal("a nil recorder recorded")
	}
}

func TestTimeline(t *testing.T) {
	c := &clock{t: time.Unix(1000, 0)}
	r := NewRecorder(WithClock(c.now))
	r.TaskEvent(ev(1, Submitted, KindTask))
	c.add(time.Millisecond)
	r.TaskEvent(ev(1, Running, KindTask))
	c.add(2 * time.Millisecond)
	r.TaskEvent(ev(1, Finished, KindTask))
	r.TaskEvent(ev(2, Submitted, KindTask))
	tr := r.Timeline()
	var x []TraceEvent
	for _, e := range tr.TraceEvents {
		if e.Ph == "X" {
			x = append(x, e)
		}
	}
	if len(x) != 2 {
		t.Fatalf("events: %+v", tr.TraceEvents)
	}
	if x[0].TS != 1000 || *x[0].Dur != 2000 || x[0].Args["state"] != "FINISHED" || x[0].Args["worker"] != "w1" {
		t.Errorf("finished task: %+v", x[0])
	}
	if x[1].Args["state"] != "PENDING" || x[1].PID == x[0].PID {
		t.Errorf("a task that never ran goes on the not-started process: %+v", x[1])
	}
}

func TestServerNeedsTheToken(t *testing.T) {
	r := NewRecorder()
	s := NewServer(hclog.NewNullLogger(), r, fakeSource{}, "secret-token")
	cases := []struct {
		name   string
		path   string
		header string
		cookie string
		want   int
	}{
		{"nothing", "/metrics", "", "", 401},
		{"bearer", "/metrics", "Bearer secret-token", "", 200},
		{"wrong bearer", "/metrics", "Bearer secret-tokem", "", 401},
		{"basic", "/metrics", "Basic secret-token", "", 401},
		{"query", "/api/report?token=secret-token", "", "", 200},
		{"wrong query", "/api/report?token=x", "", "", 401},
		{"cookie", "/api/snapshot", "", "secret-token", 200},
		{"page without", "/", "", "", 401},
		{"page with", "/?token=secret-token", "", "", 200},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest("GET", tc.path, nil)
			if tc.header != "" {
				req.Header.Set("Authorization", tc.header)
			}
			if tc.cookie != "" {
				req.AddCookie(&http.Cookie{Name: cookieName, Value: tc.cookie})
			}
			w := httptest.NewRecorder()
			s.srv.Handler.ServeHTTP(w, req)
			if w.Code != tc.want {
				t.Fatalf("%s: %d, want %d", tc.path, w.Code, tc.want)
			}
		})
	}
}

// FuzzAuth: only the exact token, in one of the three places, is let in.
func FuzzAuth(f *testing.F) {
	f.Add("secret-token", "Bearer secret-token", "x")
	f.Add("", "Bearer ", "")
	f.Add("secret-toke", "Bearer secret-token\x00", "secret-token ")
	r := NewRecorder()
	s := NewServer(hclog.NewNullLogger(), r, fakeSource{}, "secret-token")
	f.Fuzz(func(t *testing.T, query, header, cookie string) {
		req := httptest.NewRequest("GET", "/api/report", nil)
		q := req.URL.Query()
		q.Set("token", query)
		req.URL.RawQuery = q.Encode()
		req.Header.Set("Authorization", header)
		req.AddCookie(&http.Cookie{Name: cookieName, Value: cookie})
		w := httptest.NewRecorder()
		s.srv.Handler.ServeHTTP(w, req)
		c2, _ := req.Cookie(cookieName)
		in := query == "secret-token" || header == "Bearer secret-token" || (c2 != nil && c2.Value == "secret-token")
		if (w.Code == 200) != in {
			t.Fatalf("query %q header %q cookie %q: %d", query, header, cookie, w.Code)
		}
	})
}

func TestEndJobEndsWhatItLeft(t *testing.T) {
	r := NewRecorder()
	a, b := ev(1, Submitted, KindTask), ev(2, Submitted, KindTask)
	a.Job, b.Job = "j1", "j2"
	r.TaskEvent(a)
	r.TaskEvent(b)
	a.State = Running
	r.TaskEvent(a)
	r.EndJob("j1")
	recs, _ := r.Records()
	got := map[byte]string{}
	for _, rec := range recs {
		got[rec.Task[0]] = rec.State.String() + "/" + rec.Reason
	}
	if got[1] != "FAILED/job_ended" || got[2] != "PENDING/" {
		t.Fatalf("after EndJob(j1): %v", got)
	}
	if rep := r.Report(); rep.TasksFailed != 1 {
		t.Errorf("report: %+v", rep)
	}
}

func TestPageDataCountsEveryTaskAndListsTheLatest(t *testing.T) {
	c := &clock{t: time.Unix(1000, 0)}
	r := NewRecorder(WithClock(c.now))
	for i := byte(1); i <= 5; i++ {
		c.add(time.Second)
		e := ev(i, Submitted, KindTask)
		r.TaskEvent(e)
		if i <= 3 {
			e.State = Running
			r.TaskEvent(e)
		}
		if i <= 2 {
			e.State = Finished
			r.TaskEvent(e)
		}
	}
	p := r.PageData(3)
	if len(p.Tasks) != 1 || p.Tasks[0].States["FINISHED"] != 2 || p.Tasks[0].States["RUNNING"] != 1 || p.Tasks[0].States["PENDING"] != 2 {
		t.Fatalf("counts: %+v", p.Tasks)
	}
	var got []string
	for _, rec := range p.Recent {
		got = append(got, rec.Task[:2]+rec.State)
	}
	// the latest activity last: task 2 ended at 1002, task 3 started at 1003, 4 and 5 submitted
	if strings.Join(got, " ") != "03RUNNING 04PENDING 05PENDING" {
		t.Errorf("recent: %v", got)
	}
}
