package nodeagent

import (
	"strings"
	"testing"

	"github.com/shoal-hpc/shoal/nodeagent/obs"
	"github.com/shoal-hpc/shoal/wire"
)

// FuzzLogQuery: a LOG_QUERY body as the member reads it. Whatever it asks, the answer holds at
// most obs.PageLines lines, each after the cursor and matching the filter, in order, and its
// cursor never goes back.
func FuzzLogQuery(f *testing.F) {
	for _, q := range []wire.LogQuery{{}, {Since: 3, Max: 2}, {Task: "ab", Max: -1, MaxBytes: 1}, {Since: 1 << 63, Job: "j"}} {
		b, _ := wire.Encode(wire.TLogQuery, 1, &q)
		f.Add(b[4:])
	}
	f.Add([]byte{0x93, 67, 1, 0xc0})
	g := obs.NewRing(40, 2000)
	for i := 0; i < 60; i++ {
		task := "abab"
		if i%3 == 0 {
			task = "cdcd"
		}
		g.Add(obs.Line{Job: "j", Worker: "j-w1", Task: task, Text: strings.Repeat("x", i)})
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		fr, err := wire.ParseFrame(payload)
		if err != nil {
			return
		}
		var q wire.LogQuery
		if fr.Decode(&q) != nil {
			return
		}
		p := answerLogQuery(g, &q)
		if len(p.Lines) > obs.PageLines || p.Next < q.Since {
			t.Fatalf("query %+v: %d lines, next %d", q, len(p.Lines), p.Next)
		}
		last := q.Since
		for _, l := range p.Lines {
			if l.Seq <= last || (q.Task != "" && !strings.HasPrefix(l.Task, strings.ToLower(q.Task))) || (q.Job != "" && l.Job != q.Job) {
				t.Fatalf("query %+v answered line %+v after %d", q, l, last)
			}
			last = l.Seq
		}
	})
}
