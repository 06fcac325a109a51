package ucx

import (
	"net"
	"strconv"
	"testing"
)

func TestParseAddr(t *testing.T) {
	for _, tc := range []struct {
		in   string
		host string
		port int
		ok   bool
	}{
		{"127.0.0.1:4000", "127.0.0.1", 4000, true},
		{"[::1]:65535", "::1", 65535, true},
		{"node7:1", "node7", 1, true},
		{"127.0.0.1", "", 0, false},
		{"127.0.0.1:0", "", 0, false},
		{"127.0.0.1:65536", "", 0, false},
		{":4000", "", 0, false},
		{"h:port", "", 0, false},
		{"", "", 0, false},
	} {
		t.Run(tc.in, func(t *testing.T) {
			h, p, err := parseAddr(tc.in)
			if (err == nil) != tc.ok || h != tc.host || p != tc.port {
				t.Fatalf("parseAddr(%q) = %q, %d, %v", tc.in, h, p, err)
			}
		})
	}
}

func FuzzParseAddr(f *testing.F) {
	for _, s := range []string{"127.0.0.1:4000", "[::1]:1", "host:65535", ":0", "a:b:c", "[::1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		h, p, err := parseAddr(s)
		if err != nil {
			return
		}
		if p < 1 || p > 65535 || h == "" {
			t.Fatalf("parseAddr(%q) accepted host %q port %d", s, h, p)
		}
		h2, p2, err := parseAddr(net.JoinHostPort(h, strconv.Itoa(p)))
		if err != nil || h2 != h || p2 != p {
			t.Fatalf("parseAddr(%q) = %q %d does not round-trip: %q %d %v", s, h, p, h2, p2, err)
		}
	})
}
