package slurm

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

func TestExpand(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"", nil},
		{" , \t,", nil},
		{"n1", []string{"n1"}},
		{"login", []string{"login"}},
		{"n[1-3],m1", []string{"n1", "n2", "n3", "m1"}},
		{"n[01-3]", []string{"n01", "n02", "n03"}}, // padding from the low bound
		{"n[1-03]", []string{"n1", "n2", "n3"}},    // not from the high bound
		{"n[001-5]", []string{"n001", "n002", "n003", "n004", "n005"}},
		{"n[8-11]", []string{"n8", "n9", "n10", "n11"}},
		{"n[098-101]", []string{"n098", "n099", "n100", "n101"}},
		{"n[3,1-2]", []string{"n3", "n1", "n2"}}, // order as written
		{"n[1,01]", []string{"n1", "n01"}},       // each range keeps its own width
		{"n[1-2,1-2]", []string{"n1", "n2", "n1", "n2"}},
		{"n[7]", []string{"n7"}},
		{"[1-3]", []string{"1", "2", "3"}},
		{"007", []string{"007"}},
		{"rack[1-2]-node[01-02]", []string{"rack1-node01", "rack1-node02", "rack2-node01", "rack2-node02"}},
		{"n[1-2][3-4]", []string{"n13", "n14", "n23", "n24"}},
		{"a[1-2]b[3]", []string{"a1b3", "a2b3"}},
		// Three or more brackets: the last fastest, then the first, ..., the second-to-last
		// slowest, as Slurm 22.05 prints them.
		{"a[1-2]b[3,5]c[0]", []string{"a1b3c0", "a2b3c0", "a1b5c0", "a2b5c0"}},
		{"a[1-2]b[1-2]c[1-2]", []string{"a1b1c1", "a1b1c2", "a2b1c1", "a2b1c2", "a1b2c1", "a1b2c2", "a2b2c1", "a2b2c2"}},
		{"a[1-2]b[1-2]c[1-2]d[0]", []string{"a1b1c1d0", "a2b1c1d0", "a1b2c1d0", "a2b2c1d0", "a1b1c2d0", "a2b1c2d0", "a1b2c2d0", "a2b2c2d0"}},
		{"n1 n2\tn3", []string{"n1", "n2", "n3"}},
		{",n1,,n2,", []string{"n1", "n2"}},
		{"n[1-2] m[1-2]", []string{"n1", "n2", "m1", "m2"}},
		{"n.1,n-[1-2],é[1-2]", []string{"n.1", "n-1", "n-2", "é1", "é2"}},
		{"n1x,n01a", []string{"n1x", "n01a"}}, // a suffix without brackets is a plain name
		{"n99999999999999999999", []string{"n99999999999999999999"}},
		{"n[18446744073709551615]", []string{"n18446744073709551615"}},
		{"n[0000000000000000000000001-2]", []string{"n0000000000000000000000001", "n0000000000000000000000002"}},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := Expand(tt.in)
			if err != nil {
				t.Fatalf("Expand(%q) error: %v", tt.in, err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("Expand(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestExpandLimits(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want int
	}{
		{"n[1-65536]", 65536},
		{"n[0-65535]", 65536},
		{"a[1-256]b[1-256]", 65536},
		{"a[1-65536],b[1-65536]", 2 * 65536},
		{"n[18446744073709551614-18446744073709551615]", 2},
	} {
		got, err := Expand(tt.in)
		if err != nil || len(got) != tt.want {
			t.Errorf("Expand(%q) gave %d names, error %v; want %d names", tt.in, len(got), err, tt.want)
		}
	}
}

func TestExpandErrors(t *testing.T) {
	tests := []struct {
		in, want string // want: the whole message
	}{
		{"a[3-1]", `parse hostlist "a[3-1]": range 3-1 has low bound above high bound`},
		{"a[1-3]b", `parse hostlist "a[1-3]b": "b" follows the last ']' in "a[1-3]b"; Slurm 22.05 does not allow text after the last bracket of a name`},
		{"gpu-a[1-2]-ib", `parse hostlist "gpu-a[1-2]-ib": "-ib" follows the last ']' in "gpu-a[1-2]-ib"; Slurm 22.05 does not allow text after the last bracket of a name`},
		{"n[0-65536]", `parse hostlist "n[0-65536]": range 0-65536 has more than 65536 hosts, the most Slurm allows`},
		{"a[]", `parse hostlist "a[]": empty brackets []`},
		{"n[1,,2]", `parse hostlist "n[1,,2]": empty range in [1,,2]`},
		{"n[,1]", `parse hostlist "n[,1]": empty range in [,1]`},
		{"n[1-2-3]", `parse hostlist "n[1-2-3]": range "1-2-3" in [1-2-3] is not a number or a lo-hi range of numbers`},
		{"n[-1]", `parse hostlist "n[-1]": range "-1" in [-1] is not a number or a lo-hi range of numbers`},
		{"n[1-]", `parse hostlist "n[1-]": range "1-" in [1-] is not a number or a lo-hi range of numbers`},
		{"n[+1-3]", `parse hostlist "n[+1-3]": range "+1-3" in [+1-3] is not a number or a lo-hi range of numbers`},
		{"n[0x1]", `parse hostlist "n[0x1]": range "0x1" in [0x1] is not a number or a lo-hi range of numbers`},
		{"n[a-c]", `parse hostlist "n[a-c]": range "a-c" in [a-c] is not a number or a lo-hi range of numbers`},
		{"n[ 1-3]", `parse hostlist "n[ 1-3]": whitespace at offset 2 inside brackets`},
		{"n[1, 2]", `parse hostlist "n[1, 2]": whitespace at offset 4 inside brackets`},
		{"a[1", `parse hostlist "a[1": '[' at offset 1 is never closed`},
		{"a[1,2", `parse hostlist "a[1,2": '[' at offset 1 is never closed`},
		{"a]1", `parse hostlist "a]1": ']' at offset 1 has no matching '['`},
		{"n[1-2]]", `parse hostlist "n[1-2]]": ']' at offset 6 has no matching '['`},
		{"a[b[1-2]", `parse hostlist "a[b[1-2]": '[' at offset 3 is inside the bracket opened at offset 1; brackets do not nest`},
		{"n1\nn2", `parse hostlist "n1\nn2": control character '\n' at offset 2; host names cannot contain it`},
		{"n[99999999999999999999]", `parse hostlist "n[99999999999999999999]": number 99999999999999999999 in [99999999999999999999] does not fit in 64 bits`},
		{"a[1-65536,1]b[1]", `parse hostlist "a[1-65536,1]b[1]": bracket [1-65536,1] stands for more than 65536 hosts`},
		{"a[1-300]b[1-300]", `parse hostlist "a[1-300]b[1-300]": "a[1-300]b[1-300]" stands for more than 65536 host names`},
		{"ok1,bad[2-1]", `parse hostlist "ok1,bad[2-1]": range 2-1 has low bound above high bound`},
		// Long inputs are shortened in the message.
		{strings.Repeat("n[1-65536] ", 20), `parse hostlist "` + strings.Repeat("n[1-65536] ", 20)[:100] + "..." +
			strings.Repeat("n[1-65536] ", 20)[120:] + `": stands for more than 1048576 host names`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := Expand(tt.in)
			if err == nil {
				t.Fatalf("Expand(%q) = %q, want error %q", tt.in, got, tt.want)
			}
			if !errors.Is(err, ErrHostlist) {
				t.Errorf("Expand(%q) error %v does not wrap ErrHostlist", tt.in, err)
			}
			if err.Error() != tt.want {
				t.Errorf("Expand(%q) error\n got: %s\nwant: %s", tt.in, err, tt.want)
			}
		})
	}
}

// compressCases: every want is what `scontrol show hostlist` (Slurm 22.05.8) prints for the
// names joined by commas; TestCompressAgainstScontrol checks them on a machine with Slurm.
var compressCases = []struct {
	names string // comma-separated
	want  string
}{
	{"", ""},
	{"n1", "n1"},
	{"n1,n2,n3,m1", "n[1-3],m1"},
	{"n1,n3,n2", "n[1,3,2]"},
	{"n5,n3,n4", "n[5,3-4]"},
	{"n1,m1,n2", "n1,m1,n2"},
	{"n1,n01", "n[1,01]"},
	{"n1,n02", "n[1,02]"},
	{"n9,n10", "n[9-10]"},
	{"n09,n10", "n[09-10]"},
	{"n99,n100", "n[99-100]"},
	{"n099,n100", "n[099-100]"},
	{"n8,n9,n010", "n[8-9,010]"},
	{"n7,n8,n09", "n[7-8,09]"},
	{"n00,n01,n2", "n[00-01,2]"},
	{"n05,n06,n100", "n[05-06,100]"},
	{"n9,n10,n8", "n[9-10,8]"},
	{"n1,n1", "n[1,1]"},
	{"n2,n1", "n[2,1]"},
	{"n1,n2,n1,n2", "n[1-2,1-2]"},
	{"n0,n1", "n[0-1]"},
	{"1,2,3", "[1-3]"},
	{"5", "5"},
	{"007", "007"},
	{"a,b", "a,b"},
	{"n,n1", "n,n1"},
	{"n1,n", "n1,n"},
	{"n1,n2,m", "n[1-2],m"},
	{"a1,a2,b,a3", "a[1-2],b,a3"},
	{"x1y2,x1y3", "x1y[2-3]"},
	{"n-1,n-2", "n-[1-2]"},
	{"n1x,n2x", "n1x,n2x"},
	{"rack1-node01,rack1-node02,rack2-node01,rack2-node02", "rack1-node[01-02],rack2-node[01-02]"},
	{"n13,n14,n23,n24", "n[13-14,23-24]"},
}

func TestCompress(t *testing.T) {
	for _, tt := range compressCases {
		t.Run(tt.names, func(t *testing.T) {
			var names []string
			if tt.names != "" {
				names = strings.Split(tt.names, ",")
			}
			if got := Compress(names); got != tt.want {
				t.Errorf("Compress(%q) = %q, want %q", names, got, tt.want)
			}
			back, err := Expand(tt.want)
			if err != nil || !slices.Equal(back, names) {
				t.Errorf("Expand(%q) = %q, %v; want %q", tt.want, back, err, names)
			}
		})
	}
}

// TestCompressRoundTrip checks Expand(Compress(x)) == x on lists built to hit the merge
// rules: shared prefixes, runs, zero padding that does and does not match, repeats.
func TestCompressRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 2000 {
		names := randomNames(rng)
		c := Compress(names)
		back, err := Expand(c)
		if err != nil || !slices.Equal(back, names) {
			t.Fatalf("case %d: Expand(Compress(%q)) = Expand(%q) = %q, %v", i, names, c, back, err)
		}
	}
}

// randomNames returns up to 11 host names, mostly numbered in runs, with a few prefixes and
// paddings.
func randomNames(rng *rand.Rand) []string {
	prefixes := []string{"", "n", "node", "rack1-n", "a.b", "x9y"}
	names := make([]string, rng.IntN(12))
	v := rng.IntN(120)
	for k := range names {
		if rng.IntN(4) > 0 {
			v++ // mostly consecutive
		} else {
			v = rng.IntN(120)
		}
		switch p := prefixes[rng.IntN(len(prefixes))]; rng.IntN(6) {
		case 0:
			names[k] = p + "login" // no numeric suffix
		case 1:
			names[k] = fmt.Sprintf("%s%03d", p, v)
		case 2:
			names[k] = fmt.Sprintf("%s%02d", p, v)
		default:
			names[k] = fmt.Sprintf("%s%d", p, v)
		}
	}
	return names
}

// validName reports whether name is a host name that survives Compress then Expand.
func validName(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; isSep(c) || isControl(c) || c == '[' || c == ']' {
			return false
		}
	}
	return true
}

func FuzzExpand(f *testing.F) {
	// The seed corpus is in testdata/fuzz/FuzzExpand.
	f.Fuzz(func(t *testing.T, s string) {
		names, err := Expand(s)
		if err != nil {
			if !errors.Is(err, ErrHostlist) {
				t.Fatalf("Expand(%q) error %v does not wrap ErrHostlist", s, err)
			}
			return
		}
		groups := strings.Count(s, "[")
		if limit := MaxRange*groups + len(s); len(names) > limit {
			t.Fatalf("Expand(%q) gave %d names, more than %d", s, len(names), limit)
		}
		for _, n := range names {
			if !validName(n) {
				t.Fatalf("Expand(%q) gave invalid name %q", s, n)
			}
		}
		c := Compress(names)
		again, err := Expand(c)
		if err != nil || !slices.Equal(again, names) {
			t.Fatalf("Expand(Compress(Expand(%q))) = Expand(%q) = %q, %v; want %q", s, c, again, err, names)
		}
	})
}

func FuzzCompress(f *testing.F) {
	// The seed corpus is in testdata/fuzz/FuzzCompress; names are separated by newlines.
	f.Fuzz(func(t *testing.T, s string) {
		var names []string
		for _, n := range strings.Split(s, "\n") {
			if validName(n) {
				names = append(names, n)
			}
		}
		c := Compress(names)
		back, err := Expand(c)
		if err != nil || !slices.Equal(back, names) {
			t.Fatalf("Expand(Compress(%q)) = Expand(%q) = %q, %v", names, c, back, err)
		}
	})
}
