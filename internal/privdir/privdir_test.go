package privdir

import (
	"errors"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"
)

// other is a real second user to chown to: the security tests' intruder when it exists, else
// nobody. It needs root; tests that use it skip without.
func other(t *testing.T) (string, int) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("chown to another user needs root")
	}
	for _, name := range []string{"shoalintruder", "nobody"} {
		if u, err := user.Lookup(name); err == nil {
			uid, _ := strconv.Atoi(u.Uid)
			return name, uid
		}
	}
	t.Skip("no second user (shoalintruder or nobody) to chown to")
	return "", 0
}

func mode(t *testing.T, p string) fs.FileMode {
	t.Helper()
	st, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	return st.Mode()
}

func TestMake(t *testing.T) {
	type setup func(t *testing.T, p string)
	mkdir := func(m os.FileMode) setup {
		return func(t *testing.T, p string) {
			if err := os.Mkdir(p, 0); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(p, m); err != nil {
				t.Fatal(err)
			}
		}
	}
	chownTo := func(s setup) setup {
		return func(t *testing.T, p string) {
			_, uid := other(t)
			s(t, p)
			if err := os.Lchown(p, uid, uid); err != nil {
				t.Fatal(err)
			}
		}
	}
	link := func(to func(t *testing.T, dir string) string) setup {
		return func(t *testing.T, p string) {
			if err := os.Symlink(to(t, filepath.Dir(p)), p); err != nil {
				t.Fatal(err)
			}
		}
	}
	ownDir := func(t *testing.T, dir string) string {
		d := filepath.Join(dir, "mine")
		os.Mkdir(d, 0o700)
		return d
	}
	othersDir := func(t *testing.T, dir string) string {
		_, uid := other(t)
		d := filepath.Join(dir, "theirs")
		os.Mkdir(d, 0o777)
		os.Chmod(d, 0o777)
		os.Chown(d, uid, uid)
		return d
	}
	cases := []struct {
		name    string
		setup   setup // nil: missing
		refused bool
		says    []string // in the error
	}{
		{name: "missing: made 0700"},
		{name: "ours 0700", setup: mkdir(0o700)},
		{name: "ours 0755: set to 0700", setup: mkdir(0o755)},
		{name: "ours 0777: set to 0700", setup: mkdir(0o777)},
		{name: "ours 0500: set to 0700", setup: mkdir(0o500)},
		{name: "ours 1777 sticky: set to 0700", setup: mkdir(0o777 | os.ModeSticky)},
		{name: "another user's, 0777", setup: chownTo(mkdir(0o777)), refused: true, says: []string{"owned by", "uid", "mode 0777", "hint"}},
		{name: "another user's, 0755", setup: chownTo(mkdir(0o755)), refused: true, says: []string{"owned by", "mode 0755"}},
		{name: "another user's, 0700", setup: chownTo(mkdir(0o700)), refused: true, says: []string{"owned by", "mode 0700"}},
		{name: "a link to a directory of ours", setup: link(ownDir), refused: true, says: []string{"symbolic link", "mine"}},
		{name: "a link to another user's directory", setup: chownTo(link(othersDir)), refused: true, says: []string{"symbolic link", "theirs"}},
		{name: "a dangling link", setup: link(func(*testing.T, string) string { return "/nonexistent/x" }), refused: true, says: []string{"symbolic link"}},
		{name: "a file", setup: func(t *testing.T, p string) { os.WriteFile(p, nil, 0o600) }, refused: true, says: []string{"regular file"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "shoal-x")
			if c.setup != nil {
				c.setup(t, p)
			}
			before, _ := os.Lstat(p)
			d, err := Make(p, "hint")
			if c.refused {
				if err == nil {
					d.Close()
					t.Fatal("accepted")
				}
				var np *NotPrivateError
				if !errors.As(err, &np) || !errors.Is(err, ErrNotPrivate) {
					t.Fatalf("error %v is not a *NotPrivateError", err)
				}
				for _, s := range append(c.says, p) {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q does not say %q", err, s)
					}
				}
				if name, _ := otherName(); name != "" && strings.Contains(c.name, "another") && !strings.Contains(err.Error(), name) {
					t.Errorf("error %q does not name the owner %s", err, name)
				}
				after, _ := os.Lstat(p)
				if before.Mode() != after.Mode() {
					t.Errorf("mode changed from %v to %v: another user's file was changed", before.Mode(), after.Mode())
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			if m := mode(t, p); m != os.ModeDir|0o700 {
				t.Errorf("mode %v, want drwx------", m)
			}
		})
	}
}

func otherName() (string, int) {
	if os.Geteuid() != 0 {
		return "", 0
	}
	for _, name := range []string{"shoalintruder", "nobody"} {
		if u, err := user.Lookup(name); err == nil {
			uid, _ := strconv.Atoi(u.Uid)
			return name, uid
		}
	}
	return "", 0
}

func TestCreateRefusesAnExistingDirectory(t *testing.T) {
	p := filepath.Join(t.TempDir(), "store")
	d, err := Create(p, "")
	if err != nil {
		t.Fatal(err)
	}
	d.Close()
	if _, err := Create(p, ""); !errors.Is(err, fs.ErrExist) {
		t.Errorf("second Create: %v, want an error wrapping fs.ErrExist", err)
	}
	if _, err := Create(filepath.Join(t.TempDir(), "no", "parent"), ""); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Create with a missing parent: %v, want fs.ErrNotExist (parents are the caller's business)", err)
	}
}

func TestCreateNamesTheSquatter(t *testing.T) {
	name, uid := other(t)
	p := filepath.Join(t.TempDir(), "shoal-abc")
	os.Mkdir(p, 0o777)
	os.Chmod(p, 0o777)
	os.Chown(p, uid, uid)
	_, err := Create(p, "do this")
	if !errors.Is(err, ErrNotPrivate) || !strings.Contains(err.Error(), name) || !strings.Contains(err.Error(), "do this") {
		t.Errorf("Create on another user's directory: %v", err)
	}
}

func TestFiles(t *testing.T) {
	d, err := Make(filepath.Join(t.TempDir(), "d"), "")
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := d.WriteFile("secret", []byte("s")); err != nil {
		t.Fatal(err)
	}
	if m := mode(t, d.Join("secret")); m != 0o600 {
		t.Errorf("secret mode %v, want 0600", m)
	}
	if err := d.WriteFile("secret", []byte("t")); !errors.Is(err, fs.ErrExist) {
		t.Errorf("WriteFile over an existing file: %v, want fs.ErrExist", err)
	}
	// a link planted where a file is to be created: O_EXCL|O_NOFOLLOW refuses, the target is
	// untouched
	target := filepath.Join(t.TempDir(), "target")
	os.WriteFile(target, []byte("theirs"), 0o666)
	os.Symlink(target, d.Join("cluster.json"))
	if err := d.WriteFile("cluster.json", []byte("secret")); !errors.Is(err, fs.ErrExist) {
		t.Errorf("WriteFile onto a link: %v, want fs.ErrExist", err)
	}
	if b, _ := os.ReadFile(target); string(b) != "theirs" {
		t.Errorf("the link's target was written: %q", b)
	}
	if _, err := d.ReadFile("cluster.json"); err == nil {
		t.Error("ReadFile followed a link")
	}
	// ReplaceFile replaces the link itself, never its target
	if err := d.ReplaceFile("cluster.json", []byte("new")); err != nil {
		t.Fatal(err)
	}
	if b, err := d.ReadFile("cluster.json"); err != nil || string(b) != "new" {
		t.Errorf("after ReplaceFile: %q, %v", b, err)
	}
	if b, _ := os.ReadFile(target); string(b) != "theirs" {
		t.Errorf("the link's target was written: %q", b)
	}
	if m := mode(t, d.Join("cluster.json")); m != 0o600 {
		t.Errorf("cluster.json mode %v, want 0600", m)
	}
	ns, _ := d.Names()
	if len(ns) != 2 {
		t.Errorf("names %v: a temporary file was left", ns)
	}
	// subdirectories, and removal that never follows a link out
	sub, err := d.Create("sub")
	if err != nil {
		t.Fatal(err)
	}
	sub.WriteFile("f", nil)
	outside := t.TempDir()
	os.WriteFile(filepath.Join(outside, "keep"), nil, 0o600)
	os.Symlink(outside, sub.Join("out"))
	sub.Close()
	if err := d.RemoveAll("sub"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(outside, "keep")); err != nil {
		t.Errorf("RemoveAll followed a link: %v", err)
	}
	if _, err := os.Lstat(d.Join("sub")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("sub left: %v", err)
	}
	for _, bad := range []string{"", ".", "..", "a/b"} {
		if _, err := d.CreateFile(bad); err == nil {
			t.Errorf("CreateFile(%q) accepted", bad)
		}
	}
}

func TestReadFileRefusesAnotherUsersFile(t *testing.T) {
	_, uid := other(t)
	d, err := Make(filepath.Join(t.TempDir(), "d"), "")
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	os.WriteFile(d.Join("rdv.json"), []byte("{}"), 0o644)
	os.Chown(d.Join("rdv.json"), uid, uid)
	if _, err := d.ReadFile("rdv.json"); !errors.Is(err, ErrNotPrivate) || !strings.Contains(err.Error(), "owned by") {
		t.Errorf("ReadFile of another user's file: %v", err)
	}
}

func TestSessions(t *testing.T) {
	log := hclog.NewNullLogger()
	root := t.TempDir()
	base := func() *Dir {
		b, err := Base(root)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	shm := t.TempDir()
	live, err := NewSession(log, base(), "0123456789ab")
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	if err := live.Note(filepath.Join(shm, "shoal-0123456789ab")); err != nil {
		t.Fatal(err)
	}
	os.Mkdir(filepath.Join(shm, "shoal-0123456789ab"), 0o700)
	if !Live(live.Dir) {
		t.Error("a session whose lock is held is not live")
	}
	if _, err := NewSession(log, base(), "0123456789ab"); !errors.Is(err, fs.ErrExist) {
		t.Errorf("a second session of the same name: %v", err)
	}

	// a dead session: what a SIGKILLed cluster leaves (lock file, nobody holding it), with a
	// store directory it noted
	dead := func(name, host string) {
		b := base()
		defer b.Close()
		d, err := b.Create(name)
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		d.WriteFile("lock", []byte(host+"\n"))
		d.WriteFile("secret", []byte("s"))
		store := filepath.Join(shm, "shoal-"+name)
		d.WriteFile("leftover-0", []byte(store))
		os.Mkdir(store, 0o700)
		os.WriteFile(filepath.Join(store, "arena"), nil, 0o600)
	}
	host, _ := os.Hostname()
	dead("aaaaaaaaaaaa", host)
	dead("bbbbbbbbbbbb-node2", host)
	dead("cccccccccccc", "some-other-host")
	dead("not-a-session", host)
	// a dead session that noted a path it could not have made
	dead("dddddddddddd", host)
	b := base()
	dd, _ := b.Open("dddddddddddd")
	dd.Remove("leftover-0")
	dd.WriteFile("leftover-0", []byte(shm))
	dd.Close()
	b.Close()

	s, err := NewSession(log, base(), "eeeeeeeeeeee")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	exists := func(p string) bool { _, err := os.Lstat(p); return err == nil }
	bp := BasePath(root)
	for name, want := range map[string]bool{
		"0123456789ab": true, "aaaaaaaaaaaa": false, "bbbbbbbbbbbb-node2": false, "cccccccccccc": true,
		"not-a-session": true, "dddddddddddd": false,
	} {
		if got := exists(filepath.Join(bp, name)); got != want {
			t.Errorf("session %s: exists=%v after a new start, want %v", name, got, want)
		}
	}
	for name, want := range map[string]bool{
		"0123456789ab": true, "aaaaaaaaaaaa": false, "bbbbbbbbbbbb-node2": false, "cccccccccccc": true,
	} {
		if got := exists(filepath.Join(shm, "shoal-"+name)); got != want {
			t.Errorf("store of %s: exists=%v after a new start, want %v", name, got, want)
		}
	}
	if !exists(shm) {
		t.Error("a noted path not named shoal-<session> was removed")
	}
	s.Close()
	live.Close()
	if !exists(bp) {
		t.Error("the per-user base was removed")
	}
	for _, n := range []string{"0123456789ab", "eeeeeeeeeeee"} {
		if exists(filepath.Join(bp, n)) {
			t.Errorf("closed session %s left", n)
		}
	}
}

func TestSweepLeavesAnotherUsersStore(t *testing.T) {
	_, uid := other(t)
	log := hclog.NewNullLogger()
	root, shm := t.TempDir(), t.TempDir()
	b, err := Base(root)
	if err != nil {
		t.Fatal(err)
	}
	d, _ := b.Create("aaaaaaaaaaaa")
	d.WriteFile("lock", nil)
	store := filepath.Join(shm, "shoal-aaaaaaaaaaaa")
	d.WriteFile("leftover-0", []byte(store))
	d.Close()
	os.Mkdir(store, 0o777)
	os.Chown(store, uid, uid)
	if n := Sweep(log, b); n != 1 {
		t.Errorf("swept %d sessions, want 1", n)
	}
	if _, err := os.Lstat(store); err != nil {
		t.Errorf("another user's directory was removed: %v", err)
	}
	b.Close()
}

func TestLockIsNotInherited(t *testing.T) {
	// the lock's descriptor is close-on-exec: a worker that outlives its agent does not keep a
	// dead cluster looking live
	b, err := Base(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewSession(hclog.NewNullLogger(), b, "0123456789ab")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	fl, err := unix.FcntlInt(s.lock.Fd(), unix.F_GETFD, 0)
	if err != nil || fl&unix.FD_CLOEXEC == 0 {
		t.Errorf("lock descriptor flags %#x (%v): not close-on-exec", fl, err)
	}
}

func TestOpenOwnedBy(t *testing.T) {
	name, uid := other(t)
	p := filepath.Join(t.TempDir(), "shoal-x")
	os.Mkdir(p, 0o700)
	os.WriteFile(filepath.Join(p, "theirs.json"), []byte("{}"), 0o600)
	os.Chown(filepath.Join(p, "theirs.json"), uid, uid)
	os.WriteFile(filepath.Join(p, "roots.json"), []byte("{}"), 0o600)
	os.Chown(p, uid, uid)
	if _, err := OpenOwnedBy(p, os.Geteuid(), ""); !errors.Is(err, ErrNotPrivate) || !strings.Contains(err.Error(), name) {
		t.Errorf("OpenOwnedBy with the wrong owner: %v", err)
	}
	d, err := OpenOwnedBy(p, uid, "")
	if err != nil {
		t.Fatal(err)
	}
	if b, err := d.ReadFile("theirs.json"); err != nil || string(b) != "{}" {
		t.Errorf("reading the owner's file: %q %v", b, err)
	}
	if _, err := d.ReadFile("roots.json"); !errors.Is(err, ErrNotPrivate) {
		t.Errorf("a file of another owner was read: %v", err)
	}
	d.Close()
	os.Chmod(p, 0o755)
	if _, err := OpenOwnedBy(p, uid, ""); !errors.Is(err, ErrNotPrivate) {
		t.Errorf("OpenOwnedBy accepted mode 0755: %v", err)
	}
	if m := mode(t, p); m != os.ModeDir|0o755 {
		t.Errorf("OpenOwnedBy changed the mode to %v", m)
	}
}
