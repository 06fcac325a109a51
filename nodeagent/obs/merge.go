package obs

import (
	"fmt"
	"sort"
	"time"
)

// LogSource is an agent that answers log queries from every node's ring (the head's:
// nodeagent.Agent.ClusterLogs).
type LogSource interface {
	ClusterLogs(f LogFilter, cur Cursor, maxLines int) (Merged, error)
}

// TailLogs reads every page of src's lines that match f and returns the newest tail of them
// (with the drops and gone nodes of every page). It asks at most 100 pages.
func TailLogs(src LogSource, f LogFilter, tail int) (Merged, error) {
	out := Merged{Lines: []Line{}}
	cur := Cursor{}
	for range 100 {
		m, err := src.ClusterLogs(f, cur, 0)
		if err != nil {
			return out, err
		}
		out.Lines = append(out.Lines, m.Lines...)
		if len(out.Lines) > tail {
			out.Lines = append([]Line(nil), out.Lines[len(out.Lines)-tail:]...)
		}
		for n, d := range m.Dropped {
			if out.Dropped == nil {
				out.Dropped = map[string]uint64{}
			}
			out.Dropped[n] += d
		}
		for n, why := range m.Gone {
			if out.Gone == nil {
				out.Gone = map[string]string{}
			}
			out.Gone[n] = why
		}
		out.Next, cur = m.Next, m.Next
		if !m.More {
			return out, nil
		}
	}
	out.More = true
	return out, nil
}

// Notes are the lines that tell a reader what an answer lacks: one per node that is gone and
// one per node whose ring dropped lines before they were asked for.
func (m Merged) Notes() []string {
	var out []string
	for _, n := range sortedKeys(m.Gone) {
		out = append(out, fmt.Sprintf("shoal logs: node %s is gone: %s", n, m.Gone[n]))
	}
	for _, n := range sortedKeys(m.Dropped) {
		out = append(out, fmt.Sprintf("shoal logs: node %s dropped %d older lines for its bound (--log-lines, --log-bytes)", n, m.Dropped[n]))
	}
	return out
}

// Cursor is where a reader of the cluster's lines is in each node's ring: the Seq of the last
// line it looked at, by node (a node not in it: from its ring's oldest line).
type Cursor map[string]uint64

// Default bounds of one node's page in an answer of `shoal logs`, the page or OBSERVE logs.
const (
	PageLines = 1000
	PageBytes = 1 << 20
)

// NodePage is one node's answer to a log query.
type NodePage struct {
	Node string
	LogPage
	// Gone says the node's agent is gone (or did not answer): its lines went with it.
	Gone bool
	Err  string
}

// Merged is the cluster's answer to a log query: every node's lines after the cursor, by time.
type Merged struct {
	Lines []Line `json:"lines"`
	// Next is the cursor for the next query.
	Next Cursor `json:"next"`
	// More says some node has more lines than this answer carries: ask again at once.
	More bool `json:"more,omitempty"`
	// Dropped counts, by node, the lines its ring dropped for its bound before they were
	// asked for.
	Dropped map[string]uint64 `json:"dropped,omitempty"`
	// Gone names the nodes whose agents are gone, with their lines, and why.
	Gone map[string]string `json:"gone,omitempty"`
}

// Merge merges the nodes' pages, asked from cur, by time. Where a node's page stopped at its
// bound (More), lines of other nodes later than its last are held back for the next answer
// (their cursors stay before them), so that the lines come out in time order across answers
// too and none is lost or repeated.
func Merge(cur Cursor, pages []NodePage) Merged {
	m := Merged{Lines: []Line{}, Next: Cursor{}}
	for k, v := range cur {
		m.Next[k] = v
	}
	var cutoff time.Time // the earliest last line of a page that stopped at its bound
	for _, p := range pages {
		if p.Gone {
			if m.Gone == nil {
				m.Gone = map[string]string{}
			}
			m.Gone[p.Node] = p.Err
			continue
		}
		if p.More && len(p.Lines) > 0 {
			if t := p.Lines[len(p.Lines)-1].Time; cutoff.IsZero() || t.Before(cutoff) {
				cutoff = t
			}
		}
	}
	for _, p := range pages {
		if p.Gone {
			continue
		}
		if p.Dropped > 0 {
			if m.Dropped == nil {
				m.Dropped = map[string]uint64{}
			}
			m.Dropped[p.Node] = p.Dropped
		}
		next, lines := p.Next, p.Lines
		if !cutoff.IsZero() {
			k := sort.Search(len(lines), func(i int) bool { return lines[i].Time.After(cutoff) })
			if k < len(lines) { // hold back lines[k:]: ask again from just before them
				next = lines[k].Seq - 1
				lines = lines[:k]
				m.More = true
			}
		}
		m.More = m.More || p.More
		m.Next[p.Node] = next
		m.Lines = append(m.Lines, lines...)
	}
	sort.SliceStable(m.Lines, func(i, j int) bool {
		a, b := &m.Lines[i], &m.Lines[j]
		if !a.Time.Equal(b.Time) {
			return a.Time.Before(b.Time)
		}
		if a.Node != b.Node {
			return a.Node < b.Node
		}
		return a.Seq < b.Seq
	})
	return m
}
