package launcher

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// The epilog's system calls. It runs as root on paths other users can write, so nothing here
// follows a symlink or acts on a path twice: directories are opened with O_NOFOLLOW and checked
// on the open descriptor, and entries are removed relative to it (unlinkat); processes are
// signalled through a pidfd opened and then checked to be the process examined.

// errNotTheirs is returned for a file or directory that the job's user does not own, or that is
// a symlink where a directory must be.
var errNotTheirs = errors.New("not owned by the job's user")

const dirFlags = unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC

// openOwnedDir opens name under the directory dirfd without following a symlink and checks that
// the job's user (uid) owns it and, when mode >= 0, that its permission bits are exactly mode.
// It returns the descriptor (the caller closes it).
func openOwnedDir(dirfd int, name string, uid int, mode int) (int, error) {
	fd, err := unix.Openat(dirfd, name, dirFlags, 0)
	if err != nil {
		if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
			return -1, fmt.Errorf("%s is a symlink or not a directory: %w", name, errNotTheirs)
		}
		return -1, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return -1, err
	}
	if int(st.Uid) != uid {
		unix.Close(fd)
		return -1, fmt.Errorf("%s is owned by uid %d, not the job's uid %d: %w", name, st.Uid, uid, errNotTheirs)
	}
	if mode >= 0 && int(st.Mode&0o7777) != mode {
		unix.Close(fd)
		return -1, fmt.Errorf("%s has mode %#o, not %#o: %w", name, st.Mode&0o7777, mode, errNotTheirs)
	}
	return fd, nil
}

// openDir opens a directory the admin named (a temp root, /dev/shm): symlinks in the admin's
// path are the admin's choice and are followed.
func openDir(path string) (int, error) {
	return unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
}

// readNames lists a directory through a duplicate of its descriptor.
func readNames(dirfd int) ([]string, error) {
	dup, err := unix.Dup(dirfd)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(dup), "dir")
	defer f.Close()
	if _, err := unix.Seek(dup, 0, 0); err != nil {
		return nil, err
	}
	return f.Readdirnames(-1)
}

// readFileAt reads a regular file under dirfd (no symlink) that uid owns, at most max bytes.
func readFileAt(dirfd int, name string, uid int, max int64) ([]byte, error) {
	// not even opened unless it is a regular file now: opening a FIFO or a device can block or
	// act; the check on the open descriptor below catches a swap in between
	var pre unix.Stat_t
	if err := unix.Fstatat(dirfd, name, &pre, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return nil, err
	}
	if pre.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, fmt.Errorf("%s is not a regular file: %w", name, errNotTheirs)
	}
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, fmt.Errorf("%s is not a regular file: %w", name, errNotTheirs)
	}
	if int(st.Uid) != uid {
		return nil, fmt.Errorf("%s is owned by uid %d, not the job's uid %d: %w", name, st.Uid, uid, errNotTheirs)
	}
	b := make([]byte, max+1)
	n, err := readFull(f, b)
	if err != nil {
		return nil, err
	}
	return b[:n], nil
}

func readFull(f *os.File, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := f.Read(b[n:])
		n += m
		if err != nil {
			if n > 0 || m == 0 {
				return n, nil
			}
			return n, err
		}
	}
	return n, nil
}

const removeDepth = 32 // shoal's trees are 3 deep; a deeper one is left and reported

// removeAt removes name under dirfd and, when it is a directory, everything in it, as the job's
// user could: the top entry must be owned by uid, and a directory is entered only when uid owns
// it (the user could not have emptied another user's directory). A symlink is removed, never
// followed. It returns the first error; what it could remove is removed.
func removeAt(dirfd int, name string, uid int) error {
	var st unix.Stat_t
	if err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return err
	}
	if int(st.Uid) != uid {
		return fmt.Errorf("owned by uid %d, not the job's uid %d: %w", st.Uid, uid, errNotTheirs)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return unix.Unlinkat(dirfd, name, 0)
	}
	return removeTreeAt(dirfd, name, uid, removeDepth)
}

func removeTreeAt(dirfd int, name string, uid, depth int) error {
	if depth == 0 {
		return fmt.Errorf("%s: deeper than %d directories, left alone", name, removeDepth)
	}
	fd, err := openOwnedDir(dirfd, name, uid, -1)
	if err != nil {
		return err
	}
	names, err := readNames(fd)
	var first error
	if err != nil {
		first = err
	}
	for _, n := range names {
		err := unix.Unlinkat(fd, n, 0)
		if errors.Is(err, unix.EISDIR) || errors.Is(err, unix.EPERM) {
			err = removeTreeAt(fd, n, uid, depth-1)
		}
		if err != nil && !errors.Is(err, unix.ENOENT) && first == nil {
			first = fmt.Errorf("%s/%s: %w", name, n, err)
		}
	}
	unix.Close(fd)
	if err := unix.Unlinkat(dirfd, name, unix.AT_REMOVEDIR); err != nil && first == nil {
		first = err
	}
	return first
}

// isEmptyDir reports whether the directory open at fd has no entries.
func isEmptyDir(fd int) bool {
	names, err := readNames(fd)
	return err == nil && len(names) == 0
}

// killer signals processes through pidfds and waits for them to go.
type killer struct {
	fds []int
}

// errNotSame: the pid now names another process than the one examined (it was recycled).
var errNotSame = errors.New("the pid now names another process")

var errNoCgroupKill = errors.New("no cgroup.kill")

// kill sends SIGKILL to pid through a pidfd, after checking, with the pidfd already open (so
// the pid cannot be reused while the check runs), that the process is still the one examined:
// same start time and, when uid >= 0, same real uid. same may add a check of its own.
func (k *killer) kill(pid int, start uint64, uid int, same func(pid int) bool) error {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return fmt.Errorf("pidfd_open %d: %w", pid, err)
	}
	// always the real /proc: the pidfd names a real process
	p := filepath.Join("/proc", strconv.Itoa(pid))
	ok := false
	if f, err := os.Open(filepath.Join(p, "stat")); err == nil {
		st, err := parseStat(f)
		f.Close()
		ok = err == nil && st.Start == start
	}
	if ok && uid >= 0 {
		ok = false
		if f, err := os.Open(filepath.Join(p, "status")); err == nil {
			u, err := parseRealUID(f)
			f.Close()
			ok = err == nil && u == uid
		}
	}
	if ok && same != nil {
		ok = same(pid)
	}
	if !ok {
		unix.Close(fd)
		return fmt.Errorf("pid %d: %w", pid, errNotSame)
	}
	if err := unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0); err != nil {
		unix.Close(fd)
		return fmt.Errorf("pidfd_send_signal %d: %w", pid, err)
	}
	k.fds = append(k.fds, fd)
	return nil
}

// wait waits until every killed process has exited (a pidfd polls readable then), at most d.
func (k *killer) wait(d time.Duration) {
	deadline := time.Now().Add(d)
	for _, fd := range k.fds {
		for {
			left := time.Until(deadline)
			if left <= 0 {
				break
			}
			pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
			n, err := unix.Poll(pfd, int(left/time.Millisecond)+1)
			if err == nil && n > 0 || err != nil && !errors.Is(err, unix.EINTR) {
				break
			}
		}
		unix.Close(fd)
	}
	k.fds = nil
}

// killCgroup writes cgroup.kill (cgroup v2, Linux 5.14+), which SIGKILLs every process in the
// cgroup and its descendants atomically, with no pid involved. errNoCgroupKill where the file
// is missing (cgroup v1, older kernels).
func killCgroup(dir string) error {
	f, err := os.OpenFile(filepath.Join(dir, "cgroup.kill"), os.O_WRONLY, 0)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return errNoCgroupKill
		}
		return err
	}
	defer f.Close()
	_, err = f.WriteString("1")
	return err
}
