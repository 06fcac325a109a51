// Package privdir makes and opens directories that no other user on the node can squat, read or
// swap, and creates files in them that no other user can have planted.
//
// A directory is private when it is a directory (not a symbolic link), owned by the effective
// user, with mode exactly 0700. Make, Create and Open get there the same way: Mkdir (never
// MkdirAll: parents are the caller's business), then open with O_DIRECTORY|O_NOFOLLOW and check
// the open descriptor with fstat, so what is checked is what is used. A directory of the user's
// own with a looser or tighter mode is set to 0700 with fchmod on that descriptor and checked
// again; anything else (another owner, a link, a file) is refused with a *NotPrivateError that
// names the path, its owner and mode, and what to do. Nothing is ever chmod-ed or written that
// belongs to someone else.
//
// Files and subdirectories are made relative to the directory's descriptor (mkdirat, openat with
// O_CREAT|O_EXCL|O_NOFOLLOW, renameat, unlinkat), so a link planted under a name is never
// followed and a name that exists already is an error, not a file to reuse.
//
// A Dir is safe for concurrent use; its methods do not change its state, except Close.
package privdir

import (
	"cmp"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Mode is the permission every private directory has.
const Mode = 0o700

// FileMode is the permission of every file this package creates.
const FileMode = 0o600

// ErrNotPrivate is wrapped by every *NotPrivateError.
var ErrNotPrivate = errors.New("not a private directory")

// NotPrivateError says why a path is not a private directory of the current user.
type NotPrivateError struct {
	Path    string
	What    string // "a directory", "a symbolic link to X", "a regular file", ...
	UID     int    // owner; -1 when unknown
	Mode    fs.FileMode
	Problem string // what is wrong with it, in words
	Hint    string // what to do
}

func (e *NotPrivateError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "refusing to use %s: it is %s", e.Path, e.What)
	if e.UID >= 0 {
		fmt.Fprintf(&b, " owned by %s", describeUID(e.UID))
		if !strings.HasPrefix(e.What, "a symbolic link") {
			fmt.Fprintf(&b, " with mode %04o", unixMode(e.Mode))
		}
	}
	fmt.Fprintf(&b, "; %s, so that no other user can read or replace what shoal keeps there", e.Problem)
	if e.Hint != "" {
		b.WriteString(": ")
		b.WriteString(e.Hint)
	}
	return b.String()
}

func (e *NotPrivateError) Unwrap() error { return ErrNotPrivate }

func describeUID(uid int) string {
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		return fmt.Sprintf("%s (uid %d)", u.Username, uid)
	}
	return fmt.Sprintf("uid %d", uid)
}

func wanted(uid int) string {
	if uid == os.Geteuid() {
		return "shoal needs a directory owned by you, " + describeUID(uid) + ", with mode 0700"
	}
	return "shoal needs a directory owned by " + describeUID(uid) + " with mode 0700"
}

// Dir is an open private directory.
type Dir struct {
	f    *os.File
	path string
	hint string
	uid  int // the owner it was checked against
}

// Make makes path (mode 0700) unless it exists, and opens it: a directory of the user's own is
// set to mode 0700; anything else is refused with a *NotPrivateError whose advice is hint. The
// parent must exist.
func Make(path, hint string) (*Dir, error) {
	if err := unix.Mkdir(path, Mode); err != nil && err != unix.EEXIST {
		return nil, fmt.Errorf("create directory %s: %w", path, err)
	}
	return open(unix.AT_FDCWD, path, path, hint, true, os.Geteuid())
}

// Create makes path (mode 0700) and opens it; a path that exists already is an error (a
// *NotPrivateError when it is not the user's, else one wrapping fs.ErrExist). The parent must
// exist.
func Create(path, hint string) (*Dir, error) {
	return create(unix.AT_FDCWD, path, path, hint)
}

// Open opens the private directory path without making it (an error wrapping fs.ErrNotExist
// when it is missing). A directory of the user's own is set to mode 0700.
func Open(path, hint string) (*Dir, error) {
	return open(unix.AT_FDCWD, path, path, hint, true, os.Geteuid())
}

// OpenOwnedBy opens path when it is a directory (not a link) owned by uid with mode 0700, and
// changes nothing; for root acting on a user's files (the epilog). Subdirectories and files
// opened through it are checked against uid too.
func OpenOwnedBy(path string, uid int, hint string) (*Dir, error) {
	return open(unix.AT_FDCWD, path, path, hint, false, uid)
}

func create(at int, name, path, hint string) (*Dir, error) {
	if err := unix.Mkdirat(at, name, Mode); err != nil {
		if err == unix.EEXIST {
			d, oerr := open(at, name, path, hint, false, os.Geteuid())
			if oerr != nil {
				return nil, oerr
			}
			d.Close()
			return nil, fmt.Errorf("create directory %s: %w (left by an earlier run? remove it)", path, fs.ErrExist)
		}
		return nil, fmt.Errorf("create directory %s: %w", path, err)
	}
	return open(at, name, path, hint, true, os.Geteuid())
}

// open opens name relative to at without following a link and checks it against owner uid;
// fix: set a directory of the process's own to 0700.
func open(at int, name, path, hint string, fix bool, uid int) (*Dir, error) {
	fd, err := unix.Openat(at, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		if err == unix.ELOOP || err == unix.ENOTDIR {
			return nil, describe(at, name, path, hint, uid)
		}
		if err == unix.ENOENT {
			return nil, fmt.Errorf("open directory %s: %w", path, fs.ErrNotExist)
		}
		return nil, fmt.Errorf("open directory %s: %w", path, err)
	}
	d := &Dir{f: os.NewFile(uintptr(fd), path), path: path, hint: hint, uid: uid}
	if err := d.check(fix && uid == os.Geteuid()); err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

func (d *Dir) check(fix bool) error {
	var st unix.Stat_t
	if err := unix.Fstat(int(d.f.Fd()), &st); err != nil {
		return fmt.Errorf("stat %s: %w", d.path, err)
	}
	mode := fileMode(st.Mode)
	if int(st.Uid) != d.uid {
		return &NotPrivateError{Path: d.path, What: "a directory", UID: int(st.Uid), Mode: mode,
			Problem: wanted(d.uid), Hint: d.hint}
	}
	if st.Mode&07777 == Mode {
		return nil
	}
	if !fix {
		return &NotPrivateError{Path: d.path, What: "a directory", UID: int(st.Uid), Mode: mode,
			Problem: wanted(d.uid), Hint: "run chmod 0700 " + d.path}
	}
	if err := unix.Fchmod(int(d.f.Fd()), Mode); err != nil {
		return fmt.Errorf("set mode 0700 on %s (yours, mode %04o): %w", d.path, st.Mode&07777, err)
	}
	if err := unix.Fstat(int(d.f.Fd()), &st); err != nil {
		return fmt.Errorf("stat %s: %w", d.path, err)
	}
	if st.Mode&07777 != Mode || int(st.Uid) != d.uid {
		return &NotPrivateError{Path: d.path, What: "a directory", UID: int(st.Uid), Mode: fileMode(st.Mode),
			Problem: wanted(d.uid) + " (chmod did not take)", Hint: d.hint}
	}
	return nil
}

// describe makes the error for a name that is not a directory (a link, a file).
func describe(at int, name, path, hint string, uid int) error {
	var st unix.Stat_t
	if err := unix.Fstatat(at, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("stat %s: %w", path, err)
	}
	what := "not a directory"
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFLNK:
		what = "a symbolic link"
		buf := make([]byte, 4096)
		if n, err := unix.Readlinkat(at, name, buf); err == nil {
			what += " to " + strconv.Quote(string(buf[:n]))
		}
	case unix.S_IFREG:
		what = "a regular file"
	}
	return &NotPrivateError{Path: path, What: what, UID: int(st.Uid), Mode: fileMode(st.Mode),
		Problem: wanted(uid) + ", not a link", Hint: hint}
}

func unixMode(m fs.FileMode) uint32 {
	u := uint32(m.Perm())
	if m&fs.ModeSetuid != 0 {
		u |= unix.S_ISUID
	}
	if m&fs.ModeSetgid != 0 {
		u |= unix.S_ISGID
	}
	if m&fs.ModeSticky != 0 {
		u |= unix.S_ISVTX
	}
	return u
}

func fileMode(m uint32) fs.FileMode {
	fm := fs.FileMode(m & 0o777)
	if m&unix.S_ISUID != 0 {
		fm |= fs.ModeSetuid
	}
	if m&unix.S_ISGID != 0 {
		fm |= fs.ModeSetgid
	}
	if m&unix.S_ISVTX != 0 {
		fm |= fs.ModeSticky
	}
	return fm
}

// Path returns the path the directory was opened at.
func (d *Dir) Path() string { return d.path }

// Join returns the path of name in the directory.
func (d *Dir) Join(name string) string { return filepath.Join(d.path, name) }

// Close closes the directory's descriptor.
func (d *Dir) Close() error {
	if d == nil || d.f == nil {
		return nil
	}
	return d.f.Close()
}

func (d *Dir) fd() int { return int(d.f.Fd()) }

func checkName(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsRune(name, '/') {
		return fmt.Errorf("[internal error] %q is not a single path element", name)
	}
	return nil
}

// Make makes the subdirectory name unless it exists, and opens it as a private directory.
func (d *Dir) Make(name string) (*Dir, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	if err := unix.Mkdirat(d.fd(), name, Mode); err != nil && err != unix.EEXIST {
		return nil, fmt.Errorf("create directory %s: %w", d.Join(name), err)
	}
	return open(d.fd(), name, d.Join(name), d.hint, true, d.uid)
}

// Create makes the subdirectory name, which must not exist, and opens it.
func (d *Dir) Create(name string) (*Dir, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	return create(d.fd(), name, d.Join(name), d.hint)
}

// Open opens the subdirectory name as a private directory without changing it: a mode other
// than 0700 is an error.
func (d *Dir) Open(name string) (*Dir, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	return open(d.fd(), name, d.Join(name), d.hint, false, d.uid)
}

// CreateFile creates the file name (mode 0600, read-write), which must not exist: a name taken
// by anything, a link included, is an error wrapping fs.ErrExist.
func (d *Dir) CreateFile(name string) (*os.File, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	fd, err := unix.Openat(d.fd(), name, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, FileMode)
	if err != nil {
		if err == unix.EEXIST {
			return nil, fmt.Errorf("create %s: %w", d.Join(name), fs.ErrExist)
		}
		return nil, fmt.Errorf("create %s: %w", d.Join(name), err)
	}
	return os.NewFile(uintptr(fd), d.Join(name)), nil
}

// WriteFile creates the file name (0600) with data; it must not exist.
func (d *Dir) WriteFile(name string, data []byte) error {
	f, err := d.CreateFile(name)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		unix.Unlinkat(d.fd(), name, 0)
		return fmt.Errorf("write %s: %w", d.Join(name), err)
	}
	return nil
}

// ReplaceFile writes data to a new file of a random name and renames it to name, so readers see
// the old contents or the new, never a part.
func (d *Dir) ReplaceFile(name string, data []byte) error {
	if err := checkName(name); err != nil {
		return err
	}
	var r [8]byte
	rand.Read(r[:])
	tmp := "." + name + ".tmp-" + hex.EncodeToString(r[:])
	if err := d.WriteFile(tmp, data); err != nil {
		return err
	}
	if err := unix.Renameat(d.fd(), tmp, d.fd(), name); err != nil {
		unix.Unlinkat(d.fd(), tmp, 0)
		return fmt.Errorf("rename %s to %s: %w", d.Join(tmp), d.Join(name), err)
	}
	return nil
}

// OpenFile opens the existing file name for reading without following a link; it must be a
// regular file owned by the user (else a *NotPrivateError).
func (d *Dir) OpenFile(name string) (*os.File, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	fd, err := unix.Openat(d.fd(), name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		if err == unix.ENOENT {
			return nil, fmt.Errorf("open %s: %w", d.Join(name), fs.ErrNotExist)
		}
		return nil, fmt.Errorf("open %s: %w", d.Join(name), err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("stat %s: %w", d.Join(name), err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG || int(st.Uid) != d.uid {
		unix.Close(fd)
		what := "a regular file"
		if st.Mode&unix.S_IFMT != unix.S_IFREG {
			what = "not a regular file"
		}
		return nil, &NotPrivateError{Path: d.Join(name), What: what, UID: int(st.Uid), Mode: fileMode(st.Mode),
			Problem: "shoal reads only regular files owned by " + describeUID(d.uid) + " here",
			Hint:    cmp.Or(d.hint, "remove it")}
	}
	return os.NewFile(uintptr(fd), d.Join(name)), nil
}

// ReadFile reads the file name (at most 16 MiB), opened as OpenFile does.
func (d *Dir) ReadFile(name string) ([]byte, error) {
	f, err := d.OpenFile(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxRead+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", d.Join(name), err)
	}
	if len(b) > maxRead {
		return nil, fmt.Errorf("read %s: larger than %d bytes", d.Join(name), maxRead)
	}
	return b, nil
}

const maxRead = 16 << 20

// Names lists the entries of the directory.
func (d *Dir) Names() ([]string, error) {
	return names(d.fd(), d.path)
}

// names lists the directory at (a fresh open of it, so the offset of at is not shared).
func names(at int, path string) ([]string, error) {
	fd, err := unix.Openat(at, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", path, err)
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	return f.Readdirnames(-1)
}

// Remove removes the file or empty directory name.
func (d *Dir) Remove(name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	err := unix.Unlinkat(d.fd(), name, 0)
	if err == unix.EISDIR {
		err = unix.Unlinkat(d.fd(), name, unix.AT_REMOVEDIR)
	}
	if err != nil && err != unix.ENOENT {
		return fmt.Errorf("remove %s: %w", d.Join(name), err)
	}
	return nil
}

// RemoveAll removes name and, when it is a directory, everything in it, never following a
// link; a name that does not exist is not an error.
func (d *Dir) RemoveAll(name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	return removeAt(d.fd(), name, d.Join(name), 0)
}

func removeAt(at int, name, path string, depth int) error {
	err := unix.Unlinkat(at, name, 0)
	if err == nil || err == unix.ENOENT {
		return nil
	}
	if err != unix.EISDIR && err != unix.EPERM {
		return fmt.Errorf("remove %s: %w", path, err)
	}
	if depth > 64 {
		return fmt.Errorf("remove %s: nested too deep", path)
	}
	fd, oerr := unix.Openat(at, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if oerr != nil {
		if oerr == unix.ENOENT {
			return nil
		}
		return fmt.Errorf("remove %s: %w", path, err)
	}
	defer unix.Close(fd)
	var errs []error
	for range 3 { // entries made meanwhile (by the user's own processes) get another pass
		ns, lerr := names(fd, path)
		if lerr != nil {
			return lerr
		}
		for _, n := range ns {
			if e := removeAt(fd, n, filepath.Join(path, n), depth+1); e != nil {
				errs = append(errs, e)
			}
		}
		if err := unix.Unlinkat(at, name, unix.AT_REMOVEDIR); err == nil || err == unix.ENOENT {
			return errors.Join(errs...)
		} else if err != unix.ENOTEMPTY {
			return errors.Join(append(errs, fmt.Errorf("remove %s: %w", path, err))...)
		}
	}
	return errors.Join(append(errs, fmt.Errorf("remove %s: %w", path, unix.ENOTEMPTY))...)
}
