package privdir

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"
)

// Session directories live in a per-user base, <root>/shoal-<uid>, that is made once and never
// removed (removing it when empty let another user make it again). Each live cluster (and each
// member agent's store) holds an exclusive flock on the file "lock" in its session directory
// for as long as it runs; the kernel drops the lock when the process dies, however it dies. So
// a session whose lock can be taken is dead, whatever pid numbers say, and the next start
// removes it with the paths it noted (its /dev/shm store, its spill directory).
//
//	NewSession: flock base/.lock ─> sweep dead sessions ─> mkdir <name> ─> create+flock lock
//	            ─> unlock base/.lock            (a session is never seen half made)
//	Note:       leftover-N records a path outside the session to remove if it dies
//	Close:      remove the session directory ─> close the lock

// BaseHint is the advice in errors about the per-user base directory.
const BaseHint = "remove it (or ask an admin to), or set SHOAL_TMPDIR (--tmpdir) to a directory of your own"

// sessionName is a cluster id (12 lowercase hex digits), optionally followed by -<node>.
var sessionName = regexp.MustCompile(`^[0-9a-f]{12}(-[A-Za-z0-9][A-Za-z0-9._-]{0,254})?$`)

// ValidSessionName reports whether name is a session directory's name: a cluster id of 12
// lowercase hex digits, optionally followed by -<node name>.
func ValidSessionName(name string) bool { return sessionName.MatchString(name) }

// BasePath returns <root>/shoal-<uid>.
func BasePath(root string) string {
	return filepath.Join(root, "shoal-"+strconv.Itoa(os.Geteuid()))
}

// Base makes (unless it exists) and opens the per-user base directory under root, which must
// exist.
func Base(root string) (*Dir, error) {
	return Make(BasePath(root), BaseHint)
}

// Session is a live session directory: the process holds its lock until Close.
type Session struct {
	*Dir
	Name string
	base *Dir
	lock *os.File
}

const (
	lockName     = "lock"
	baseLockName = ".lock"
	leftoverPref = "leftover-"
)

// NewSession sweeps the dead sessions out of base and makes the session directory name in it,
// which must not exist, holding its lock. The session takes base over: Close closes it. Only
// sessions named as ValidSessionName says are ever swept. Sweep failures are logged, not
// returned.
func NewSession(log hclog.Logger, base *Dir, name string) (*Session, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	bl, err := lockBase(base)
	if err != nil {
		base.Close()
		return nil, err
	}
	defer bl.Close() // closing drops the flock
	Sweep(log, base)
	d, err := base.Create(name)
	if err != nil {
		base.Close()
		return nil, err
	}
	s := &Session{Dir: d, Name: name, base: base}
	if s.lock, err = d.CreateFile(lockName); err == nil {
		if err = unix.Flock(int(s.lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err == nil {
			host, _ := os.Hostname()
			_, err = s.lock.WriteString(host + "\n")
		}
	}
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("lock session directory %s: %w", d.Path(), err)
	}
	return s, nil
}

func lockBase(base *Dir) (*os.File, error) {
	fd, err := unix.Openat(base.fd(), baseLockName, unix.O_RDWR|unix.O_CREAT|unix.O_NOFOLLOW|unix.O_CLOEXEC, FileMode)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", base.Join(baseLockName), err)
	}
	f := os.NewFile(uintptr(fd), base.Join(baseLockName))
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG || int(st.Uid) != os.Geteuid() {
		f.Close()
		return nil, fmt.Errorf("%s is not a regular file of yours; remove it", f.Name())
	}
	if err := unix.Flock(fd, unix.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", f.Name(), err)
	}
	return f, nil
}

// Note records path, a directory outside the session, so that a sweep removes it should this
// process die before Close. Call it before making the directory. Only an absolute path named
// shoal-<session name> is noted: a sweep removes nothing else.
func (s *Session) Note(path string) error {
	if filepath.Base(path) != "shoal-"+s.Name || !filepath.IsAbs(path) {
		return nil
	}
	for i := 0; ; i++ {
		err := s.WriteFile(leftoverPref+strconv.Itoa(i), []byte(filepath.Clean(path)))
		if !errors.Is(err, fs.ErrExist) {
			return err
		}
	}
}

// Close removes the session directory and then releases its lock.
func (s *Session) Close() error {
	if s == nil || s.Dir == nil {
		return nil
	}
	// the records (cluster.json, member.json) and the lock go last: a process killed while it
	// removes its session (Slurm's SIGKILL after KillWait) leaves what the epilog needs to
	// find and remove the rest
	if names, err := s.Dir.Names(); err == nil {
		for _, n := range names {
			if n != lockName && !strings.HasSuffix(n, ".json") {
				s.Dir.RemoveAll(n)
			}
		}
	}
	err := s.base.RemoveAll(s.Name)
	s.Dir.Close()
	if s.lock != nil {
		s.lock.Close()
	}
	s.base.Close()
	return err
}

// Live reports whether the session directory d belongs to a running process: its lock is
// held. A session without a lock file (being made, or left by a shoal that had none) is not live;
// Sweep leaves it alone all the same.
func Live(d *Dir) bool {
	f, err := d.OpenFile(lockName)
	if err != nil {
		return false
	}
	defer f.Close()
	return unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB) != nil
}

// Sweep removes from base every session directory whose lock it can take (its process is
// gone), with the paths it noted. It leaves alone what is not a session of this user on this
// host: names that are not session names, directories that are not private, sessions with no
// lock file or one naming another host (a SHOAL_TMPDIR shared between nodes). It logs what it
// removes and returns how many sessions it removed.
func Sweep(log hclog.Logger, base *Dir) int {
	ns, err := base.Names()
	if err != nil {
		log.Warn("list session directories to remove dead ones", "dir", base.Path(), "error", err)
		return 0
	}
	host, _ := os.Hostname()
	n := 0
	for _, name := range ns {
		if !ValidSessionName(name) {
			continue
		}
		if sweepOne(log, base, name, host) {
			n++
		}
	}
	return n
}

func sweepOne(log hclog.Logger, base *Dir, name, host string) bool {
	d, err := base.Open(name)
	if err != nil {
		log.Debug("not a session directory of yours; left alone", "dir", base.Join(name), "error", err)
		return false
	}
	defer d.Close()
	lock, err := d.OpenFile(lockName)
	if err != nil {
		return false
	}
	defer lock.Close()
	if unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB) != nil {
		return false // live
	}
	b := make([]byte, 256)
	k, _ := lock.Read(b)
	if h := strings.TrimSpace(string(b[:k])); h != "" && h != host {
		return false // another host's, on a shared file system: its lock says nothing here
	}
	ns, _ := d.Names()
	var removed []string
	for _, n := range ns {
		if !strings.HasPrefix(n, leftoverPref) {
			continue
		}
		p, err := d.ReadFile(n)
		if err != nil {
			continue
		}
		if err := removeNoted(string(p), name); err != nil {
			log.Warn("remove what a dead cluster left", "path", string(p), "error", err)
		} else {
			removed = append(removed, string(p))
		}
	}
	if err := base.RemoveAll(name); err != nil {
		log.Warn("remove a dead cluster's session directory", "dir", d.Path(), "error", err)
		return false
	}
	log.Info("removed what a killed cluster left", "session_dir", d.Path(), "also", strings.Join(removed, ","))
	return true
}

// notedPathOK says whether p, read from a leftover-N file of session name, is a path the
// session could have noted: absolute, clean, named shoal-<name>, with name a session name.
func notedPathOK(p, name string) bool {
	return ValidSessionName(name) && filepath.IsAbs(p) && filepath.Clean(p) == p && filepath.Base(p) == "shoal-"+name
}

// removeNoted removes p, noted by session name: only an absolute, clean path named
// shoal-<name> that is a directory of the user's own (never a link).
func removeNoted(p, name string) error {
	if !notedPathOK(p, name) {
		return fmt.Errorf("%q is not a path this session could have made; left alone", p)
	}
	parent, err := os.Open(filepath.Dir(p))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer parent.Close()
	pd := &Dir{f: parent, path: filepath.Dir(p), uid: os.Geteuid()}
	d, err := open(int(parent.Fd()), filepath.Base(p), p, "", false, os.Geteuid())
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		var np *NotPrivateError
		if !errors.As(err, &np) || np.UID != os.Geteuid() || np.What != "a directory" {
			return err
		}
	} else {
		d.Close()
	}
	return pd.RemoveAll(filepath.Base(p))
}
