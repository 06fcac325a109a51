package obs

import (
	"bytes"
	"strings"
	"testing"
)

const tid = "0123456789abcdef0123456700000000"

func TestLineWriterSplitsAndAttributes(t *testing.T) {
	r := NewRecorder()
	w := NewLineWriter("n1", "j-0001", "j-0001-w3", "stdout", r.AddLog)
	w.SetPID(7) // the worker process's: the lines before the first marker name it
	in := "before\n" + MarkerPrefix + "42 " + tid + " - square\nsq one\nsq tw" + "o\r\n" + MarkerPrefix + "bad marker\nlast"
	for _, chunk := range []string{in[:5], in[5:40], in[40:]} { // a pipe cuts anywhere
		w.Write([]byte(chunk))
	}
	w.ReadFrom(strings.NewReader(" partial"))
	lines, next := r.Logs(LogFilter{}, 0, 0)
	var got []string
	for _, l := range lines {
		got = append(got, l.Prefix()+l.Text)
	}
	want := []string{
		"(j-0001-w3 pid=7, node=n1) before",
		"(square pid=42, node=n1) sq one",
		"(square pid=42, node=n1) sq two",
		"(square pid=42, node=n1) " + MarkerPrefix + "bad marker",
		"(square pid=42, node=n1) last partial",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") || next != 5 {
		t.Fatalf("got (next %d)\n%s\nwant\n%s", next, strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if l, _ := r.Logs(LogFilter{Task: tid[:10]}, 0, 0); len(l) != 4 {
		t.Errorf("by task prefix: %d lines, want 4", len(l))
	}
	if l, n := r.Logs(LogFilter{}, 3, 1); len(l) != 1 || l[0].Seq != 4 || n != 4 {
		t.Errorf("since 3, max 1: %+v next %d", l, n)
	}
	if l, n := r.Logs(LogFilter{Worker: "other"}, 0, 0); len(l) != 0 || n != 5 {
		t.Errorf("no match still moves next on: %d %d", len(l), n)
	}
}

func TestLogRingBoundAndEcho(t *testing.T) {
	r := NewRecorder(WithMaxLogLines(3))
	var echoed bytes.Buffer
	r.SetLogEcho(EchoTo(&echoed, &echoed))
	r.RegisterDriver("quiet", false)
	for i, job := range []string{"quiet", "go", "quiet", "quiet", "quiet"} {
		r.AddLog(Line{Job: job, Worker: job + "-w1", Text: string(rune('a' + i))})
	}
	lines, _ := r.Logs(LogFilter{}, 0, 0)
	if len(lines) != 3 || lines[0].Text != "c" {
		t.Errorf("ring of 3 keeps the newest: %+v", lines)
	}
	if echoed.String() != "(go-w1 pid=0, node=) b\n" {
		t.Errorf("only the unregistered job's line is echoed: %q", echoed.String())
	}
}

func TestJobOfWorker(t *testing.T) {
	for in, want := range map[string]string{"abc-0001-w12": "abc-0001", "abc-0001": "", "x-wy": "", "": ""} {
		if got := JobOfWorker(in); got != want {
			t.Errorf("JobOfWorker(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzLineWriter: whatever a worker writes, in whatever pieces, comes out as lines without a
// newline, none longer than MaxLine, and a well-formed marker never as text.
func FuzzLineWriter(f *testing.F) {
	f.Add([]byte("a\nb\n"+MarkerPrefix+"1 "+tid+" - f\nc"), uint8(3))
	f.Add([]byte(MarkerPrefix+"x y z w\n\r\n\n"), uint8(1))
	f.Add(bytes.Repeat([]byte("z"), 3*MaxLine+7), uint8(200))
	f.Fuzz(func(t *testing.T, data []byte, cut uint8) {
		var out []Line
		w := NewLineWriter("n", "j", "j-w1", "stdout", func(l Line) { out = append(out, l) })
		step := int(cut) + 1
		for i := 0; i < len(data); i += step {
			w.Write(data[i:min(i+step, len(data))])
		}
		w.Close()
		for _, l := range out {
			if strings.ContainsRune(l.Text, '\n') || len(l.Text) > MaxLine {
				t.Fatalf("line %q", l.Text)
			}
			if _, ok := ParseMarker(l.Text); ok {
				t.Fatalf("a marker came out as text: %q", l.Text)
			}
		}
	})
}
