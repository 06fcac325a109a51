package launcher

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// Slurm's job cgroups. Where Slurm confines jobs (proctrack/cgroup, task/cgroup), every process
// of job J is in a cgroup named job_J, and only root can move a process out of it, so that
// cgroup is the job's process list, whatever the processes' environments say:
//
//	cgroup v1: <mount>/<controller>/slurm/uid_<uid>/job_<id>/step_<n>/...
//	           (slurm_<node>/uid_<uid>/job_<id> where one host runs several slurmd)
//	cgroup v2: <mount>/system.slice/slurmstepd.scope/job_<id>/step_<n>/...
//	           (<node>_slurmstepd.scope where one host runs several slurmd; the scope sits where
//	           slurmd's own cgroup is, so its depth varies)
//	hybrid:    v1 controllers and a v2 hierarchy (often at <mount>/unified) side by side; Slurm
//	           uses one of the two, and the search looks in both.

// CgroupMount is a mounted cgroup hierarchy.
type CgroupMount struct {
	Point string // where it is mounted
	V2    bool   // cgroup2 (unified), else a v1 hierarchy
}

// ParseCgroupMounts returns the cgroup hierarchies (v1 and v2) in a /proc/self/mountinfo.
func ParseCgroupMounts(r io.Reader) ([]CgroupMount, error) {
	var out []CgroupMount
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for sc.Scan() {
		// ID PARENT MAJ:MIN ROOT POINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTIONS
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		f := strings.Fields(pre)
		if !ok || len(f) < 6 {
			continue
		}
		switch fs := strings.Fields(post); {
		case len(fs) == 0:
		case fs[0] == "cgroup2":
			out = append(out, CgroupMount{Point: unescapeMount(f[4]), V2: true})
		case fs[0] == "cgroup":
			out = append(out, CgroupMount{Point: unescapeMount(f[4])})
		}
	}
	if err := sc.Err(); err != nil {
		return out, fmt.Errorf("read mountinfo: %w", err)
	}
	return out, nil
}

// unescapeMount undoes mountinfo's octal escapes of space, tab, newline and backslash.
func unescapeMount(s string) string {
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

var uidDirRe = regexp.MustCompile(`^uid_[0-9]+$`)

const (
	cgroupSearchDepth = 8     // mount/system.slice/slurmstepd.scope/job_N is depth 3; nested slurmd deeper
	cgroupSearchDirs  = 50000 // a node's whole cgroup forest is a few thousand directories
)

// FindJobCgroups returns the directories of job's cgroups under the given hierarchies: job_<job>
// whose parent is uid_<uid> (v1; any uid_* when uid < 0) or a *slurmstepd.scope (v2). It
// follows no symlinks (cgroupfs has none) and does not look inside other jobs' cgroups.
func FindJobCgroups(mounts []CgroupMount, job string, uid int) []string {
	want := "job_" + job
	var out []string
	seen := 0
	var walk func(dir string, v2 bool, depth int)
	walk = func(dir string, v2 bool, depth int) {
		if depth == 0 || seen >= cgroupSearchDirs {
			return
		}
		ents, err := os.ReadDir(dir)
		if err != nil {
			return
		}
		parent := filepath.Base(dir)
		for _, e := range ents {
			if !e.IsDir() || e.Type()&os.ModeSymlink != 0 {
				continue
			}
			seen++
			name := e.Name()
			if strings.HasPrefix(name, "job_") || strings.HasPrefix(name, "step_") {
				if name == want && jobParent(parent, v2, uid) {
					out = append(out, filepath.Join(dir, name))
				}
				continue // another job's, or this job's own subtree
			}
			walk(filepath.Join(dir, name), v2, depth-1)
		}
	}
	done := map[string]bool{}
	for _, m := range mounts {
		if done[m.Point] {
			continue
		}
		done[m.Point] = true
		walk(m.Point, m.V2, cgroupSearchDepth)
	}
	return out
}

func jobParent(parent string, v2 bool, uid int) bool {
	if v2 {
		return strings.HasSuffix(parent, "slurmstepd.scope")
	}
	if !uidDirRe.MatchString(parent) {
		return false
	}
	return uid < 0 || parent == "uid_"+strconv.Itoa(uid)
}

// cgroupProcs returns the pids in a cgroup and all its descendants (v1 lists a process only in
// the leaf it is in: the job's are in step_*/...).
func cgroupProcs(dir string) []int {
	var pids []int
	var walk func(d string, depth int)
	walk = func(d string, depth int) {
		if f, err := os.Open(filepath.Join(d, "cgroup.procs")); err == nil {
			sc := bufio.NewScanner(f)
			for sc.Scan() {
				if pid, err := strconv.Atoi(strings.TrimSpace(sc.Text())); err == nil && pid > 0 {
					pids = append(pids, pid)
				}
			}
			f.Close()
		}
		if depth == 0 {
			return
		}
		ents, _ := os.ReadDir(d)
		for _, e := range ents {
			if e.IsDir() && e.Type()&os.ModeSymlink == 0 {
				walk(filepath.Join(d, e.Name()), depth-1)
			}
		}
	}
	walk(dir, 6)
	return pids
}

// inJobCgroup reports whether a /proc/<pid>/cgroup names job's cgroup (hierarchy-id:controllers:path
// lines; the path is relative to the hierarchy's root).
func inJobCgroup(procCgroup []byte, job string) bool {
	want := "/job_" + job
	for _, line := range strings.Split(string(procCgroup), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		p := parts[2]
		if strings.HasSuffix(p, want) || strings.Contains(p, want+"/") {
			return true
		}
	}
	return false
}
