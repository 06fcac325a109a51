package obs

import (
	"encoding/binary"
	"testing"

	"github.com/shoal-hpc/shoal/wire"
)

// BenchmarkTaskLifecycle is what one task costs the agent with observability on: its
// submitted, running and finished events (a figure for docs/benchmarks.md, beside `shoal bench
// core --observability compare`).
func BenchmarkTaskLifecycle(b *testing.B) {
	r := NewRecorder()
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		var id wire.ID
		binary.BigEndian.PutUint64(id[4:], uint64(i))
		e := Event{Task: id, Name: "f", Kind: KindTask, State: Submitted, Job: "j", Node: "n1", Worker: "j-w1", CPU: 1}
		r.TaskEvent(e)
		e.State = Running
		r.TaskEvent(e)
		e.State = Finished
		r.TaskEvent(e)
	}
}

// BenchmarkNilRecorder is the same with observability off.
func BenchmarkNilRecorder(b *testing.B) {
	var r *Recorder
	for i := 0; i < b.N; i++ {
		e := Event{Name: "f", State: Submitted}
		r.TaskEvent(e)
		e.State = Running
		r.TaskEvent(e)
		e.State = Finished
		r.TaskEvent(e)
	}
}
