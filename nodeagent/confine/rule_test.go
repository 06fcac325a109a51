package confine

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadMajors(t *testing.T) {
	for _, tc := range []struct {
		file      string
		uvm, caps int
	}{
		// A driver node: nvidia-uvm-tools-bogus and the block device of the same name
		// must not be mistaken for nvidia-uvm.
		{"nvidia", 505, 237},
		// This machine, without NVIDIA modules.
		{"no-nvidia", -1, -1},
	} {
		f, err := os.Open(filepath.Join("testdata/devices", tc.file))
		if err != nil {
			t.Fatal(err)
		}
		m, err := ReadMajors(f)
		f.Close()
		if err != nil || m.UVM != tc.uvm || m.Caps != tc.caps {
			t.Errorf("%s: ReadMajors = %+v, %v; want uvm %d caps %d", tc.file, m, err, tc.uvm, tc.caps)
		}
	}
	if _, err := ReadMajors(strings.NewReader("Character devices:\nnot a line\n")); err == nil {
		t.Error("ReadMajors accepted a malformed line")
	}
}

func FuzzReadMajors(f *testing.F) {
	for _, name := range []string{"nvidia", "no-nvidia"} {
		b, err := os.ReadFile(filepath.Join("testdata/devices", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(b))
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, err := ReadMajors(strings.NewReader(s))
		if err != nil {
			return
		}
		// Whatever it reads must make valid rules.
		if m.UVM >= 0 {
			if _, err := GPURules([]int{0}, m.UVM); err != nil {
				t.Errorf("major %d read but rejected: %v", m.UVM, err)
			}
		}
		if m.Caps >= 0 {
			if _, err := CapRules(m.Caps, []int{1}); err != nil {
				t.Errorf("major %d read but rejected: %v", m.Caps, err)
			}
		}
	})
}

func TestGPURules(t *testing.T) {
	rules, err := GPURules([]int{0, 3}, 505)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range rules {
		got = append(got, r.String())
	}
	if want := "c 195:255 rw,c 195:0 rw,c 195:3 rw,c 505:* rw"; strings.Join(got, ",") != want {
		t.Errorf("GPURules = %s, want %s", strings.Join(got, ","), want)
	}
	if rules, err := GPURules(nil, -1); err != nil || len(rules) != 1 {
		t.Errorf("GPURules without GPUs or uvm = %v, %v; want only nvidiactl", rules, err)
	}
	// An unknown minor must never become a wildcard that opens every GPU.
	for _, minor := range []int{-1, 254, 255, 1000} {
		if _, err := GPURules([]int{minor}, 505); err == nil {
			t.Errorf("GPURules accepted minor %d", minor)
		}
	}
	if _, err := CapRules(-1, []int{1}); err == nil {
		t.Error("CapRules accepted major -1")
	}
}

func TestFindCgroup2(t *testing.T) {
	for _, tc := range []struct {
		file, point, root string
		notSupported      bool
	}{
		{file: "hybrid", point: "/sys/fs/cgroup/unified", root: "/"},
		{file: "v2", point: "/sys/fs/cgroup", root: "/"},
		{file: "container", point: "/sys/fs/cgroup", root: "/kubepods/burstable/pod1234/abcd"},
		{file: "v1", notSupported: true},
	} {
		f, err := os.Open(filepath.Join("testdata/mountinfo", tc.file))
		if err != nil {
			t.Fatal(err)
		}
		m, err := findCgroup2(f)
		f.Close()
		if tc.notSupported {
			if !errors.Is(err, ErrNotSupported) {
				t.Errorf("%s: err = %v, want ErrNotSupported", tc.file, err)
			}
			continue
		}
		if err != nil || m.point != tc.point || m.root != tc.root {
			t.Errorf("%s: got %+v, %v; want %s at %s", tc.file, m, err, tc.root, tc.point)
		}
	}
	if _, err := FindCgroup2(strings.NewReader("garbage\n")); err == nil || errors.Is(err, ErrNotSupported) {
		t.Errorf("malformed mountinfo: err = %v, want a parse error", err)
	}
	for in, want := range map[string]string{
		`/mnt/with\040space`: "/mnt/with space",
		`/a\134b`:            `/a\b`,
		`/cut\13`:            `/cut\13`,
	} {
		if got := unescape(in); got != want {
			t.Errorf("unescape(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzFindCgroup2(f *testing.F) {
	for _, name := range []string{"hybrid", "v2", "v1", "container"} {
		b, err := os.ReadFile(filepath.Join("testdata/mountinfo", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(b))
	}
	f.Fuzz(func(t *testing.T, s string) {
		_, _ = FindCgroup2(strings.NewReader(s))
		_, _ = ownCgroup(strings.NewReader(s))
	})
}

func TestCgroupDir(t *testing.T) {
	for _, tc := range []struct {
		m          mount
		self, want string
	}{
		{mount{"/sys/fs/cgroup/unified", "/"}, "/", "/sys/fs/cgroup/unified"},
		{mount{"/sys/fs/cgroup", "/"}, "/system.slice/slurmstepd.scope/job_7/step_0/user/task_0", "/sys/fs/cgroup/system.slice/slurmstepd.scope/job_7/step_0/user/task_0"},
		{mount{"/sys/fs/cgroup", "/kubepods/pod1"}, "/kubepods/pod1/c", "/sys/fs/cgroup/c"},
		{mount{"/sys/fs/cgroup", "/kubepods/pod1"}, "/kubepods/pod12", "/sys/fs/cgroup"},
		{mount{"/sys/fs/cgroup", "/kubepods/pod1"}, "/", "/sys/fs/cgroup"},
	} {
		if got := tc.m.dirOf(tc.self); got != tc.want {
			t.Errorf("%+v.dirOf(%q) = %q, want %q", tc.m, tc.self, got, tc.want)
		}
	}
	for in, want := range map[string]string{
		"12:devices:/\n0::/user.slice/x.scope\n": "/user.slice/x.scope",
		"0::/gone (deleted)\n":                   "/gone",
		"4:memory:/a\n":                          "/",
	} {
		if got, err := ownCgroup(strings.NewReader(in)); err != nil || got != want {
			t.Errorf("ownCgroup(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

func TestValidName(t *testing.T) {
	for name, ok := range map[string]bool{
		"worker-3": true, "": false, ".": false, "..": false, "a/b": false, "cgroup.procs": false,
	} {
		if err := validName(name); (err == nil) != ok {
			t.Errorf("validName(%q) = %v", name, err)
		}
	}
}
