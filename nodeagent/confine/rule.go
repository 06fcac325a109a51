package confine

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Rule allows one kind of access to a set of device files. Rules only allow; whatever no rule
// allows is denied.
type Rule struct {
	// Type is 'c' (character device), 'b' (block device) or 'a' (both).
	Type byte
	// Major and Minor are the device numbers; -1 matches any.
	Major, Minor int64
	// Access is a non-empty combination of 'r' (open for reading), 'w' (open for writing) and
	// 'm' (mknod). An open for reading and writing needs both.
	Access string
}

// Wildcard matches any major or minor number.
const Wildcard = -1

// Device numbers Linux can express: 12 bits of major, 20 of minor.
const (
	maxMajor = 1<<12 - 1
	maxMinor = 1<<20 - 1
)

// NVIDIA's fixed character device numbers; nvidia-uvm's and nvidia-caps' majors are
// assigned at module load and read with ReadMajors.
const (
	// NvidiaMajor is the major of /dev/nvidiaN (minor N) and /dev/nvidiactl.
	NvidiaMajor = 195
	// NvidiaCtlMinor is the minor of /dev/nvidiactl, which every CUDA process opens.
	NvidiaCtlMinor = 255
	// nvidiaModesetMinor is /dev/nvidia-modeset, the highest minor below the control
	// device; GPU minors stay below it.
	nvidiaModesetMinor = 254
)

// String formats r the way cgroup v1's devices.allow does: "c 195:3 rw", "c 136:* rwm".
func (r Rule) String() string {
	num := func(n int64) string {
		if n == Wildcard {
			return "*"
		}
		return strconv.FormatInt(n, 10)
	}
	return fmt.Sprintf("%c %s:%s %s", r.Type, num(r.Major), num(r.Minor), r.Access)
}

func (r Rule) validate() error {
	switch r.Type {
	case 'c', 'b', 'a':
	default:
		return fmt.Errorf("type %q is not 'c', 'b' or 'a'", r.Type)
	}
	if r.Major < Wildcard || r.Major > maxMajor {
		return fmt.Errorf("major %d out of range (-1 for any, 0..%d)", r.Major, maxMajor)
	}
	if r.Minor < Wildcard || r.Minor > maxMinor {
		return fmt.Errorf("minor %d out of range (-1 for any, 0..%d)", r.Minor, maxMinor)
	}
	if r.Access == "" {
		return errors.New("empty access: allow at least one of r, w, m")
	}
	for _, c := range r.Access {
		if !strings.ContainsRune("rwm", c) {
			return fmt.Errorf("access %q: %q is not r, w or m", r.Access, c)
		}
	}
	return nil
}

// DefaultRules are the devices every worker may use, as container runtimes allow them:
// /dev/null, zero, full, random, urandom, tty, ptmx and the pseudo-terminals /dev/pts/*.
// The caller adds GPURules for the worker's GPUs; everything else is denied. The slice is new
// on every call.
func DefaultRules() []Rule {
	return []Rule{
		{Type: 'c', Major: 1, Minor: 3, Access: "rwm"},          // /dev/null
		{Type: 'c', Major: 1, Minor: 5, Access: "rwm"},          // /dev/zero
		{Type: 'c', Major: 1, Minor: 7, Access: "rwm"},          // /dev/full
		{Type: 'c', Major: 1, Minor: 8, Access: "rwm"},          // /dev/random
		{Type: 'c', Major: 1, Minor: 9, Access: "rwm"},          // /dev/urandom
		{Type: 'c', Major: 5, Minor: 0, Access: "rwm"},          // /dev/tty
		{Type: 'c', Major: 5, Minor: 2, Access: "rwm"},          // /dev/ptmx
		{Type: 'c', Major: 136, Minor: Wildcard, Access: "rwm"}, // /dev/pts/*
	}
}

// GPURules allow the GPUs with the given minor numbers (N of /dev/nvidiaN, from NVML), the
// control device /dev/nvidiactl, and, when uvmMajor is not negative, /dev/nvidia-uvm and
// /dev/nvidia-uvm-tools (read uvmMajor with ReadMajors; CUDA needs it). Access is "rw":
// workers do not create device nodes. A minor outside 0..253 is an error, never a wildcard:
// an unknown minor (-1) must not open every GPU.
func GPURules(minors []int, uvmMajor int) ([]Rule, error) {
	rules := []Rule{{Type: 'c', Major: NvidiaMajor, Minor: NvidiaCtlMinor, Access: "rw"}}
	for _, m := range minors {
		if m < 0 || m >= nvidiaModesetMinor {
			return nil, fmt.Errorf("gpu minor %d out of range 0..%d", m, nvidiaModesetMinor-1)
		}
		rules = append(rules, Rule{Type: 'c', Major: NvidiaMajor, Minor: int64(m), Access: "rw"})
	}
	if uvmMajor >= 0 {
		if uvmMajor > maxMajor {
			return nil, fmt.Errorf("nvidia-uvm major %d out of range", uvmMajor)
		}
		rules = append(rules, Rule{Type: 'c', Major: int64(uvmMajor), Minor: Wildcard, Access: "rw"})
	}
	return rules, nil
}

// CapRules allow the NVIDIA capability devices /dev/nvidia-caps/nvidia-capN with the given
// minors, which MIG needs: the caps of the worker's GPU and compute instances (minors from
// /proc/driver/nvidia/capabilities). capsMajor comes from ReadMajors.
func CapRules(capsMajor int, minors []int) ([]Rule, error) {
	if capsMajor < 0 || capsMajor > maxMajor {
		return nil, fmt.Errorf("nvidia-caps major %d out of range", capsMajor)
	}
	var rules []Rule
	for _, m := range minors {
		if m < 0 || m > maxMinor {
			return nil, fmt.Errorf("nvidia-caps minor %d out of range", m)
		}
		rules = append(rules, Rule{Type: 'c', Major: int64(capsMajor), Minor: int64(m), Access: "rw"})
	}
	return rules, nil
}

// Majors are the character device majors that NVIDIA's kernel modules register when they
// load; -1 when the module is not loaded.
type Majors struct {
	// UVM is nvidia-uvm's: /dev/nvidia-uvm (minor 0) and /dev/nvidia-uvm-tools (minor 1).
	UVM int
	// Caps is nvidia-caps': /dev/nvidia-caps/nvidia-capN.
	Caps int
}

// ProcDevices is where Linux lists the registered device majors.
const ProcDevices = "/proc/devices"

// ReadMajors reads NVIDIA's dynamic majors from r, the contents of /proc/devices. A node
// without NVIDIA modules gives -1 for both and no error; text that is not /proc/devices'
// format is an error.
func ReadMajors(r io.Reader) (Majors, error) {
	m := Majors{UVM: -1, Caps: -1}
	sc := bufio.NewScanner(r)
	section := ""
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "":
			continue
		case strings.HasSuffix(line, ":"):
			section = line
			continue
		case section != "Character devices:":
			continue
		}
		num, name, ok := strings.Cut(line, " ")
		major, err := strconv.Atoi(num)
		if !ok || err != nil || major < 0 || major > maxMajor {
			return Majors{UVM: -1, Caps: -1}, fmt.Errorf("parse %s line %q: want \"MAJOR NAME\"", ProcDevices, line)
		}
		switch strings.TrimSpace(name) {
		case "nvidia-uvm":
			m.UVM = major
		case "nvidia-caps":
			m.Caps = major
		}
	}
	if err := sc.Err(); err != nil {
		return Majors{UVM: -1, Caps: -1}, fmt.Errorf("read %s: %w", ProcDevices, err)
	}
	return m, nil
}
