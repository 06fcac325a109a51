package netdev

import (
	"math"
	"testing"
)

func TestParseRate(t *testing.T) {
	tests := []struct {
		in      string
		want    float64
		wantErr bool
	}{
		{"200 Gb/sec (4X HDR)\n", 200, false},
		{"400 Gb/sec (4X NDR)", 400, false},
		{"2.5 Gb/sec (1X SDR)", 2.5, false},
		{"12.5 Gb/sec (1X FDR10)", 12.5, false},
		{"100 Gb/sec (4X EDR)", 100, false},
		{"25 Gb/sec", 25, false},
		{"", 0, true},
		{"200", 0, true},
		{"200 Mb/sec (4X HDR)", 0, true},
		{"NaN Gb/sec", 0, true},
		{"Inf Gb/sec", 0, true},
		{"-5 Gb/sec", 0, true},
		{"0x1p3 Gb/sec", 0, true},
	}
	for _, tt := range tests {
		got, err := parseRate(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("parseRate(%q) = %v, %v; want %v, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestParseState(t *testing.T) {
	tests := []struct {
		in, want string
		wantErr  bool
	}{
		{"4: ACTIVE\n", "ACTIVE", false},
		{"1: DOWN", "DOWN", false},
		{"2: INIT", "INIT", false},
		{"3: ARMED", "ARMED", false},
		{"5: ACTIVE_DEFER", "ACTIVE_DEFER", false},
		{"ACTIVE", "", true},
		{"4:", "", true},
		{"x: ACTIVE", "", true},
		{"4: active", "", true},
		{"4: ACTIVE LINKUP", "", true},
		{"-1: DOWN", "", true},
	}
	for _, tt := range tests {
		got, err := parseState(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("parseState(%q) = %q, %v; want %q, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestParseGIDType(t *testing.T) {
	for in, want := range map[string]string{
		"IB/RoCE v1\n": "IB/RoCE v1", "RoCE v2\n": "RoCE v2", "RoCE v2": "RoCE v2",
		"": "", "roce v2": "", "RoCE v3": "", "IB": "",
	} {
		got, err := parseGIDType(in)
		if got != want || (err != nil) != (want == "") {
			t.Errorf("parseGIDType(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

func TestParseSpeed(t *testing.T) {
	tests := []struct {
		in      string
		want    int
		wantErr bool
	}{
		{"100000\n", 100000, false},
		{"1000", 1000, false},
		{"-1", -1, false},
		{"0", -1, false},
		{"4294967295", -1, false},
		{"", -1, true},
		{"fast", -1, true},
	}
	for _, tt := range tests {
		got, err := parseSpeed(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("parseSpeed(%q) = %d, %v; want %d, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestParseKind(t *testing.T) {
	for in, want := range map[string]string{
		"1\n": KindEther, "772": KindLoopback, "32": KindInfiniband, "65534": KindOther, "": "", "x": "",
	} {
		if got := parseKind(in); got != want {
			t.Errorf("parseKind(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestGIDs(t *testing.T) {
	tests := []struct {
		in      string
		zero    bool
		ipv4    string
		wantErr bool
	}{
		{"0000:0000:0000:0000:0000:0000:0000:0000\n", true, "", false},
		{"fe80:0000:0000:0000:0c42:a103:0065:d6b6", false, "", false},
		{"0000:0000:0000:0000:0000:ffff:c0a8:0a0b", false, "192.168.10.11", false},
		{"192.168.10.11", false, "", true},
		{"fe80::1%eth0", false, "", true},
		{"garbage", false, "", true},
	}
	for _, tt := range tests {
		zero, err := zeroGID(tt.in)
		if zero != tt.zero || (err != nil) != tt.wantErr {
			t.Errorf("zeroGID(%q) = %v, %v; want %v, error %v", tt.in, zero, err, tt.zero, tt.wantErr)
		}
		a, ok := GID{GID: tt.in}.IPv4()
		if ok != (tt.ipv4 != "") || (ok && a.String() != tt.ipv4) {
			t.Errorf("GID(%q).IPv4() = %v, %v; want %q", tt.in, a, ok, tt.ipv4)
		}
	}
}

// FuzzParseSysfs feeds the parsers of sysfs values (a port's rate and state, a GID and its
// type, a link speed) with arbitrary text; the seed corpus is in testdata/fuzz. What a
// parser accepts must be something the rest of the package can use.
func FuzzParseSysfs(f *testing.F) {
	f.Add("200 Gb/sec (4X HDR)\n", "4: ACTIVE\n", "RoCE v2\n", "0000:0000:0000:0000:0000:ffff:c0a8:0a0b\n", "100000\n")
	f.Add("2.5 Gb/sec (1X SDR)", "1: DOWN", "IB/RoCE v1", "fe80:0000:0000:0000:0c42:a103:0065:d6b6", "-1")
	f.Fuzz(func(t *testing.T, rate, state, gidType, gid, speed string) {
		if v, err := parseRate(rate); err == nil && (v < 0 || math.IsNaN(v) || math.IsInf(v, 0)) {
			t.Fatalf("parseRate(%q) = %v: not a finite rate", rate, v)
		}
		if s, err := parseState(state); err == nil && !statePattern.MatchString(s) {
			t.Fatalf("parseState(%q) = %q: not a state name", state, s)
		}
		if g, err := parseGIDType(gidType); err == nil && g != GIDRoCEv1 && g != GIDRoCEv2 {
			t.Fatalf("parseGIDType(%q) = %q: not a known type", gidType, g)
		}
		if zero, err := zeroGID(gid); err == nil && zero {
			if _, ok := (GID{GID: gid}).IPv4(); ok {
				t.Fatalf("zero GID %q maps an IPv4 address", gid)
			}
		}
		if v, err := parseSpeed(speed); v != -1 && (err != nil || v <= 0) {
			t.Fatalf("parseSpeed(%q) = %d, %v: want -1 or a positive speed", speed, v, err)
		}
	})
}
