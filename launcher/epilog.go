package launcher

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
)

// EpilogReport says what Epilog found and removed.
type EpilogReport struct {
	Job      string
	Clusters []string
	Killed   []int
	Removed  []string
	Problems []string
}

// EpilogOptions say where to look.
type EpilogOptions struct {
	Job      string   // Slurm job id
	UID      int      // the job's user (-1: unknown), for the rendezvous directory
	TmpRoots []string // parents of session directories (default: the system temp dir)
	ShmRoot  string   // default /dev/shm
	ProcRoot string   // default /proc
	CgroupV2 string   // cgroup v2 mount to sweep for leftover confinement groups ("" to skip)
	// RendezvousDirs are searched for the job's rendezvous files besides the user's
	// $HOME/.shoal/launch.
	RendezvousDirs []string
}

var sessionRe = regexp.MustCompile(`^shoal-[0-9]+$`)

// Epilog removes what the Slurm job left of shoal on this node, identified by job id, without
// touching other jobs: processes (SIGKILL), object store directories under /dev/shm, session
// directories, rendezvous files and empty confinement cgroups. It is for Slurm's Epilog, which
// runs as root after the job's processes were signalled; it never fails the node for a
// leftover it cannot remove, it reports it.
func Epilog(log hclog.Logger, o EpilogOptions) *EpilogReport {
	r := &EpilogReport{Job: o.Job}
	if o.ProcRoot == "" {
		o.ProcRoot = "/proc"
	}
	if o.ShmRoot == "" {
		o.ShmRoot = "/dev/shm"
	}
	if len(o.TmpRoots) == 0 {
		o.TmpRoots = []string{os.TempDir()}
	}
	clusters := map[string]Info{}
	// 1. clusters recorded in session directories
	for _, root := range o.TmpRoots {
		bases, _ := filepath.Glob(filepath.Join(root, "shoal-*"))
		for _, base := range bases {
			if !sessionRe.MatchString(filepath.Base(base)) {
				continue
			}
			recs, _ := filepath.Glob(filepath.Join(base, "*", "cluster.json"))
			// a member node's store records its cluster too (<id>-<node>/member.json)
			members, _ := filepath.Glob(filepath.Join(base, "*", "member.json"))
			recs = append(recs, members...)
			for _, rec := range recs {
				var in Info
				b, err := os.ReadFile(rec)
				if err != nil || json.Unmarshal(b, &in) != nil || in.SlurmJob != o.Job {
					continue
				}
				in.Dir = filepath.Dir(rec)
				clusters[in.ID] = in
			}
		}
	}
	// 2. processes of the job that belong to shoal, and clusters named in their environments
	self := os.Getpid()
	ancestors := map[int]bool{}
	for p := self; p > 1; {
		ancestors[p] = true
		pp, err := ppid(o.ProcRoot, p)
		if err != nil || pp == p {
			break
		}
		p = pp
	}
	var victims []int
	ents, _ := os.ReadDir(o.ProcRoot)
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || ancestors[pid] {
			continue
		}
		env, err := os.ReadFile(filepath.Join(o.ProcRoot, e.Name(), "environ"))
		if err != nil {
			continue
		}
		vars := map[string]string{}
		for _, kv := range bytes.Split(env, []byte{0}) {
			if k, v, ok := strings.Cut(string(kv), "="); ok {
				vars[k] = v
			}
		}
		cid := vars["SHOAL_CLUSTER_ID"]
		_, known := clusters[cid]
		ofJob := vars["SLURM_JOB_ID"] == o.Job
		cmd, _ := os.ReadFile(filepath.Join(o.ProcRoot, e.Name(), "cmdline"))
		isShoal := cid != "" || vars["SHOAL_WORKER_ID"] != "" || isClusterCommand(cmd)
		if (ofJob && isShoal) || (cid != "" && known) {
			victims = append(victims, pid)
			if cid != "" && !known && ofJob {
				clusters[cid] = Info{ID: cid}
			}
		}
	}
	for _, pid := range victims {
		if err := syscall.Kill(pid, syscall.SIGKILL); err == nil {
			r.Killed = append(r.Killed, pid)
		}
	}
	if len(r.Killed) > 0 {
		time.Sleep(100 * time.Millisecond) // let the kernel tear them down before rmdir
	}
	// 3. their files
	remove := func(p string) {
		if _, err := os.Lstat(p); err != nil {
			return
		}
		if err := os.RemoveAll(p); err != nil {
			r.Problems = append(r.Problems, fmt.Sprintf("remove %s: %v", p, err))
			return
		}
		r.Removed = append(r.Removed, p)
	}
	for id, in := range clusters {
		r.Clusters = append(r.Clusters, id)
		remove(filepath.Join(o.ShmRoot, "shoal-"+id))
		// member nodes' stores and session directories: shoal-<id>-<node>, <id>-<node>
		stores, _ := filepath.Glob(filepath.Join(o.ShmRoot, "shoal-"+id+"-*"))
		for _, d := range stores {
			remove(d)
		}
		if in.StoreDir != "" && strings.HasSuffix(in.StoreDir, "shoal-"+id) {
			remove(in.StoreDir)
		}
		if in.Dir != "" {
			remove(in.Dir)
			os.Remove(filepath.Dir(in.Dir)) // the per-user parent, when empty
		}
		for _, root := range o.TmpRoots {
			dirs, _ := filepath.Glob(filepath.Join(root, "shoal-*", id))
			more, _ := filepath.Glob(filepath.Join(root, "shoal-*", id+"-*"))
			dirs = append(dirs, more...)
			for _, d := range dirs {
				remove(d)
				os.Remove(filepath.Dir(d))
			}
		}
	}
	// rendezvous files of the job's launches
	dirs := append([]string{}, o.RendezvousDirs...)
	if o.UID >= 0 {
		if u, err := user.LookupId(strconv.Itoa(o.UID)); err == nil {
			dirs = append(dirs, filepath.Join(u.HomeDir, ".shoal", "launch"))
		}
	}
	for _, d := range dirs {
		files, _ := filepath.Glob(filepath.Join(d, o.Job+".*"))
		for _, f := range files {
			remove(f)
		}
	}
	// 4. confinement cgroups whose agent is gone
	if o.CgroupV2 != "" {
		sweepCgroups(o.CgroupV2, o.ProcRoot, r, 4)
	}
	log.Debug("epilog done", "job", o.Job, "clusters", len(r.Clusters), "killed", len(r.Killed), "removed", len(r.Removed))
	return r
}

var groupRe = regexp.MustCompile(`^shoal-([0-9]+)$`)

func sweepCgroups(dir, proc string, r *EpilogReport, depth int) {
	if depth == 0 {
		return
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		p := filepath.Join(dir, e.Name())
		if m := groupRe.FindStringSubmatch(e.Name()); m != nil {
			if _, err := os.Stat(filepath.Join(proc, m[1])); err == nil {
				continue // its agent is alive: another job's
			}
			if removeCgroupTree(p) == nil {
				r.Removed = append(r.Removed, p)
			} else {
				r.Problems = append(r.Problems, "remove cgroup "+p+": processes are still in it")
			}
			continue
		}
		sweepCgroups(p, proc, r, depth-1)
	}
}

// removeCgroupTree removes an empty cgroup and its empty children (cgroups are removed with
// rmdir, deepest first).
func removeCgroupTree(dir string) error {
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if e.IsDir() {
			removeCgroupTree(filepath.Join(dir, e.Name()))
		}
	}
	return syscall.Rmdir(dir)
}

func ppid(proc string, pid int) (int, error) {
	f, err := os.Open(filepath.Join(proc, strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	s, err := bufio.NewReader(f).ReadString('\n')
	if err != nil && s == "" {
		return 0, err
	}
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("bad stat of %d", pid)
	}
	fields := strings.Fields(s[i+1:])
	if len(fields) < 2 {
		return 0, fmt.Errorf("bad stat of %d", pid)
	}
	return strconv.Atoi(fields[1])
}

// isClusterCommand reports whether a command line is a shoal process that holds a cluster
// (`shoal launch`, `shoal run`, `shoal serve`), as opposed to, say, another node's epilog.
func isClusterCommand(cmdline []byte) bool {
	argv := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
	if len(argv) < 2 || filepath.Base(argv[0]) != "shoal" {
		return false
	}
	for _, a := range argv[1:] {
		switch a {
		case "launch", "run", "serve":
			return true
		case "admin", "--":
			return false
		}
	}
	return false
}
