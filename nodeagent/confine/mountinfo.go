package confine

import (
	"bufio"
	"fmt"
	"io"
	"path"
	"strconv"
	"strings"
)

// mount is one cgroup2 mount: where it is, and which directory of the hierarchy it shows
// ("/" unless a container runtime bind-mounted a subtree).
type mount struct {
	point, root string
}

// FindCgroup2 returns the mount point of the cgroup v2 hierarchy from r, the contents of
// /proc/self/mountinfo: /sys/fs/cgroup on a pure v2 node, /sys/fs/cgroup/unified on a
// hybrid one. When several are mounted the first wins. A node without one gives an error
// wrapping ErrNotSupported; malformed text gives another error.
func FindCgroup2(r io.Reader) (string, error) {
	m, err := findCgroup2(r)
	return m.point, err
}

func findCgroup2(r io.Reader) (mount, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.TrimSpace(line) == "" {
			continue
		}
		// ID PARENT MAJ:MIN ROOT POINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTIONS
		pre, post, ok := strings.Cut(line, " - ")
		fields := strings.Fields(pre)
		if !ok || len(fields) < 6 {
			return mount{}, fmt.Errorf("parse mountinfo line %q: too few fields", line)
		}
		if fs := strings.Fields(post); len(fs) == 0 || fs[0] != "cgroup2" {
			continue
		}
		return mount{point: unescape(fields[4]), root: unescape(fields[3])}, nil
	}
	if err := sc.Err(); err != nil {
		return mount{}, fmt.Errorf("read mountinfo: %w", err)
	}
	return mount{}, fmt.Errorf("no cgroup v2 hierarchy mounted: %w", ErrNotSupported)
}

// CgroupMount is a mounted cgroup hierarchy.
type CgroupMount struct {
	Point string // where it is mounted
	V2    bool   // cgroup2 (unified), else a v1 hierarchy
}

// CgroupMounts returns every cgroup hierarchy, v1 and v2, mounted according to r, the contents
// of /proc/self/mountinfo (the epilog searches them all for Slurm's job cgroups). Malformed
// lines are skipped; only a read error is returned.
func CgroupMounts(r io.Reader) ([]CgroupMount, error) {
	var out []CgroupMount
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for sc.Scan() {
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		f := strings.Fields(pre)
		if !ok || len(f) < 6 {
			continue
		}
		switch fs := strings.Fields(post); {
		case len(fs) == 0:
		case fs[0] == "cgroup2":
			out = append(out, CgroupMount{Point: unescape(f[4]), V2: true})
		case fs[0] == "cgroup":
			out = append(out, CgroupMount{Point: unescape(f[4])})
		}
	}
	if err := sc.Err(); err != nil {
		return out, fmt.Errorf("read mountinfo: %w", err)
	}
	return out, nil
}

// unescape undoes mountinfo's octal escapes of space, tab, newline and backslash.
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// ownCgroup returns this process's cgroup v2 path from r, the contents of /proc/self/cgroup
// ("0::/system.slice/x.service"); "/" when the file has no v2 line.
func ownCgroup(r io.Reader) (string, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if p, ok := strings.CutPrefix(sc.Text(), "0::"); ok {
			// A cgroup that was removed under us reads "/path (deleted)".
			p = strings.TrimSuffix(p, " (deleted)")
			return path.Clean("/" + p), nil
		}
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("read own cgroup: %w", err)
	}
	return "/", nil
}

// dirOf turns a cgroup path into a directory under the mount. A path outside the mount's
// root (another namespace's view) maps to the mount point itself.
func (m mount) dirOf(cgroup string) string {
	rel, ok := strings.CutPrefix(path.Clean(cgroup), path.Clean(m.root))
	if !ok || (rel != "" && !strings.HasPrefix(rel, "/") && m.root != "/") {
		return m.point
	}
	return path.Join(m.point, rel)
}
