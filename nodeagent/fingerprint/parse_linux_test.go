package fingerprint

import (
	"errors"
	"reflect"
	"testing"
)

func TestParseCPUList(t *testing.T) {
	tests := []struct {
		in      string
		want    []int
		wantErr bool
	}{
		{"", nil, false},
		{"\n", nil, false},
		{"0\n", []int{0}, false},
		{"0-3,8-11\n", []int{0, 1, 2, 3, 8, 9, 10, 11}, false},
		{"1,9", []int{1, 9}, false},
		{"3,1-2,2", []int{1, 2, 3}, false},
		{"3-1", nil, true},
		{"a", nil, true},
		{"0-", nil, true},
		{"-1", nil, true},
		{"0-99999999", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseCPUList(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("ParseCPUList(%q) error = %v, wantErr %v", tt.in, err, tt.wantErr)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ParseCPUList(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

func TestParseMeminfoKB(t *testing.T) {
	tests := []struct {
		name, in, key string
		want          uint64
		wantErr       bool
	}{
		{"proc", "MemTotal:       24684092 kB\nMemFree: 1 kB\n", "MemTotal", 24684092 * 1024, false},
		{"numa node", "Node 1 MemTotal:        5990612 kB\n", "MemTotal", 5990612 * 1024, false},
		{"missing", "MemFree: 1 kB\n", "MemTotal", 0, true},
		{"garbage", "MemTotal: lots kB\n", "MemTotal", 0, true},
		{"overflow", "MemTotal: 18446744073709551615 kB\n", "MemTotal", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseMeminfoKB([]byte(tt.in), tt.key)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("parseMeminfoKB = %d, %v; want %d, error %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestParseProcCgroup(t *testing.T) {
	in := "12:pids:/a\n4:cpu,cpuacct:/b:c\n1:name=systemd:/s\n0::/u\n"
	got, err := parseProcCgroup([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	want := procCgroup{v2: "/u", hasV2: true, byCtrl: map[string]string{
		"pids": "/a", "cpu": "/b:c", "cpuacct": "/b:c", "name=systemd": "/s"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("parseProcCgroup = %+v, want %+v", got, want)
	}
	if _, err := parseProcCgroup([]byte("garbage\n")); err == nil {
		t.Error("parseProcCgroup(garbage) succeeded")
	}
}

func TestParseMountinfo(t *testing.T) {
	in := "36 35 98:0 /mnt1 /mnt\\040two rw,noatime master:1 shared:2 - cgroup cgroup rw,cpu,cpuacct\n" +
		"41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n"
	got, err := parseMountinfo([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []mount{
		{root: "/mnt1", point: "/mnt two", fstype: "cgroup", superOpts: []string{"rw", "cpu", "cpuacct"}},
		{root: "/", point: "/sys/fs/cgroup/unified", fstype: "cgroup2", superOpts: []string{"rw"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("parseMountinfo = %+v, want %+v", got, want)
	}
	for _, bad := range []string{"1 2 3\n", "1 2 0:1 / /x rw - \n"} {
		if _, err := parseMountinfo([]byte(bad)); err == nil {
			t.Errorf("parseMountinfo(%q) succeeded", bad)
		}
	}
}

func TestParseLimits(t *testing.T) {
	tests := []struct {
		name  string
		parse func([]byte) (float64, error)
		in    string
		want  float64
		// wantErr: nil for success, errUnlimited, or errAny for a parse error.
		wantErr error
	}{
		{"memory.max bytes", asFloat(parseMemoryMax), "4294967296\n", 4294967296, nil},
		{"memory.max max", asFloat(parseMemoryMax), "max\n", 0, errUnlimited},
		{"memory.max garbage", asFloat(parseMemoryMax), "-5\n", 0, errAny},
		{"v1 limit", asFloat(parseMemoryLimitV1), "4294967296\n", 4294967296, nil},
		{"v1 none", asFloat(parseMemoryLimitV1), "9223372036854771712\n", 0, errUnlimited},
		{"v1 minus one", asFloat(parseMemoryLimitV1), "-1\n", 0, errUnlimited},
		{"cpu.max quota", parseCPUMax, "200000 100000\n", 2, nil},
		{"cpu.max max", parseCPUMax, "max 100000\n", 0, errUnlimited},
		{"cpu.max quota only", parseCPUMax, "50000\n", 0.5, nil},
		{"cpu.max zero period", parseCPUMax, "50000 0\n", 0, errAny},
		{"cpu.max empty", parseCPUMax, "", 0, errAny},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.parse([]byte(tt.in))
			switch {
			case tt.wantErr == nil && err != nil, tt.wantErr == errUnlimited && !errors.Is(err, errUnlimited),
				tt.wantErr == errAny && (err == nil || errors.Is(err, errUnlimited)):
				t.Fatalf("error = %v, want %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
	if got, err := quotaCPUs("-1\n", "100000\n"); !errors.Is(err, errUnlimited) {
		t.Errorf("quotaCPUs(-1) = %v, %v; want errUnlimited", got, err)
	}
}

var errAny = errors.New("any parse error")

func asFloat(f func([]byte) (uint64, error)) func([]byte) (float64, error) {
	return func(b []byte) (float64, error) { n, err := f(b); return float64(n), err }
}

func TestLocate(t *testing.T) {
	tests := []struct {
		root, p, want string
		ok            bool
	}{
		{"/", "/a/b", "/a/b", true},
		{"/kube/pod", "/kube/pod", "/", true},
		{"/kube/pod", "/kube/pod/x", "/x", true},
		{"/kube/pod", "/kube/podx", "", false},
		{"/", "/../x", "", false},
		{"/", "relative", "", false},
	}
	for _, tt := range tests {
		got, ok := below(tt.root, tt.p)
		if got != tt.want || ok != tt.ok {
			t.Errorf("below(%q, %q) = %q, %v; want %q, %v", tt.root, tt.p, got, ok, tt.want, tt.ok)
		}
	}
}

func FuzzParseCPUList(f *testing.F) {
	for _, s := range []string{"0-3,8-11\n", "1,9", "", "3-1", "0-65536"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		cpus, err := ParseCPUList(s)
		if err != nil {
			return
		}
		for i, c := range cpus {
			if c < 0 || c > maxCPUID || (i > 0 && cpus[i-1] >= c) {
				t.Fatalf("ParseCPUList(%q) = %v: not sorted, distinct and in range", s, cpus)
			}
		}
	})
}

func FuzzParseMountinfo(f *testing.F) {
	f.Add("41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n")
	f.Add("36 35 98:0 /mnt1 /mnt\\040two rw,noatime master:1 - ext3 /dev/root rw,errors=continue\n")
	f.Add("1 2 3 - \\")
	f.Fuzz(func(t *testing.T, s string) {
		_, _ = parseMountinfo([]byte(s))
	})
}

func FuzzParseProcCgroup(f *testing.F) {
	f.Add("12:pids:/a\n4:cpu,cpuacct:/b\n0::/u\n")
	f.Add("0::/\n")
	f.Fuzz(func(t *testing.T, s string) {
		_, _ = parseProcCgroup([]byte(s))
	})
}
