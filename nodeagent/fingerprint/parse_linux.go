package fingerprint

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
)

// parseMeminfoKB finds key (e.g. "MemTotal") in /proc/meminfo or a NUMA node's meminfo
// ("Node 0 MemTotal:  5990612 kB") and returns it in bytes.
func parseMeminfoKB(b []byte, key string) (uint64, error) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		i := slices.Index(f, key+":")
		if i < 0 || i+1 >= len(f) {
			continue
		}
		n, err := strconv.ParseUint(f[i+1], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("parse %s: %w", key, err)
		}
		if i+2 < len(f) && f[i+2] == "kB" {
			if n > math.MaxUint64/1024 {
				return 0, fmt.Errorf("parse %s: %d kB overflows", key, n)
			}
			n *= 1024
		}
		return n, nil
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("scan meminfo: %w", err)
	}
	return 0, fmt.Errorf("no %s in meminfo", key)
}

// procCgroup is /proc/self/cgroup: the process's cgroup path in each hierarchy.
type procCgroup struct {
	v2     string // path in the unified hierarchy, "" when the line is absent
	hasV2  bool
	byCtrl map[string]string // v1 controller (or "name=systemd") -> path
}

// parseProcCgroup parses /proc/PID/cgroup lines "ID:CONTROLLERS:PATH".
func parseProcCgroup(b []byte) (procCgroup, error) {
	pc := procCgroup{byCtrl: map[string]string{}}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			continue
		}
		f := strings.SplitN(line, ":", 3)
		if len(f) != 3 {
			return procCgroup{}, fmt.Errorf("parse cgroup line %q: want ID:CONTROLLERS:PATH", line)
		}
		if f[0] == "0" && f[1] == "" {
			pc.v2, pc.hasV2 = f[2], true
			continue
		}
		for c := range strings.SplitSeq(f[1], ",") {
			if c != "" {
				pc.byCtrl[c] = f[2]
			}
		}
	}
	if err := sc.Err(); err != nil {
		return procCgroup{}, fmt.Errorf("scan cgroup: %w", err)
	}
	return pc, nil
}

// mount is one line of /proc/self/mountinfo, the fields cgroup discovery needs.
type mount struct {
	root      string // path inside the filesystem that is mounted
	point     string // where it is mounted
	fstype    string
	superOpts []string
}

// parseMountinfo parses /proc/PID/mountinfo (proc(5)).
func parseMountinfo(b []byte) ([]mount, error) {
	var mounts []mount
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		if strings.TrimSpace(line) == "" {
			continue
		}
		f := strings.Fields(line)
		sep := slices.Index(f, "-")
		if sep < 6 || sep+3 > len(f) {
			return nil, fmt.Errorf("parse mountinfo line %q: want 6 fields, optional fields, '-', fstype, source, options", line)
		}
		m := mount{root: unescapeMount(f[3]), point: unescapeMount(f[4]), fstype: f[sep+1]}
		if sep+3 < len(f) {
			m.superOpts = strings.Split(f[sep+3], ",")
		}
		mounts = append(mounts, m)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("scan mountinfo: %w", err)
	}
	return mounts, nil
}

// unescapeMount undoes the octal escapes (\040 for space) the kernel writes in mountinfo.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var sb strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				sb.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		sb.WriteByte(s[i])
	}
	return sb.String()
}

// errUnlimited reports a limit file that holds no limit ("max", -1, or a v1 value near 2^63).
var errUnlimited = errors.New("unlimited")

// v1Unlimited: cgroup v1 reports "no limit" as the largest page-aligned int64
// (9223372036854771712); anything from 2^62 up is treated as none.
const v1Unlimited = 1 << 62

// parseMemoryMax parses cgroup v2 memory.max.
func parseMemoryMax(b []byte) (uint64, error) {
	s := strings.TrimSpace(string(b))
	if s == "max" {
		return 0, errUnlimited
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("parse memory.max %q: %w", s, err)
	}
	return n, nil
}

// parseMemoryLimitV1 parses cgroup v1 memory.limit_in_bytes.
func parseMemoryLimitV1(b []byte) (uint64, error) {
	s := strings.TrimSpace(string(b))
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("parse memory.limit_in_bytes %q: %w", s, err)
	}
	if n < 0 || n >= v1Unlimited {
		return 0, errUnlimited
	}
	return uint64(n), nil
}

// parseCPUMax parses cgroup v2 cpu.max ("QUOTA PERIOD" in µs, QUOTA "max" for none) into CPUs.
func parseCPUMax(b []byte) (float64, error) {
	f := strings.Fields(string(b))
	if len(f) == 0 || len(f) > 2 {
		return 0, fmt.Errorf("parse cpu.max %q: want QUOTA [PERIOD]", b)
	}
	if f[0] == "max" {
		return 0, errUnlimited
	}
	period := "100000" // the kernel default when only a quota is written
	if len(f) == 2 {
		period = f[1]
	}
	return quotaCPUs(f[0], period)
}

// quotaCPUs divides a CFS quota by its period, both in µs; a negative quota means none.
func quotaCPUs(quota, period string) (float64, error) {
	q, err := strconv.ParseInt(strings.TrimSpace(quota), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("parse cpu quota %q: %w", quota, err)
	}
	if q < 0 {
		return 0, errUnlimited
	}
	p, err := strconv.ParseInt(strings.TrimSpace(period), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("parse cpu period %q: %w", period, err)
	}
	if p <= 0 || q == 0 {
		return 0, fmt.Errorf("parse cpu quota %d/%d: want positive quota and period", q, p)
	}
	return float64(q) / float64(p), nil
}
