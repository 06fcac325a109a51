package obs

import (
	"sort"
	"sync"
)

// Ring keeps one node's newest worker lines within a bound of lines and of text bytes (the
// oldest go first), numbering them: each node's agent has one, and `shoal logs`, the page and
// OBSERVE logs read them page by page with a cursor per node (LogPage, Merge).
type Ring struct {
	mu                 sync.Mutex
	maxLines, maxBytes int
	lines              []Line // lines[start:] are kept, oldest first
	start              int
	bytes              int    // text bytes kept
	seq                uint64 // the last line's Seq
	dropped            uint64 // lines dropped for the bound, ever
}

// RingStats are a ring's figures.
type RingStats struct {
	Lines, Bytes       int
	Dropped            uint64
	MaxLines, MaxBytes int
}

// NewRing returns a ring of at most maxLines lines and maxBytes bytes of text (0 or less: the
// defaults, DefaultMaxLogLines and DefaultMaxLogBytes).
func NewRing(maxLines, maxBytes int) *Ring {
	g := &Ring{}
	g.SetBound(maxLines, maxBytes)
	return g
}

// SetBound changes the bound (0 or less: the default), dropping what no longer fits.
func (g *Ring) SetBound(maxLines, maxBytes int) {
	if maxLines <= 0 {
		maxLines = DefaultMaxLogLines
	}
	if maxBytes <= 0 {
		maxBytes = DefaultMaxLogBytes
	}
	g.mu.Lock()
	g.maxLines, g.maxBytes = maxLines, maxBytes
	g.trim()
	g.mu.Unlock()
}

// Add keeps l, numbering it, and returns it numbered.
func (g *Ring) Add(l Line) Line {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.maxLines == 0 {
		g.maxLines, g.maxBytes = DefaultMaxLogLines, DefaultMaxLogBytes
	}
	g.seq++
	l.Seq = g.seq
	g.lines = append(g.lines, l)
	g.bytes += len(l.Text)
	g.trim()
	return l
}

func (g *Ring) trim() {
	for len(g.lines)-g.start > g.maxLines || (g.bytes > g.maxBytes && len(g.lines)-g.start > 1) {
		g.bytes -= len(g.lines[g.start].Text)
		g.lines[g.start] = Line{}
		g.start++
		g.dropped++
	}
	if g.start > 1024 && g.start > len(g.lines)/2 { // give the dropped lines' room back
		g.lines = append([]Line(nil), g.lines[g.start:]...)
		g.start = 0
	}
}

// Stats returns the ring's figures.
func (g *Ring) Stats() RingStats {
	g.mu.Lock()
	defer g.mu.Unlock()
	return RingStats{Lines: len(g.lines) - g.start, Bytes: g.bytes, Dropped: g.dropped, MaxLines: g.maxLines, MaxBytes: g.maxBytes}
}

// LogPage is one answer of a ring: the lines after a cursor that match a filter, oldest first.
type LogPage struct {
	Lines []Line `json:"lines"`
	// Next is the cursor to ask from next time: the Seq of the last line looked at.
	Next uint64 `json:"next"`
	// More says the page stopped at its bound before the ring's newest line.
	More bool `json:"more,omitempty"`
	// Dropped counts the lines after the cursor that the ring dropped for its bound before
	// they were asked for (of any task: the ring does not know what they were).
	Dropped uint64 `json:"dropped,omitempty"`
}

// lineCost is what a line costs an answer beyond its text (its fields, encoded).
const lineCost = 128

// Page returns the lines after since that match f: at most maxLines (0 or less: no bound) and
// about maxBytes of them (0 or less: no bound; at least one line).
func (g *Ring) Page(f LogFilter, since uint64, maxLines, maxBytes int) LogPage {
	g.mu.Lock()
	defer g.mu.Unlock()
	p := LogPage{Lines: []Line{}, Next: since}
	kept := g.lines[g.start:]
	if len(kept) > 0 && kept[0].Seq > since+1 {
		p.Dropped = kept[0].Seq - since - 1
	} else if len(kept) == 0 && g.seq > since {
		p.Dropped = g.seq - since
	}
	from := sort.Search(len(kept), func(i int) bool { return kept[i].Seq > since }) // Seqs rise
	size := 0
	for i := from; i < len(kept); i++ {
		l := &kept[i]
		if (maxLines > 0 && len(p.Lines) >= maxLines) || (maxBytes > 0 && size >= maxBytes) {
			p.More = true
			return p
		}
		p.Next = l.Seq
		if f.match(l) {
			p.Lines = append(p.Lines, *l)
			size += len(l.Text) + lineCost
		}
	}
	if p.Next < g.seq {
		p.Next = g.seq
	}
	return p
}
