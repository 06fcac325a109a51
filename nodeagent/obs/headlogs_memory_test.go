package obs

import (
	"fmt"
	"runtime"
	"testing"
	"time"
)

// A million lines written by members' workers cost the head (docs/observability.md "Worker
// output"): before, it kept them all in its ring (up to 100,000 lines, 64 MiB); now it holds a
// line of a driver that prints them only until that driver has read it (every 0.2 s), and none
// of a job whose driver only keeps them: what the head holds no longer grows with members'
// output. Both are measured in this one run; the figures are logged for the doc.
func TestHeadMemoryWithMembersOutput(t *testing.T) {
	if testing.Short() {
		t.Skip("a million lines")
	}
	const n = million
	line := func(i int) Line {
		job := "printing"
		if i%2 == 1 {
			job = "quiet"
		}
		return Line{Time: time.Now(), Node: "node2", Job: job, Worker: job + "-w1", PID: 42, Stream: "stdout",
			Name: "train", Text: fmt.Sprintf("epoch %d loss 0.4213 accuracy 0.8812 lr 0.001", i)}
	}
	// before: every member line went into the head's ring
	before := heap()
	old := NewRing(0, 0)
	for i := 0; i < n; i++ {
		old.Add(line(i))
	}
	oldBytes := int64(heap()) - int64(before)
	runtime.KeepAlive(old)
	old = nil

	// now: the head routes them (a driver reading every 1,000 lines, as every 0.2 s would)
	before = heap()
	r := NewRecorder()
	r.RegisterDriver("printing", true)
	r.RegisterDriver("quiet", false)
	var since uint64
	peak := 0
	for i := 0; i < n; i++ {
		r.AddMemberLog(line(i))
		if i%1000 == 999 {
			if h := r.DriverLines()["node2"]; h > peak {
				peak = h
			}
			_, since = r.DriverLogs("printing", since, 0)
		}
	}
	_, since = r.DriverLogs("printing", since, 0)
	r.DriverLogs("printing", since, 0) // lets go of what it read
	newBytes := int64(heap()) - int64(before)
	t.Logf("the head after %d member lines: before %.1f MiB (its ring), now %.2f MiB (at most %d lines waited for the driver)",
		n, float64(oldBytes)/(1<<20), float64(newBytes)/(1<<20), peak)
	if h := r.DriverLines()["node2"]; h != 0 {
		t.Fatalf("the head still holds %d lines the driver read", h)
	}
	if st := r.LogStats(); st.Lines != 0 {
		t.Fatalf("the head's ring holds %d member lines", st.Lines)
	}
	if newBytes > 2<<20 {
		t.Fatalf("the head grew by %d bytes with members' output", newBytes)
	}
	runtime.KeepAlive(r)
}
