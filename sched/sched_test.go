package sched

import (
	"errors"
	"testing"
)

func TestFitsSubAdd(t *testing.T) {
	r := Resources{"CPU": 2, "GPU": 1}
	if !r.Fits(Resources{"CPU": 2}) || r.Fits(Resources{"CPU": 2.5}) || r.Fits(Resources{"disk": 1}) {
		t.Fatal("Fits is wrong")
	}
	if !r.Fits(Resources{"disk": 0}) {
		t.Fatal("a zero request must fit")
	}
	r.Sub(Resources{"CPU": 0.5})
	r.Add(Resources{"CPU": 0.25})
	if r["CPU"] != 1.75 {
		t.Fatalf("CPU %v", r["CPU"])
	}
	if m := r.Missing(Resources{"CPU": 4, "GPU": 1}); m != "CPU: needs 4, has 1.75" {
		t.Fatalf("Missing = %q", m)
	}
}

func nodes(avail ...float64) []Node {
	var out []Node
	for i, a := range avail {
		out = append(out, Node{ID: string(rune('a' + i)), Total: Resources{"CPU": 4}, Available: Resources{"CPU": a}})
	}
	return out
}

func TestPlaceBundles(t *testing.T) {
	b := func(n int) []Resources {
		out := make([]Resources, n)
		for i := range out {
			out[i] = Resources{"CPU": 1}
		}
		return out
	}
	cases := []struct {
		name    string
		s       Strategy
		bundles []Resources
		nodes   []Node
		want    []int
		ok      bool
		infeas  bool
	}{
		{"pack on one node", Pack, b(3), nodes(4, 4), []int{0, 0, 0}, true, false},
		{"pack overflows", Pack, b(3), nodes(2, 4), []int{0, 0, 1}, true, false},
		{"spread", Spread, b(2), nodes(4, 4), []int{0, 1}, true, false},
		{"spread on one node", Spread, b(2), nodes(4), []int{0, 0}, true, false},
		{"strict spread needs nodes", StrictSpread, b(2), nodes(4), nil, false, true},
		{"strict pack waits", StrictPack, b(3), nodes(2, 2), nil, false, false},
		{"strict pack fits", StrictPack, b(2), nodes(1, 2), []int{1, 1}, true, false},
		{"too big for any node", Pack, []Resources{{"CPU": 8}}, nodes(4), nil, false, true},
		{"waits for resources", Pack, b(2), nodes(1), nil, false, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, ok, err := PlaceBundles(c.s, c.bundles, c.nodes)
			var inf *ErrInfeasible
			if c.infeas != errors.As(err, &inf) {
				t.Fatalf("infeasible: got %v", err)
			}
			if ok != c.ok {
				t.Fatalf("ok = %v", ok)
			}
			if ok {
				for i := range got {
					if got[i] != c.want[i] {
						t.Fatalf("assign %v, want %v", got, c.want)
					}
				}
			}
		})
	}
}

func TestParseStrategy(t *testing.T) {
	if s, err := ParseStrategy(""); err != nil || s != Pack {
		t.Fatal("default is PACK")
	}
	if _, err := ParseStrategy("pack"); err == nil {
		t.Fatal("strategies are spelled in capitals, as Ray does")
	}
}

func TestPlaceBundlesLargerThanCluster(t *testing.T) {
	one := []Node{{ID: "a", Total: Resources{"CPU": 1}, Available: Resources{"CPU": 1}},
		{ID: "b", Total: Resources{"CPU": 1}, Available: Resources{"CPU": 0}}}
	six := make([]Resources, 6)
	for i := range six {
		six[i] = Resources{"CPU": 1}
	}
	for _, s := range []Strategy{Pack, Spread} {
		_, ok, err := PlaceBundles(s, six, one)
		var inf *ErrInfeasible
		if ok || !errors.As(err, &inf) {
			t.Fatalf("%s: 6 one-CPU bundles on two one-CPU nodes: ok=%v err=%v, want infeasible", s, ok, err)
		}
		// two fit on the idle cluster: b is only busy, so they wait
		if _, ok, err := PlaceBundles(s, six[:2], one); ok || err != nil {
			t.Fatalf("%s: 2 bundles, one node busy: ok=%v err=%v, want a wait", s, ok, err)
		}
	}
}
