package slurm

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// scontrol runs the real `scontrol show hostnames|hostlist`, which needs only a parseable
// slurm.conf, no controller.
type scontrol struct {
	path string
	env  []string
	dir  string
}

// newScontrol finds scontrol and writes a minimal slurm.conf for it. Without scontrol the
// test skips, except under CI=true, where `make test` installs it: there a missing scontrol
// means the comparison silently stopped running, so it fails.
func newScontrol(t testing.TB) *scontrol {
	t.Helper()
	path, err := exec.LookPath("scontrol")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("scontrol is not on PATH and CI=true: install the Debian bookworm package slurm-client (Slurm 22.05) so that hostlists are compared with the real Slurm")
		}
		t.Skip("scontrol is not on PATH; install slurm-client (Debian bookworm, Slurm 22.05) to compare Expand and Compress with the real Slurm")
	}
	dir := t.TempDir()
	conf := filepath.Join(dir, "slurm.conf")
	const text = "ClusterName=shoaltest\nSlurmctldHost=localhost\nNodeName=localhost CPUs=1 State=UNKNOWN\n"
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	// Drop the caller's SLURM_* variables: inside a job they would point scontrol at the
	// cluster's configuration instead of ours.
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SLURM_") {
			env = append(env, kv)
		}
	}
	s := &scontrol{path: path, env: append(env, "SLURM_CONF="+conf), dir: dir}

	out, stderr, err := s.run("--version")
	if err != nil {
		t.Fatalf("scontrol --version: %v: %s", err, stderr)
	}
	if version := strings.TrimSpace(out); !regexp.MustCompile(`^slurm(-wlm)? 22\.05\.`).MatchString(version) {
		msg := fmt.Sprintf("scontrol is %q; these comparisons are written for Slurm 22.05 (Debian bookworm's slurm-client), whose hostlist grammar differs from later versions", version)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return s
}

func (s *scontrol) run(args ...string) (stdout, stderr string, err error) {
	cmd := exec.Command(s.path, args...)
	cmd.Env = s.env
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

// hostnames returns what `scontrol show hostnames in` prints, and whether scontrol rejected
// in (it then prints "Invalid hostlist" but still exits 0).
func (s *scontrol) hostnames(t testing.TB, in string) (names []string, rejected bool) {
	t.Helper()
	out, stderr, err := s.run("--", "show", "hostnames", in)
	if strings.Contains(stderr, "Invalid hostlist") {
		return nil, true
	}
	if err != nil || stderr != "" {
		t.Fatalf("scontrol show hostnames %q: %v: %s", in, err, stderr)
	}
	if out == "" {
		return nil, false
	}
	return strings.Split(strings.TrimSuffix(out, "\n"), "\n"), false
}

// hostlist returns what `scontrol show hostlist` prints for names. The names go through a
// file, which scontrol reads when the argument starts with '/': it keeps long lists under
// the argument size limit, and a list that itself starts with '/' is not taken for a path.
func (s *scontrol) hostlist(t testing.TB, names []string) string {
	t.Helper()
	f, err := os.CreateTemp(s.dir, "names-*")
	if err == nil {
		_, err = f.WriteString(strings.Join(names, ","))
		err = errors.Join(err, f.Close())
	}
	if err != nil {
		t.Fatal(err)
	}
	defer os.Remove(f.Name())
	return s.compress(t, f.Name())
}

// compress returns what `scontrol show hostlist in` prints.
func (s *scontrol) compress(t testing.TB, in string) string {
	t.Helper()
	out, stderr, err := s.run("--", "show", "hostlist", in)
	if err != nil || stderr != "" {
		t.Fatalf("scontrol show hostlist %q: %v: %s", in, err, stderr)
	}
	return strings.TrimSuffix(out, "\n")
}

// scontrolCases are hostlists checked against scontrol. deviation is empty where Expand and
// scontrol must agree (both give the same names, or both reject); otherwise it says why
// Expand deliberately rejects an input 22.05 accepts, or reads it differently.
var scontrolCases = []struct {
	in        string
	deviation string
}{
	// Accepted by both, same names.
	{in: ""},
	{in: " , "},
	{in: "n1"},
	{in: "login"},
	{in: "n[1-3],m1"},
	{in: "n[01-3]"},
	{in: "n[1-03]"},
	{in: "n[001-5]"},
	{in: "n[8-11]"},
	{in: "n[098-101]"},
	{in: "n[05-99],n100"},
	{in: "n[3,1-2]"},
	{in: "n[1,01]"},
	{in: "n[1-2,1-2]"},
	{in: "n[7]"},
	{in: "[1-3]"},
	{in: "007"},
	{in: "5,6"},
	{in: "rack[1-2]-node[01-02]"},
	{in: "n[1-2][3-4]"},
	{in: "a[1-2]b[3]"},
	{in: "a[1-2]b[3,5]c[0]"},
	{in: "n1 n2\tn3"},
	{in: ",n1,,n2,"},
	{in: "n[1-2] m[1-2]"},
	{in: "n[1-3],n[4-6]"},
	{in: "n[1-3],n[5-6]"},
	{in: "n[1-9],n[010-011]"},
	{in: "n[1-2],m[1-2],n3"},
	{in: "n1,n2[1]"},
	{in: "n.1,n-[1-2],é[1-2]"},
	{in: "n1x,n01a"},
	{in: "/n1,-n2"},
	{in: "n[1-65536]"},
	{in: "a[1-2]b[1-300]"},
	{in: "a[1-2]b[1-2]c[1-2]"},
	{in: "a[1-2]b[1-2]c[1-2]d[0-1]"},
	{in: "r[1-2]-[3-4]-[5-6]-n[01-02]"},
	{in: "n[0000000000000000000000001-2]"},
	{in: "x" + strings.Repeat("y", 3000) + "[1-2]"},

	// Rejected by both.
	{in: "a[3-1]"},
	{in: "a[1-3]b"},
	{in: "gpu-a[1-2]-ib"},
	{in: "n[0-65536]"},
	{in: "a[]"},
	{in: "n[1,,2]"},
	{in: "n[,1]"},
	{in: "n[1-2-3]"},
	{in: "n[-1]"},
	{in: "n[0x1]"},
	{in: "n[1x2]"},
	{in: "n[a-c]"},
	{in: "n[1-2]]"},
	{in: "a[1]b]"},
	{in: "a[1-2]x]y[3]"},
	{in: "a[1-65536,1]b[1]"},
	{in: "ok1,bad[2-1]"},

	// Accepted by 22.05, rejected here.
	{in: "n[1-]", deviation: "22.05 reads an empty high bound as the low bound"},
	{in: "n[+1-3]", deviation: "22.05 reads a sign with strtoul and pads to its width: n01 n02 n03"},
	{in: "n[ 1-3]", deviation: "22.05 pads to the width of the space: n01 n02 n03"},
	{in: "n[1, 2]", deviation: "22.05 gives n1 n02"},
	{in: "a[1", deviation: "22.05 turns an unclosed bracket into the name a]"},
	{in: "a[1,2", deviation: "22.05 gives a] and 2"},
	{in: "a]1", deviation: "brackets must balance"},
	{in: "a[b[1-2]", deviation: "22.05 gives a[b1 a[b2"},
	{in: "n1\nn2", deviation: "22.05 keeps the newline inside one name"},
	{in: "n[99999999999999999999]", deviation: "22.05 clamps the number to 18446744073709551615"},
	{in: "a[1-300]b[1-300]", deviation: "more than MaxRange names from one bracketed name"},
	{in: "a[1-2]b[1-30000,1-30000]", deviation: "more than MaxRange names from one bracketed name"},

	// Accepted by both, read differently.
	{in: "n99999999999999999999", deviation: "22.05 clamps the suffix: n18446744073709551615"},
}

func TestAgainstScontrol(t *testing.T) {
	s := newScontrol(t)
	for _, tt := range scontrolCases {
		name := tt.in
		if len(name) > 40 {
			name = name[:40] + "..."
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			want, rejected := s.hostnames(t, tt.in)
			got, err := Expand(tt.in)
			switch {
			case tt.deviation != "":
				t.Logf("deviation (%s): scontrol gives %s (rejected: %v); Expand gives %s, %v",
					tt.deviation, abbrev(want), rejected, abbrev(got), err)
				if rejected {
					t.Errorf("the deviation is gone: scontrol rejects %q now", tt.in)
				}
				return
			case rejected:
				if err == nil {
					t.Errorf("scontrol rejects %q but Expand gives %q", tt.in, got)
				} else if !errors.Is(err, ErrHostlist) {
					t.Errorf("Expand(%q) error %v does not wrap ErrHostlist", tt.in, err)
				}
				return
			case err != nil:
				t.Fatalf("scontrol accepts %q (%d names) but Expand fails: %v", tt.in, len(want), err)
			case !slices.Equal(got, want):
				t.Fatalf("Expand(%q) = %s\nscontrol show hostnames = %s", tt.in, abbrev(got), abbrev(want))
			}
			if len(got) == 0 {
				return
			}
			if c, wantC := Compress(got), s.hostlist(t, got); c != wantC {
				t.Errorf("Compress(Expand(%q)) = %q\nscontrol show hostlist  = %q", tt.in, c, wantC)
			}
			// Slurm's own compression of the input must read back to the same names.
			if !strings.HasPrefix(tt.in, "/") {
				slurmForm := s.compress(t, tt.in)
				if again, err := Expand(slurmForm); err != nil || !slices.Equal(again, want) {
					t.Errorf("Expand(%q) (scontrol's form of %q) = %s, %v", slurmForm, tt.in, abbrev(again), err)
				}
			}
		})
	}
}

func TestCompressAgainstScontrol(t *testing.T) {
	s := newScontrol(t)
	var lists [][]string
	for _, tt := range compressCases {
		if tt.names != "" {
			lists = append(lists, strings.Split(tt.names, ","))
		}
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for range 200 {
		if names := randomNames(rng); len(names) > 0 {
			lists = append(lists, names)
		}
	}
	for i, names := range lists {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			t.Parallel()
			if got, want := Compress(names), s.hostlist(t, names); got != want {
				t.Errorf("Compress(%q) = %q\nscontrol show hostlist = %q", names, got, want)
			}
		})
	}
}

// longNumber finds numbers that 22.05 may clamp to 64 bits.
var longNumber = regexp.MustCompile(`[0-9]{19}`)

// FuzzAgainstScontrol looks for hostlists on which Expand or Compress and Slurm 22.05
// disagree: go test -fuzz FuzzAgainstScontrol ./slurm (needs scontrol).
func FuzzAgainstScontrol(f *testing.F) {
	s := newScontrol(f)
	for _, seed := range []string{"n[1-3],m1", "rack[1-2]-node[01-02]", "n[09-10,011]", "a[3-1]", "a[1-3]b"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, in string) {
		if strings.HasPrefix(in, "-") || strings.ContainsRune(in, 0) || longNumber.MatchString(in) {
			t.Skip("not a possible argument, taken for an option, or a number 22.05 clamps")
		}
		got, err := Expand(in)
		if err != nil && strings.Contains(err.Error(), "stands for more than") {
			t.Skip("scontrol may print millions of names for it")
		}
		want, rejected := s.hostnames(t, in)
		if rejected {
			if err == nil {
				t.Fatalf("scontrol rejects %q but Expand gives %q", in, got)
			}
			return
		}
		if err != nil {
			return // a deliberate deviation, see the package documentation
		}
		if !slices.Equal(got, want) {
			t.Fatalf("Expand(%q) = %q\nscontrol = %q", in, got, want)
		}
		if len(got) > 0 {
			if c, wantC := Compress(got), s.hostlist(t, got); c != wantC {
				t.Fatalf("Compress(%q) = %q\nscontrol = %q", got, c, wantC)
			}
		}
	})
}

func abbrev(names []string) string {
	if len(names) <= 8 {
		return fmt.Sprintf("%q", names)
	}
	return fmt.Sprintf("%q ... %q (%d names)", names[:4], names[len(names)-2:], len(names))
}
