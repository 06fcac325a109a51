package head

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

func open(t *testing.T, path, id string, opts ...Option) *Head {
	t.Helper()
	h, err := Open(nil, path, Cluster{ID: id, Kind: "run", Node: "n1", Command: "python job.py"}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func state(t *testing.T, h *Head) State {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := h.State(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func actorByID(s State, id string) (Actor, bool) {
	for _, a := range s.Actors {
		if a.ID == id {
			return a, true
		}
	}
	return Actor{}, false
}

// TestEventsReadBack feeds each kind of event and reads the tables back, live and, after
// Close, from the file alone.
func TestEventsReadBack(t *testing.T) {
	type check func(t *testing.T, s State, ended bool)
	cases := []struct {
		name   string
		events func(h *Head)
		check  check
	}{
		{"node joins and is lost", func(h *Head) {
			h.NodeJoined(Node{ID: "n1", Addr: "tcp:10.0.0.1:5", Resources: map[string]float64{"CPU": 2}})
			h.NodeJoined(Node{ID: "n2", Addr: "tcp:10.0.0.2:5", Resources: map[string]float64{"CPU": 4, "GPU": 1}})
			h.NodeLost("n2")
		}, func(t *testing.T, s State, ended bool) {
			if len(s.Nodes) != 2 || s.Nodes[0].ID != "n1" || s.Nodes[1].Resources["GPU"] != 1 {
				t.Fatalf("nodes %+v", s.Nodes)
			}
			if s.Nodes[0].Alive == ended || s.Nodes[1].Alive || s.Nodes[1].LeftMS == 0 {
				t.Fatalf("liveness (ended=%v): %+v", ended, s.Nodes)
			}
		}},
		{"job starts and ends; the command's exit code decides its outcome", func(h *Head) {
			h.JobStarted("j1", 42, "python")
			h.JobStarted("j2", 43, "python")
			h.JobEnded("j1", "FINISHED")
			h.CommandExited(42, 3)
			h.JobStarted("j3", 44, "go")
		}, func(t *testing.T, s State, ended bool) {
			if len(s.Jobs) != 3 {
				t.Fatalf("jobs %+v", s.Jobs)
			}
			j1, j2, j3 := s.Jobs[0], s.Jobs[1], s.Jobs[2]
			if j1.Status != "FAILED" || j1.ExitCode == nil || *j1.ExitCode != 3 || j1.EndedMS == 0 || j1.PID != 42 {
				t.Fatalf("job 1: %+v", j1)
			}
			want := "RUNNING"
			if ended {
				want = "STOPPED"
			}
			if j2.Status != want || j2.ExitCode != nil || j3.Status != want {
				t.Fatalf("jobs 2, 3 (ended=%v): %+v %+v", ended, j2, j3)
			}
			if s.Cluster.ExitCode == nil || *s.Cluster.ExitCode != 3 {
				t.Fatalf("cluster exit code: %+v", s.Cluster)
			}
		}},
		{"actor lives, restarts, dies with a cause", func(h *Head) {
			h.ActorCreated(Actor{ID: "a1", Job: "j", Name: "svc", NS: "ns", Class: "Svc", State: "PENDING", Node: "n1", Meta: []byte{7}})
			h.ActorState("a1", "ALIVE", 0, "")
			h.ActorState("a1", "RESTARTING", 1, "")
			h.ActorState("a1", "ALIVE", 1, "")
			h.ActorCreated(Actor{ID: "a2", Job: "j", Class: "Bad", State: "PENDING", Node: "n1"})
			h.ActorState("a2", "DEAD", 0, "ValueError: no")
			h.ActorCreated(Actor{ID: "a3", Job: "j", Class: "Idle", State: "PENDING", Node: "n1"})
		}, func(t *testing.T, s State, ended bool) {
			a1, _ := actorByID(s, "a1")
			a2, _ := actorByID(s, "a2")
			a3, _ := actorByID(s, "a3")
			if a1.Name != "svc" || a1.NS != "ns" || a1.Restarts != 1 || a1.Class != "Svc" {
				t.Fatalf("a1 %+v", a1)
			}
			if a2.State != "DEAD" || a2.Death != "ValueError: no" || a2.EndedMS == 0 {
				t.Fatalf("a2 %+v", a2)
			}
			if ended {
				if a1.State != "DEAD" || a1.Death != "the cluster ended" || a3.State != "DEAD" {
					t.Fatalf("after the end: %+v %+v", a1, a3)
				}
			} else if a1.State != "ALIVE" || a3.State != "PENDING" || a1.EndedMS != 0 {
				t.Fatalf("live: %+v %+v", a1, a3)
			}
		}},
		{"placement groups created, placed, removed, infeasible", func(h *Head) {
			h.PlacementGroupCreated(PlacementGroup{ID: "p1", Job: "j", Name: "gang", Strategy: "STRICT_SPREAD",
				Bundles: []map[string]float64{{"CPU": 1}, {"CPU": 1}}, State: "PENDING"})
			h.PlacementGroupState("p1", "CREATED")
			h.PlacementGroupCreated(PlacementGroup{ID: "p2", Job: "j", Strategy: "PACK", Bundles: []map[string]float64{{"GPU": 64}}, State: "PENDING"})
			h.PlacementGroupState("p2", "INFEASIBLE")
			h.PlacementGroupCreated(PlacementGroup{ID: "p3", Job: "j", Strategy: "SPREAD", Bundles: []map[string]float64{{"CPU": 1}}, State: "PENDING"})
			h.PlacementGroupState("p3", "CREATED")
			h.PlacementGroupState("p3", "REMOVED")
		}, func(t *testing.T, s State, ended bool) {
			if len(s.PlacementGroups) != 3 {
				t.Fatalf("%+v", s.PlacementGroups)
			}
			p1, p2, p3 := s.PlacementGroups[0], s.PlacementGroups[1], s.PlacementGroups[2]
			if p1.Name != "gang" || len(p1.Bundles) != 2 || p1.Bundles[1]["CPU"] != 1 || p1.Strategy != "STRICT_SPREAD" {
				t.Fatalf("p1 %+v", p1)
			}
			want := "CREATED"
			if ended {
				want = "REMOVED"
			}
			if p1.State != want || p2.State != "INFEASIBLE" || p3.State != "REMOVED" || p3.RemovedMS == 0 {
				t.Fatalf("states (ended=%v): %s %s %s", ended, p1.State, p2.State, p3.State)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "head.db")
			h := open(t, p, "c1")
			tc.events(h)
			s := state(t, h)
			if s.Cluster.ID != "c1" || s.Cluster.Kind != "run" || s.Cluster.EndedMS != 0 {
				t.Fatalf("cluster %+v", s.Cluster)
			}
			tc.check(t, s, false)
			if err := h.Close(); err != nil {
				t.Fatal(err)
			}
			for _, side := range []string{"-wal", "-shm"} {
				if _, err := os.Stat(p + side); err == nil {
					t.Fatalf("%s left after Close: the file must stand alone", side)
				}
			}
			s, err := ReadFile(context.Background(), p)
			if err != nil {
				t.Fatal(err)
			}
			if s.Cluster.EndedMS == 0 || s.Path != p {
				t.Fatalf("after Close: %+v", s.Cluster)
			}
			tc.check(t, s, true)
		})
	}
}

func TestFileMode(t *testing.T) {
	p := filepath.Join(t.TempDir(), "head.db")
	h := open(t, p, "c1")
	h.JobStarted("j", 1, "python")
	state(t, h)
	for _, f := range []string{p, p + "-wal", p + "-shm"} {
		st, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", f, st.Mode().Perm())
		}
	}
	h.Close()
}

// TestNames: a live actor's name is unique in its namespace, from the call on (no write
// needed), free again when the actor dies, and still reserved after a reopen from disk.
func TestNames(t *testing.T) {
	p := filepath.Join(t.TempDir(), "head.db")
	h := open(t, p, "c1")
	steps := []struct {
		name    string
		do      func() error
		wantErr error
	}{
		{"first of its name", func() error {
			return h.ActorCreated(Actor{ID: "a1", Job: "j", Name: "svc", Class: "S", State: "PENDING", Node: "n", Meta: []byte{1}})
		}, nil},
		{"same name, same namespace", func() error {
			return h.ActorCreated(Actor{ID: "a2", Job: "j", Name: "svc", Class: "S", State: "PENDING", Node: "n"})
		}, ErrNameTaken},
		{"same name, other namespace", func() error {
			return h.ActorCreated(Actor{ID: "a3", Job: "j", Name: "svc", NS: "other", Class: "S", State: "PENDING", Node: "n"})
		}, nil},
		{"unnamed actors never clash", func() error {
			if err := h.ActorCreated(Actor{ID: "a4", Job: "j", Class: "S", State: "PENDING", Node: "n"}); err != nil {
				return err
			}
			return h.ActorCreated(Actor{ID: "a5", Job: "j", Class: "S", State: "PENDING", Node: "n"})
		}, nil},
		{"lookup right after creation reads the table", func() error {
			a, err := h.LookupActor("", "svc")
			if err == nil && (a.ID != "a1" || len(a.Meta) != 1 || a.Meta[0] != 1) {
				err = fmt.Errorf("lookup: %+v", a)
			}
			return err
		}, nil},
		{"unknown name", func() error { _, err := h.LookupActor("", "nobody"); return err }, ErrNotFound},
		{"restarting keeps the name", func() error {
			h.ActorState("a1", "RESTARTING", 1, "")
			return h.ActorCreated(Actor{ID: "a6", Job: "j", Name: "svc", Class: "S", State: "PENDING", Node: "n"})
		}, ErrNameTaken},
		{"survives a reopen of a killed head's file", func() error {
			// a head killed before Close: its committed rows are all there is
			if err := h.Flush(context.Background()); err != nil {
				return err
			}
			h.r.Close()
			h.w.Close()
			h = open(t, p, "c1")
			if _, err := h.LookupActor("other", "svc"); err != nil {
				return err
			}
			return h.ActorCreated(Actor{ID: "a7", Job: "j", Name: "svc", NS: "other", Class: "S", State: "PENDING", Node: "n"})
		}, ErrNameTaken},
		{"a dead actor's name is free", func() error {
			h.ActorState("a3", "DEAD", 0, "killed")
			if _, err := h.LookupActor("other", "svc"); !errors.Is(err, ErrNotFound) {
				return fmt.Errorf("dead actor still found: %v", err)
			}
			return h.ActorCreated(Actor{ID: "a8", Job: "j", Name: "svc", NS: "other", Class: "S", State: "PENDING", Node: "n"})
		}, nil},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			err := st.do()
			if st.wantErr == nil && err != nil || st.wantErr != nil && !errors.Is(err, st.wantErr) {
				t.Fatalf("got %v, want %v", err, st.wantErr)
			}
		})
	}
	s := state(t, h)
	if a, ok := actorByID(s, "a8"); !ok || a.State != "PENDING" || a.NS != "other" {
		t.Fatalf("a8 %+v", a)
	}
	// a Close ends the cluster: its actors' rows stay, their names are free
	h.Close()
	h = open(t, p, "c1")
	defer h.Close()
	if _, err := h.LookupActor("other", "svc"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("an ended cluster's actor is still found: %v", err)
	}
	if a, ok := actorByID(state(t, h), "a8"); !ok || a.State != "DEAD" || a.Death != "the cluster ended" {
		t.Fatalf("a8 after the end: %+v", a)
	}
}

// TestUniqueConstraint: the table's own unique index refuses a second live name, and the
// refusal is recognised by its SQLite code, not its text.
func TestUniqueConstraint(t *testing.T) {
	p := filepath.Join(t.TempDir(), "head.db")
	h := open(t, p, "c1")
	h.Close()
	db, err := sql.Open("sqlite3", "file:"+p)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ins := `INSERT INTO actors(id, job, name, ns, class, state, node, created_at) VALUES(?, 'j', 'x', '', 'C', ?, 'n', 0)`
	if _, err := db.Exec(ins, "a1", "ALIVE"); err != nil {
		t.Fatal(err)
	}
	_, err = db.Exec(ins, "a2", "ALIVE")
	if !isUnique(err) {
		t.Fatalf("second live name: %v, want a unique constraint error", err)
	}
	if isUnique(errors.New("UNIQUE constraint failed: actors.ns")) {
		t.Fatal("isUnique matched an error by its text")
	}
	if _, err := db.Exec(ins, "a3", "DEAD"); err != nil {
		t.Fatalf("a dead actor may share the name: %v", err)
	}
}

// TestConcurrentReaders: readers see a consistent table while the writer keeps committing.
func TestConcurrentReaders(t *testing.T) {
	h := open(t, filepath.Join(t.TempDir(), "head.db"), "c1")
	defer h.Close()
	const actors = 400
	done := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for r := 0; r < 4; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			last := 0
			for {
				select {
				case <-done:
					return
				default:
				}
				s, err := h.State(context.Background())
				if err != nil {
					errs <- err
					return
				}
				if len(s.Actors) < last {
					errs <- fmt.Errorf("a reader saw %d actors after %d", len(s.Actors), last)
					return
				}
				last = len(s.Actors)
				for _, a := range s.Actors {
					if a.State != "PENDING" && a.State != "ALIVE" {
						errs <- fmt.Errorf("actor %s in state %q", a.ID, a.State)
						return
					}
				}
			}
		}()
	}
	for i := 0; i < actors; i++ {
		id := fmt.Sprintf("a%d", i)
		if err := h.ActorCreated(Actor{ID: id, Job: "j", Name: id, Class: "C", State: "PENDING", Node: "n"}); err != nil {
			t.Fatal(err)
		}
		h.ActorState(id, "ALIVE", 0, "")
	}
	s := state(t, h)
	close(done)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if len(s.Actors) != actors {
		t.Fatalf("%d actors, want %d", len(s.Actors), actors)
	}
}

// TestFullQueueDrops: with the writer held up, events beyond the queue's room are dropped and
// counted, and the caller never waits.
func TestFullQueueDrops(t *testing.T) {
	p := filepath.Join(t.TempDir(), "head.db")
	h := open(t, p, "c1", WithQueue(4))
	// hold the database's write lock from another connection: the writer's BEGIN IMMEDIATE
	// waits (busy timeout), so the queue fills
	db, err := sql.Open("sqlite3", "file:"+p+"?_txlock=immediate")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(`UPDATE cluster SET kind=kind`); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 50; i++ {
		h.JobStarted(fmt.Sprintf("j%d", i), i, "python")
	}
	if h.dropped.Load() == 0 {
		t.Fatal("no event dropped with a blocked writer and a queue of 4")
	}
	tx.Rollback()
	s := state(t, h)
	if int64(len(s.Jobs))+s.Cluster.Dropped != 50 {
		t.Fatalf("%d jobs written + %d dropped != 50 events", len(s.Jobs), s.Cluster.Dropped)
	}
	h.Close()
	s, err = ReadFile(context.Background(), p)
	if err != nil || s.Cluster.Dropped == 0 {
		t.Fatalf("the drop count is not in the file: %+v %v", s.Cluster, err)
	}
}

// TestHistory: clusters sharing a state directory keep one file each and are listed oldest
// first; a closed head ignores late events.
func TestHistory(t *testing.T) {
	dir := t.TempDir()
	ids := []string{"aaaaaaaaaaaa", "bbbbbbbbbbbb", "cccccccccccc"}
	heads := map[string]*Head{}
	for i, id := range ids {
		heads[id] = open(t, FileName(dir, id), id)
		heads[id].JobStarted(id+"-0001", i, "python")
		time.Sleep(2 * time.Millisecond) // distinct start times order the listing
	}
	for _, id := range ids[:2] {
		heads[id].CommandExited(0, 0)
		if err := heads[id].Close(); err != nil {
			t.Fatal(err)
		}
		heads[id].JobStarted("late", 9, "python") // after Close: ignored, no panic
	}
	os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("x"), 0o600)
	hs, err := History(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(hs) != 3 {
		t.Fatalf("%d clusters, want 3", len(hs))
	}
	for i, s := range hs {
		if s.Cluster.ID != ids[i] || len(s.Jobs) != 1 || s.Jobs[0].ID != ids[i]+"-0001" {
			t.Fatalf("cluster %d: %+v %+v", i, s.Cluster, s.Jobs)
		}
		if ended := s.Cluster.EndedMS != 0; ended != (i < 2) {
			t.Fatalf("cluster %s ended=%v", s.Cluster.ID, ended)
		}
	}
	heads[ids[2]].Close()
}

func TestReadFileErrors(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "head.db")
	h := open(t, p, "c1")
	h.Close()
	db, _ := sql.Open("sqlite3", "file:"+p)
	db.Exec(`PRAGMA user_version = 99`)
	db.Close()
	cases := []struct {
		name string
		path string
		want error
	}{
		{"missing file", filepath.Join(dir, "none.db"), os.ErrNotExist},
		{"newer schema", p, ErrSchema},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ReadFile(context.Background(), tc.path); !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
	if _, err := Open(nil, p, Cluster{ID: "c1"}); !errors.Is(err, ErrSchema) {
		t.Fatalf("reopening a newer file: %v", err)
	}
}

// BenchmarkEvent is the cost of an event to its caller (the agent): a queued write, not a
// written one. The queue holds every event, so none is dropped.
func BenchmarkEvent(b *testing.B) {
	h, err := Open(nil, filepath.Join(b.TempDir(), "head.db"), Cluster{ID: "c1"}, WithQueue(b.N+16))
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close()
	h.ActorCreated(Actor{ID: "a", Job: "j", Class: "C", State: "PENDING", Node: "n"})
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		h.ActorState("a", "ALIVE", i, "")
	}
	b.StopTimer()
	h.Flush(context.Background())
	if d := h.dropped.Load(); d != 0 {
		b.Fatalf("%d events dropped", d)
	}
}

// BenchmarkCommit is the writer's throughput: time per event until it is committed.
func BenchmarkCommit(b *testing.B) {
	h, err := Open(nil, filepath.Join(b.TempDir(), "head.db"), Cluster{ID: "c1"})
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close()
	h.ActorCreated(Actor{ID: "a", Job: "j", Class: "C", State: "PENDING", Node: "n"})
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		h.ActorState("a", "ALIVE", i, "")
		if i%(DefaultQueue/2) == 0 {
			h.Flush(context.Background()) // keep the queue from overflowing: measure commits, not drops
		}
	}
	h.Flush(context.Background())
	b.StopTimer()
	if d := h.dropped.Load(); d != 0 {
		b.Fatalf("%d events dropped", d)
	}
}
