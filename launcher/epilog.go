package launcher

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"
)

// The admin epilog runs as root after a Slurm job, on files and processes that the job's user,
// and every other user of the node, could have prepared. What it believes, and why:
//
//	the job's processes   the job's cgroup (Slurm's job_<id>), which only root can leave; where
//	                      the node has none, processes whose REAL uid is the job's and whose
//	                      environment names the job and shoal (or a cluster of the job). Never
//	                      a process of another uid; with no job uid known, none by environment.
//	the job's clusters    12-hex-digit ids (nothing else is ever joined to a path) from records
//	                      (cluster.json, member.json) in the job user's own <tmp>/shoal-<uid>
//	                      (owned by the uid, mode 0700, not a symlink) whose slurm_job is the
//	                      job, and from the environments of the job's processes.
//	what it removes       only entries the job's user owns, through directory descriptors
//	                      opened without following symlinks: what the user could remove.
//
// So a user can steer the epilog of their own job only at their own processes and files.

// EpilogReport says what Epilog found, killed and removed.
type EpilogReport struct {
	Job      string
	Clusters []string // ids of the job's clusters on this node
	Cgroups  []string // the job's cgroups (Slurm's job_<id>) found on this node
	Killed   []int    // pids signalled through a pidfd
	Removed  []string
	Problems []string // what was left alone, and why
}

// EpilogOptions say where to look.
type EpilogOptions struct {
	Job string // Slurm job id (decimal digits)
	// UID is the job's user (-1: unknown). With no uid, only the job's cgroup is killed: no
	// record is believed, no process is chosen by its environment and no file is removed.
	UID      int
	TmpRoots []string // parents of the per-user session bases (default: the system temp dir)
	ShmRoot  string   // default /dev/shm
	ProcRoot string   // default /proc; pids found there are killed only if /proc agrees
	// CgroupMounts are the cgroup hierarchies searched for the job's cgroup (nil: those in
	// /proc/self/mountinfo; empty: none, as on a node where Slurm uses no cgroups).
	CgroupMounts []CgroupMount
	CgroupV2     string // cgroup v2 mount to sweep for leftover confinement groups ("" to skip)
	// RendezvousDirs are searched for the job's rendezvous files besides the user's
	// $HOME/.shoal/launch.
	RendezvousDirs []string
	HomeDir        string // the job user's home ("": from the user database)
}

// ErrBadClusterID is wrapped by ParseRecord for an id that is not 12 lowercase hex digits.
var ErrBadClusterID = errors.New("not a cluster id (12 lowercase hex digits)")

// ValidClusterID reports whether id has the exact form NewID makes: 12 lowercase hex digits.
func ValidClusterID(id string) bool {
	if len(id) != 12 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// Record is what a session directory's cluster.json or member.json tells the epilog.
type Record struct {
	ID       string `json:"id"`
	SlurmJob string `json:"slurm_job"`
}

const maxRecord = 64 << 10 // a record is a few hundred bytes

// ParseRecord reads a cluster.json or member.json (at most 64 KiB). It fails on anything but a
// JSON object whose id is a cluster id (ErrBadClusterID); other fields are ignored, the paths
// among them included: the epilog derives every path from the id.
func ParseRecord(r io.Reader) (Record, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxRecord+1))
	if err != nil {
		return Record{}, fmt.Errorf("read record: %w", err)
	}
	if len(b) > maxRecord {
		return Record{}, fmt.Errorf("record longer than %d bytes", maxRecord)
	}
	var rec Record
	if err := json.Unmarshal(b, &rec); err != nil {
		return Record{}, fmt.Errorf("parse record: %w", err)
	}
	if !ValidClusterID(rec.ID) {
		return Record{}, fmt.Errorf("record id %q: %w", rec.ID, ErrBadClusterID)
	}
	return rec, nil
}

// sessionID returns the cluster id of a session directory or store name (<id> or <id>-<node>).
func sessionID(name string) (string, bool) {
	if len(name) < 12 || !ValidClusterID(name[:12]) {
		return "", false
	}
	if len(name) == 12 {
		return name, true
	}
	return name[:12], name[12] == '-' && len(name) > 13
}

var jobRe = regexp.MustCompile(`^[0-9]+$`)

// base is an open per-user session base, <root>/shoal-<uid>.
type base struct {
	root   string
	rootfd int
	fd     int
}

type epilog struct {
	o        EpilogOptions
	log      hclog.Logger
	r        *EpilogReport
	clusters map[string]bool
	bases    []base
}

func (e *epilog) problem(format string, args ...any) {
	e.r.Problems = append(e.r.Problems, fmt.Sprintf(format, args...))
}

// Epilog removes what the Slurm job left of shoal on this node, without touching other jobs or
// other users: the job's processes (SIGKILL), its clusters' object stores under /dev/shm, session
// directories, rendezvous files and empty confinement cgroups. It is for Slurm's Epilog (or the
// SPANK plugin's job epilog), which runs as root after the job's processes were signalled; it
// never fails the node for a leftover it cannot remove, it reports it.
func Epilog(log hclog.Logger, o EpilogOptions) *EpilogReport {
	if o.ProcRoot == "" {
		o.ProcRoot = "/proc"
	}
	if o.ShmRoot == "" {
		o.ShmRoot = "/dev/shm"
	}
	if len(o.TmpRoots) == 0 {
		o.TmpRoots = []string{os.TempDir()}
	}
	e := &epilog{o: o, log: log, r: &EpilogReport{Job: o.Job}, clusters: map[string]bool{}}
	defer e.close()
	if !jobRe.MatchString(o.Job) {
		e.problem("job id %q is not a Slurm job id (decimal digits): nothing done", o.Job)
		return e.r
	}
	if o.UID < 0 {
		e.problem("no job uid (--uid, SLURM_JOB_UID): only the job's cgroup is killed; no record is believed, no process is chosen by its environment and no file is removed")
	}
	// 1. clusters recorded in the job user's session directories
	if o.UID >= 0 {
		e.readRecords()
	}
	// 2. the job's processes
	e.killProcesses()
	// 3. their files
	if o.UID >= 0 {
		e.removeFiles()
	}
	// 4. confinement cgroups whose agent is gone
	if o.CgroupV2 != "" {
		sweepCgroups(o.CgroupV2, o.ProcRoot, e.r, 4)
	}
	for id := range e.clusters {
		e.r.Clusters = append(e.r.Clusters, id)
	}
	sort.Strings(e.r.Clusters)
	log.Debug("epilog done", "job", o.Job, "uid", o.UID, "clusters", len(e.r.Clusters), "cgroups", len(e.r.Cgroups),
		"killed", len(e.r.Killed), "removed", len(e.r.Removed), "problems", len(e.r.Problems))
	return e.r
}

func (e *epilog) close() {
	for _, b := range e.bases {
		unix.Close(b.fd)
		unix.Close(b.rootfd)
	}
}

// readRecords opens each <root>/shoal-<uid> that is the user's own and believes the records of
// the job in it.
func (e *epilog) readRecords() {
	name := "shoal-" + strconv.Itoa(e.o.UID)
	for _, root := range e.o.TmpRoots {
		rootfd, err := openDir(root)
		if err != nil {
			if !errors.Is(err, unix.ENOENT) {
				e.problem("open %s: %v", root, err)
			}
			continue
		}
		fd, err := openOwnedDir(rootfd, name, e.o.UID, 0o700)
		if err != nil {
			unix.Close(rootfd)
			if !errors.Is(err, unix.ENOENT) {
				e.problem("%s: %v: its records are not believed and nothing in it is removed", filepath.Join(root, name), err)
			}
			continue
		}
		e.bases = append(e.bases, base{root: root, rootfd: rootfd, fd: fd})
		names, err := readNames(fd)
		if err != nil {
			e.problem("list %s: %v", filepath.Join(root, name), err)
		}
		for _, n := range names {
			e.readSession(filepath.Join(root, name), fd, n)
		}
	}
}

func (e *epilog) readSession(basePath string, basefd int, name string) {
	id, ok := sessionID(name)
	if !ok {
		e.log.Debug("not a session directory", "path", filepath.Join(basePath, name))
		return
	}
	path := filepath.Join(basePath, name)
	fd, err := openOwnedDir(basefd, name, e.o.UID, -1)
	if err != nil {
		if !errors.Is(err, unix.ENOENT) {
			e.problem("%s: %v: ignored", path, err)
		}
		return
	}
	defer unix.Close(fd)
	for _, rec := range []string{"cluster.json", "member.json"} {
		b, err := readFileAt(fd, rec, e.o.UID, maxRecord)
		if err != nil {
			if !errors.Is(err, unix.ENOENT) {
				e.problem("%s: %v: ignored", filepath.Join(path, rec), err)
			}
			continue
		}
		r, err := ParseRecord(bytes.NewReader(b))
		if err != nil {
			e.problem("%s: %v: ignored", filepath.Join(path, rec), err)
			continue
		}
		if r.SlurmJob != e.o.Job {
			continue
		}
		if r.ID != id {
			e.problem("%s: id %s is not its directory's (%s): ignored", filepath.Join(path, rec), r.ID, name)
			continue
		}
		e.clusters[id] = true
	}
}

// proc is a process as examined.
type proc struct {
	pid   int
	start uint64
}

func (e *epilog) ancestors() map[int]bool {
	a := map[int]bool{}
	for p := os.Getpid(); p > 1; {
		a[p] = true
		st, err := readProcStat(e.o.ProcRoot, p)
		if err != nil || st.PPID == p {
			break
		}
		p = st.PPID
	}
	return a
}

func readProcStat(root string, pid int) (procStat, error) {
	f, err := os.Open(filepath.Join(root, strconv.Itoa(pid), "stat"))
	if err != nil {
		return procStat{}, err
	}
	defer f.Close()
	return parseStat(f)
}

func readProcUID(root string, pid int) (int, error) {
	f, err := os.Open(filepath.Join(root, strconv.Itoa(pid), "status"))
	if err != nil {
		return -1, err
	}
	defer f.Close()
	return parseRealUID(f)
}

func readProcEnv(root string, pid int) (map[string]string, error) {
	f, err := os.Open(filepath.Join(root, strconv.Itoa(pid), "environ"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ParseEnviron(f)
}

// learn takes the cluster id from the environment of one of the job's processes.
func (e *epilog) learn(pid int, env map[string]string) {
	cid, ok := env["SHOAL_CLUSTER_ID"]
	if !ok || env["SLURM_JOB_ID"] != e.o.Job {
		return
	}
	if !ValidClusterID(cid) {
		e.problem("process %d: SHOAL_CLUSTER_ID=%q is not a cluster id: ignored", pid, cid)
		return
	}
	e.clusters[cid] = true
}

func (e *epilog) killProcesses() {
	mounts := e.o.CgroupMounts
	if mounts == nil {
		if f, err := os.Open("/proc/self/mountinfo"); err == nil {
			mounts, _ = ParseCgroupMounts(f)
			f.Close()
		}
	}
	e.r.Cgroups = FindJobCgroups(mounts, e.o.Job, e.o.UID)
	anc := e.ancestors()
	k := &killer{}
	if len(e.r.Cgroups) > 0 {
		e.killCgroups(anc, k)
	} else if e.o.UID >= 0 {
		e.killByEnvironment(anc, k)
	}
	k.wait(2 * time.Second) // let the kernel tear them down before their files are removed
}

// killCgroups kills the job user's processes in the job's cgroups: with cgroup.kill where it
// exists, the epilog itself is not inside and every process in the cgroup is the user's, else one
// by one through pidfds, each checked to be still in the job's cgroup and of the user. A process
// of another uid in the job's cgroup (slurmstepd, under cgroup v2) is Slurm's and is left; with no
// job uid known, the user's are those not of root.
func (e *epilog) killCgroups(anc map[int]bool, k *killer) {
	inside := false
	for a := range anc {
		if b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(a), "cgroup")); err == nil && inJobCgroup(b, e.o.Job) {
			inside = true
		}
	}
	theirs := func(uid int) bool {
		if e.o.UID >= 0 {
			return uid == e.o.UID
		}
		return uid != 0
	}
	job := e.o.Job
	for _, cg := range e.r.Cgroups {
		pids := cgroupProcs(cg)
		all := len(pids) > 0
		for _, pid := range pids {
			u, err := readProcUID("/proc", pid)
			if err != nil || !theirs(u) {
				all = false
				continue
			}
			if env, err := readProcEnv("/proc", pid); err == nil {
				e.learn(pid, env)
			}
		}
		if !inside && all {
			err := killCgroup(cg)
			if err == nil {
				waitCgroupEmpty(cg, 2*time.Second)
				continue
			}
			if !errors.Is(err, errNoCgroupKill) {
				e.problem("%s: write cgroup.kill: %v; killing its processes one by one", cg, err)
			}
		}
		for _, pid := range pids {
			if anc[pid] {
				continue
			}
			st, err := readProcStat("/proc", pid)
			if err != nil || st.State == 'Z' {
				continue
			}
			err = k.kill(pid, st.Start, e.o.UID, func(pid int) bool {
				u, err := readProcUID("/proc", pid)
				if err != nil || !theirs(u) {
					return false
				}
				b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cgroup"))
				return err == nil && inJobCgroup(b, job)
			})
			if err == nil {
				e.r.Killed = append(e.r.Killed, pid)
			} else if !errors.Is(err, errNotSame) && !errors.Is(err, unix.ESRCH) {
				e.problem("kill %d: %v", pid, err)
			}
		}
	}
}

func waitCgroupEmpty(dir string, d time.Duration) {
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		b, err := os.ReadFile(filepath.Join(dir, "cgroup.events"))
		if err != nil || bytes.Contains(b, []byte("populated 0")) {
			return
		}
	}
}

// killByEnvironment is for nodes where Slurm keeps no job cgroup (proctrack/linuxproc): the
// job's processes are those of the job's real uid whose environment names the job
// (SLURM_JOB_ID) and shoal, or one of the job's clusters.
func (e *epilog) killByEnvironment(anc map[int]bool, k *killer) {
	type cand struct {
		proc
		env   map[string]string
		shoal bool
	}
	var cands []cand
	ents, _ := os.ReadDir(e.o.ProcRoot)
	for _, ent := range ents {
		pid, err := strconv.Atoi(ent.Name())
		if err != nil || pid <= 0 || anc[pid] {
			continue
		}
		st, err := readProcStat(e.o.ProcRoot, pid)
		if err != nil || st.State == 'Z' {
			continue
		}
		if u, err := readProcUID(e.o.ProcRoot, pid); err != nil || u != e.o.UID {
			continue
		}
		env, err := readProcEnv(e.o.ProcRoot, pid)
		if env == nil {
			// gone, a kernel thread (ESRCH), or a process the kernel hides even from root
			e.log.Debug("environment not read", "pid", pid, "error", err)
			continue
		}
		cmd, _ := os.ReadFile(filepath.Join(e.o.ProcRoot, ent.Name(), "cmdline"))
		shoal := env["SHOAL_CLUSTER_ID"] != "" || env["SHOAL_WORKER_ID"] != "" || isClusterCommand(cmd)
		cands = append(cands, cand{proc{pid, st.Start}, env, shoal})
		if shoal {
			e.learn(pid, env)
		}
	}
	for _, c := range cands {
		ofJob := c.env["SLURM_JOB_ID"] == e.o.Job && c.shoal
		cid := c.env["SHOAL_CLUSTER_ID"]
		if !ofJob && !(ValidClusterID(cid) && e.clusters[cid]) {
			continue
		}
		err := k.kill(c.pid, c.start, e.o.UID, nil)
		switch {
		case err == nil:
			e.r.Killed = append(e.r.Killed, c.pid)
		case errors.Is(err, errNotSame), errors.Is(err, unix.ESRCH):
		default:
			e.problem("kill %d: %v", c.pid, err)
		}
	}
}

// userAlive reports whether the job's user still has a live process on the node (another job,
// a login) after the kill.
func (e *epilog) userAlive() bool {
	ents, _ := os.ReadDir(e.o.ProcRoot)
	for _, ent := range ents {
		pid, err := strconv.Atoi(ent.Name())
		if err != nil {
			continue
		}
		if st, err := readProcStat(e.o.ProcRoot, pid); err != nil || st.State == 'Z' {
			continue
		}
		if u, err := readProcUID(e.o.ProcRoot, pid); err == nil && u == e.o.UID {
			return true
		}
	}
	return false
}

func (e *epilog) removed(path string, err error) {
	switch {
	case err == nil:
		e.r.Removed = append(e.r.Removed, path)
	case errors.Is(err, unix.ENOENT):
	default:
		e.problem("remove %s: %v", path, err)
	}
}

func (e *epilog) removeFiles() {
	// object stores: /dev/shm/shoal-<id>, and members' shoal-<id>-<node>
	if len(e.clusters) > 0 {
		if fd, err := openDir(e.o.ShmRoot); err == nil {
			names, _ := readNames(fd)
			for _, n := range names {
				rest, ok := strings.CutPrefix(n, "shoal-")
				if id, valid := sessionID(rest); ok && valid && e.clusters[id] {
					e.removed(filepath.Join(e.o.ShmRoot, n), removeAt(fd, n, e.o.UID))
				}
			}
			unix.Close(fd)
		} else if !errors.Is(err, unix.ENOENT) {
			e.problem("open %s: %v", e.o.ShmRoot, err)
		}
	}
	// session directories: <id>, and members' <id>-<node>
	for _, b := range e.bases {
		bpath := filepath.Join(b.root, "shoal-"+strconv.Itoa(e.o.UID))
		names, _ := readNames(b.fd)
		for _, n := range names {
			if id, ok := sessionID(n); ok && e.clusters[id] {
				e.removed(filepath.Join(bpath, n), removeAt(b.fd, n, e.o.UID))
			}
		}
		// The per-user base goes only when it is empty and the user has no process left here
		// that could be about to make a session in it; rmdir fails on one made meanwhile.
		if isEmptyDir(b.fd) && !e.userAlive() {
			if err := unix.Unlinkat(b.rootfd, "shoal-"+strconv.Itoa(e.o.UID), unix.AT_REMOVEDIR); err == nil {
				e.r.Removed = append(e.r.Removed, bpath)
			}
		}
	}
	e.removeRendezvous()
}

// removeRendezvous removes the job's rendezvous files (<job>.<step>.json) from the user's
// $HOME/.shoal/launch (each directory on the way owned by the user, none a symlink) and from
// the admin's rendezvous directories (only files the user owns).
func (e *epilog) removeRendezvous() {
	prefix := e.o.Job + "."
	sweep := func(dir string, fd int) {
		names, _ := readNames(fd)
		for _, n := range names {
			if strings.HasPrefix(n, prefix) {
				e.removed(filepath.Join(dir, n), removeAt(fd, n, e.o.UID))
			}
		}
	}
	home := e.o.HomeDir
	if home == "" {
		if u, err := user.LookupId(strconv.Itoa(e.o.UID)); err == nil {
			home = u.HomeDir
		}
	}
	if home != "" {
		if hfd, err := openDir(home); err == nil {
			var st unix.Stat_t
			if unix.Fstat(hfd, &st) == nil && int(st.Uid) == e.o.UID {
				if sfd, err := openOwnedDir(hfd, ".shoal", e.o.UID, -1); err == nil {
					if lfd, err := openOwnedDir(sfd, "launch", e.o.UID, -1); err == nil {
						sweep(filepath.Join(home, ".shoal", "launch"), lfd)
						unix.Close(lfd)
					} else if !errors.Is(err, unix.ENOENT) {
						e.problem("%s: %v: left alone", filepath.Join(home, ".shoal", "launch"), err)
					}
					unix.Close(sfd)
				} else if !errors.Is(err, unix.ENOENT) {
					e.problem("%s: %v: left alone", filepath.Join(home, ".shoal"), err)
				}
			}
			unix.Close(hfd)
		}
	}
	for _, d := range e.o.RendezvousDirs {
		if fd, err := openDir(d); err == nil {
			sweep(d, fd)
			unix.Close(fd)
		} else if !errors.Is(err, unix.ENOENT) {
			e.problem("open %s: %v", d, err)
		}
	}
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
