package obs

import (
	"encoding/binary"
	"fmt"
	"runtime"
	"testing"

	"github.com/shoal-hpc/shoal/wire"
)

func heap() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

const million = 1_000_000

// grown runs feed on a new recorder (skipped with -short) and returns it with the heap bytes it
// added.
func grown(t *testing.T, feed func(r *Recorder)) (*Recorder, int64) {
	if testing.Short() {
		t.Skip("a million tasks")
	}
	before := heap()
	r := NewRecorder()
	feed(r)
	return r, int64(heap()) - int64(before)
}

func taskEvent(i int, s State) Event {
	var id wire.ID
	binary.BigEndian.PutUint64(id[4:], uint64(i))
	// a worker per 1,000 tasks: a long job's workers come and go (their names are interned)
	return Event{Task: id, Name: "f", Kind: KindTask, State: s, Job: "j", Node: "n1",
		Worker: fmt.Sprintf("j-w%d", i/1000), CPU: 1}
}

// A million tasks through the recorder cost it no more than its bound of ended records: the
// timeline keeps the newest DefaultMaxRecords, the counters count them all, and the interned
// names of workers long gone are dropped.
func TestRecorderMemoryAfterAMillionTasks(t *testing.T) {
	const n = million
	r, grown := grown(t, func(r *Recorder) {
		for i := 0; i < n; i++ {
			r.TaskEvent(taskEvent(i, Submitted))
			r.TaskEvent(taskEvent(i, Running))
			r.TaskEvent(taskEvent(i, Finished))
		}
	})
	recs, dropped := r.Records()
	if len(recs) != DefaultMaxRecords || dropped != n-DefaultMaxRecords {
		t.Fatalf("kept %d records and dropped %d; want %d and %d", len(recs), dropped, DefaultMaxRecords, n-DefaultMaxRecords)
	}
	if last := recs[len(recs)-1]; last.Worker != fmt.Sprintf("j-w%d", (n-1)/1000) || last.State != Finished {
		t.Fatalf("the newest record is %+v", last)
	}
	if rep := r.Report(); rep.Tasks != n {
		t.Fatalf("the report counts %d tasks, want %d", rep.Tasks, n)
	}
	// 100,000 slots of 96 bytes, the interner and the Prometheus registry
	const bound = 16 << 20
	t.Logf("recorder after %d tasks: %.1f MiB (%d B per kept record)", n, float64(grown)/(1<<20), grown/DefaultMaxRecords)
	if grown > bound {
		t.Fatalf("the recorder holds %d bytes after %d tasks; its bound is %d", grown, n, bound)
	}
	runtime.KeepAlive(r)
}

// A million queued tasks (submitted, not yet run) cost the recorder about 250 bytes each (the
// live map: a 96-byte slot by value, at the map's load), on top of what the core keeps for them
// (sched: about 300 B per queued task, docs/benchmarks.md).
func TestRecorderMemoryOfAMillionQueuedTasks(t *testing.T) {
	const n = million
	r, bytes := grown(t, func(r *Recorder) {
		for i := 0; i < n; i++ {
			r.TaskEvent(taskEvent(i, Submitted))
		}
	})
	per := bytes / n
	t.Logf("recorder: %d B per queued task", per)
	if per > 320 {
		t.Fatalf("a queued task costs the recorder %d bytes; want at most 320", per)
	}
	runtime.KeepAlive(r)
}
