package launcher

import (
	"bufio"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/shoal-hpc/shoal/nodeagent/confine"
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
type CgroupMount = confine.CgroupMount

// ParseCgroupMounts returns the cgroup hierarchies (v1 and v2) in a /proc/self/mountinfo.
func ParseCgroupMounts(r io.Reader) ([]CgroupMount, error) { return confine.CgroupMounts(r) }

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
