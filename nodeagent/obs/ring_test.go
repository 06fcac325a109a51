package obs

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)

func lineAt(node string, ms int, text string) Line {
	return Line{Time: t0.Add(time.Duration(ms) * time.Millisecond), Node: node, Job: "j", Worker: "j-w1", Task: "aa", Text: text}
}

// The ring keeps the newest lines within its bound of lines and of bytes, and a reader whose
// cursor is before what it dropped is told how many it missed.
func TestRingBoundAndDropped(t *testing.T) {
	g := NewRing(3, 1<<20)
	for i := 1; i <= 5; i++ {
		g.Add(lineAt("n", i, fmt.Sprint("line", i)))
	}
	p := g.Page(LogFilter{}, 0, 0, 0)
	if len(p.Lines) != 3 || p.Lines[0].Text != "line3" || p.Lines[2].Text != "line5" || p.Dropped != 2 || p.Next != 5 || p.More {
		t.Fatalf("page %+v", p)
	}
	if st := g.Stats(); st.Lines != 3 || st.Dropped != 2 || st.Bytes != 15 {
		t.Fatalf("stats %+v", st)
	}
	if p := g.Page(LogFilter{}, 4, 0, 0); len(p.Lines) != 1 || p.Dropped != 0 {
		t.Fatalf("from 4: %+v", p)
	}
	// bytes: 10 bytes keep two 5-byte lines
	g = NewRing(100, 10)
	for i := 0; i < 4; i++ {
		g.Add(lineAt("n", i, "abcde"))
	}
	if st := g.Stats(); st.Lines != 2 || st.Bytes != 10 || st.Dropped != 2 {
		t.Fatalf("byte bound: %+v", st)
	}
	// a line longer than the byte bound is still kept (the newest line always is)
	g.Add(lineAt("n", 9, strings.Repeat("x", 50)))
	if st := g.Stats(); st.Lines != 1 || st.Bytes != 50 {
		t.Fatalf("long line: %+v", st)
	}
	// a smaller bound drops at once
	g = NewRing(10, 1<<20)
	for i := 0; i < 10; i++ {
		g.Add(lineAt("n", i, "x"))
	}
	g.SetBound(4, 0)
	if st := g.Stats(); st.Lines != 4 || st.MaxBytes != DefaultMaxLogBytes {
		t.Fatalf("SetBound: %+v", st)
	}
}

// Pages: a filter, a bound in lines and in bytes, and the cursor that resumes where a page
// stopped without losing or repeating a line.
func TestRingPagination(t *testing.T) {
	g := NewRing(0, 0)
	for i := 1; i <= 25; i++ {
		l := lineAt("n", i, fmt.Sprint(i))
		if i%5 == 0 {
			l.Task = "bb"
		}
		g.Add(l)
	}
	var got []string
	since := uint64(0)
	pages := 0
	for {
		p := g.Page(LogFilter{Task: "b"}, since, 2, 0)
		pages++
		for _, l := range p.Lines {
			got = append(got, l.Text)
		}
		since = p.Next
		if !p.More {
			break
		}
	}
	if strings.Join(got, ",") != "5,10,15,20,25" || since != 25 {
		t.Fatalf("got %v, next %d", got, since)
	}
	if pages != 3 {
		t.Fatalf("%d pages for 5 lines by 2", pages)
	}
	// bytes: each line costs its text and lineCost
	p := g.Page(LogFilter{}, 0, 0, 2*lineCost)
	if len(p.Lines) != 2 || !p.More || p.Next != 2 {
		t.Fatalf("byte-bounded page: %d lines, more %v, next %d", len(p.Lines), p.More, p.Next)
	}
	// nothing new: the same cursor
	if p := g.Page(LogFilter{}, 25, 0, 0); len(p.Lines) != 0 || p.Next != 25 || p.More {
		t.Fatalf("empty page %+v", p)
	}
}

// Merge orders lines of several nodes by time, keeps a cursor per node, holds back lines later
// than a node's page that stopped at its bound, and names nodes gone and drops.
func TestMergeByTimeAndCursor(t *testing.T) {
	n1, n2 := NewRing(0, 0), NewRing(0, 0)
	for i := 0; i < 10; i++ {
		n1.Add(lineAt("n1", 2*i, fmt.Sprint("a", i)))   // 0, 2, 4, ...
		n2.Add(lineAt("n2", 2*i+1, fmt.Sprint("b", i))) // 1, 3, 5, ...
	}
	var all []string
	cur := Cursor{}
	for round := 0; ; round++ {
		if round > 20 {
			t.Fatal("no end")
		}
		pages := []NodePage{
			{Node: "n1", LogPage: n1.Page(LogFilter{}, cur["n1"], 3, 0)},
			{Node: "n2", LogPage: n2.Page(LogFilter{}, cur["n2"], 4, 0)},
			{Node: "n3", Gone: true, Err: "its agent is gone"},
		}
		m := Merge(cur, pages)
		if m.Gone["n3"] == "" {
			t.Fatalf("n3 not named gone: %+v", m)
		}
		for _, l := range m.Lines {
			all = append(all, l.Text)
		}
		cur = m.Next
		if !m.More {
			break
		}
	}
	want := []string{}
	for i := 0; i < 10; i++ {
		want = append(want, fmt.Sprint("a", i), fmt.Sprint("b", i))
	}
	if strings.Join(all, ",") != strings.Join(want, ",") {
		t.Fatalf("merged\n%v\nwant\n%v", all, want)
	}
	if cur["n1"] != 10 || cur["n2"] != 10 {
		t.Fatalf("cursor %v", cur)
	}
	m := Merge(Cursor{}, []NodePage{{Node: "n1", LogPage: LogPage{Lines: []Line{}, Dropped: 7}}, {Node: "n2", Gone: true, Err: "why"}})
	notes := strings.Join(m.Notes(), "\n")
	if !strings.Contains(notes, "node n2 is gone: why") || !strings.Contains(notes, "node n1 dropped 7 older lines") {
		t.Fatalf("notes %q", notes)
	}
}

// What waits at the head for a driver is let go once the driver has read it, bounded while it
// does not read, and gone when the job ends; a member's line is never kept in the head's ring.
func TestDriverQueue(t *testing.T) {
	r := NewRecorder()
	var echoed []string
	r.SetLogEcho(func(l Line) { echoed = append(echoed, l.Text) })
	r.RegisterDriver("d", true)
	r.RegisterDriver("q", false)
	r.AddMemberLog(Line{Node: "m1", Job: "d", Text: "to driver"})
	r.AddMemberLog(Line{Node: "m1", Job: "q", Text: "kept on m1 only"})
	r.AddMemberLog(Line{Node: "m1", Job: "go", Text: "echoed"})
	r.AddLog(Line{Node: "h", Job: "d", Text: "head line"})
	if st := r.LogStats(); st.Lines != 1 {
		t.Fatalf("the head's ring holds %d lines; want its own one", st.Lines)
	}
	if strings.Join(echoed, ",") != "echoed" {
		t.Fatalf("echoed %v", echoed)
	}
	if h := r.DriverLines(); h["m1"] != 1 || h["h"] != 1 {
		t.Fatalf("waiting for drivers: %v", h)
	}
	lines, next := r.DriverLogs("d", 0, 0)
	if len(lines) != 2 || lines[0].Text != "to driver" || next != 2 {
		t.Fatalf("driver read %+v next %d", lines, next)
	}
	if _, n := r.DriverLogs("d", next, 0); n != next {
		t.Fatalf("next moved to %d", n)
	}
	if h := r.DriverLines(); len(h) != 0 && (h["m1"] != 0 || h["h"] != 0) {
		t.Fatalf("read lines still held: %v", h)
	}
	for i := 0; i < DriverQueueLines+5; i++ {
		r.AddMemberLog(Line{Node: "m1", Job: "d", Text: "x"})
	}
	if h := r.DriverLines(); h["m1"] != DriverQueueLines {
		t.Fatalf("an unread queue holds %d lines; bound %d", h["m1"], DriverQueueLines)
	}
	r.EndJob("d")
	r.AddMemberLog(Line{Node: "m1", Job: "d", Text: "late"})
	if h := r.DriverLines(); h["m1"] != 0 || len(echoed) != 1 {
		t.Fatalf("after the job ended: held %v, echoed %v", h, echoed)
	}
}
