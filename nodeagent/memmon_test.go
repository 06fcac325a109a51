package nodeagent

import (
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/hashicorp/go-hclog"
)

func TestParseStatPgrp(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int
		ok   bool
	}{
		{"1234 (python3) S 1 1234 1234 0 -1", 1234, true},
		{"77 (a b) c)) R 5 66 66 0", 66, true}, // a command name with spaces and parentheses
		{"77 (x) R 5", 0, false},
		{"77 x R 5 6", 0, false},
		{"77 (x) R 5 -3", 0, false},
		{"", 0, false},
	} {
		got, err := parseStatPgrp([]byte(tc.in))
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("parseStatPgrp(%q) = %d, %v; want %d, ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestParseRssAnon(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want uint64
		ok   bool
	}{
		{"Name:\tpython3\nRssAnon:\t  2048 kB\nRssFile:\t 10 kB\n", 2048 << 10, true},
		{"Name:\tkworker\n", 0, true}, // a kernel thread has none
		{"RssAnon:\t12 MB\n", 0, false},
		{"RssAnon:\tlots kB\n", 0, false},
		{"RssAnon:\t99999999999999999 kB\n", 0, false},
	} {
		got, err := parseRssAnon([]byte(tc.in))
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("parseRssAnon(%q) = %d, %v; want %d, ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

// FuzzProcParsers: no /proc content makes the parsers panic or report a negative group.
func FuzzProcParsers(f *testing.F) {
	for _, s := range []string{"1 (sh) S 1 1 1", "9 (a) b)) R 1 2 3", "RssAnon:\t 4 kB\n", "RssAnon: 1 kB", ")"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if n, err := parseStatPgrp(b); err == nil && n < 0 {
			t.Fatalf("negative group %d", n)
		}
		if n, err := parseRssAnon(b); err == nil && n > 1<<54 {
			t.Fatalf("implausible size %d", n)
		}
	})
}

// A fixture /proc: worker w1's group (pid 100, with a child 101) grew from 16 to 96 MiB, over its
// 64 MiB request; w2 (pid 200) stays under; an unrelated process is not counted.
func TestMemMonitorKillsOnlyTheWorkerOverItsLimit(t *testing.T) {
	proc := fstest.MapFS{
		"100/stat": {Data: []byte("100 (python3) S 1 100 100 0")}, "100/status": {Data: []byte("RssAnon:\t 65536 kB\n")},
		"101/stat": {Data: []byte("101 (python3) S 100 100 100 0")}, "101/status": {Data: []byte("RssAnon:\t 32768 kB\n")},
		"200/stat": {Data: []byte("200 (python3) S 1 200 200 0")}, "200/status": {Data: []byte("RssAnon:\t 1024 kB\n")},
		"300/stat": {Data: []byte("300 (other) S 1 300 300 0")}, "300/status": {Data: []byte("RssAnon:\t 999999 kB\n")},
		"self": {Data: []byte("not a process")},
	}
	pids := map[string]int{"w1": 100, "w2": 200}
	m := newMemMonitor(hclog.NewNullLogger(), func(w string) int { return pids[w] })
	// when their tasks began, w1 held 16 MiB and w2 1 MiB: their requests count from there
	m.proc = fstest.MapFS{"100/status": {Data: []byte("RssAnon:\t 16384 kB\n")}, "200/status": {Data: []byte("RssAnon:\t 1024 kB\n")}}
	var killed []int
	m.kill = func(pgid int) error { killed = append(killed, pgid); return nil }
	m.tick = func(time.Duration) func() { return func() {} } // check by hand
	m.set("w1", 64<<20, "hog", time.Second)
	m.set("w2", 64<<20, "small", time.Second)
	m.proc = proc
	m.check()
	if len(killed) != 1 || killed[0] != 100 {
		t.Fatalf("killed %v, want group 100 only", killed)
	}
	why := m.take("w1")
	for _, want := range []string{"hog", "96.0 MiB", "80.0 MiB more", "64.0 MiB", "memory="} {
		if !strings.Contains(why, want) {
			t.Errorf("the reason %q does not say %q", why, want)
		}
	}
	if m.take("w2") != "" || m.take("w1") != "" {
		t.Fatal("a worker under its limit, or one already taken, reported as stopped for memory")
	}
	m.check() // w1 is forgotten: not killed twice
	if len(killed) != 1 {
		t.Fatalf("killed %v after the worker was taken", killed)
	}
	m.set("w2", 0, "", time.Second) // a task without memory= lifts the limit
	pids["w2"] = 100
	m.check()
	if len(killed) != 1 {
		t.Fatalf("a worker whose limit was lifted was killed: %v", killed)
	}
}

// The monitor on this machine: a real worker process (its own process group, as the spawner
// makes it) that allocates past its limit and then sleeps 3 s is stopped, and its exit says
// so; with the monitor off (interval 0) the same process exits by itself.
func TestSpawnerStopsAWorkerOverItsMemory(t *testing.T) {
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("python3 is not installed")
	}
	if _, err := os.Stat("/proc/self/status"); err != nil {
		t.Skip("no /proc")
	}
	hog := []string{"python3", "-c", "import time\nb = bytearray(256 << 20)\nfor i in range(0, len(b), 4096): b[i] = 1\ntime.sleep(3)"}
	for _, tc := range []struct {
		name     string
		interval time.Duration
	}{{"on", 50 * time.Millisecond}, {"off", 0}} {
		t.Run(tc.name, func(t *testing.T) {
			s := &spawner{log: hclog.NewNullLogger()}
			var mu sync.Mutex
			done := make(chan struct{})
			var why string
			var oom bool
			if err := s.start(spawnSpec{Worker: "w1", Argv: hog}, func(w, _ string, o bool) {
				mu.Lock()
				why, oom = w, o
				mu.Unlock()
				close(done)
			}); err != nil {
				t.Fatal(err)
			}
			for s.pidOf("w1") == 0 {
				time.Sleep(10 * time.Millisecond)
			}
			s.limitMemory("w1", 32<<20, "hog", tc.interval)
			select {
			case <-done:
			case <-time.After(60 * time.Second):
				s.stop(time.Second)
				t.Fatal("the worker neither ended nor was stopped")
			}
			mu.Lock()
			defer mu.Unlock()
			if tc.interval == 0 {
				if oom || why != "exited" {
					t.Fatalf("the monitor is off, yet the worker ended with %q (oom=%v), not by itself", why, oom)
				}
				return
			}
			if !oom || !strings.Contains(why, "hog") || !strings.Contains(why, "memory=") {
				t.Fatalf("exit oom=%v why=%q; want the monitor's reason naming the task", oom, why)
			}
		})
	}
}
