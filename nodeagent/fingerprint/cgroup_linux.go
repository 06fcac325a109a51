package fingerprint

import (
	"cmp"
	"errors"
	"io/fs"
	"path"
	"slices"
	"strings"

	"github.com/hashicorp/go-hclog"
)

// v1Controllers are the cgroup v1 controllers whose limits the fingerprinters read.
var v1Controllers = []string{"memory", "cpu"}

// discoverCgroups finds this process's cgroups from /proc/self/cgroup and
// /proc/self/mountinfo: the unified (v2) hierarchy, wherever it is mounted (/sys/fs/cgroup on
// pure v2 nodes, /sys/fs/cgroup/unified on hybrid ones), and the v1 memory and cpu
// hierarchies. What cannot be found is left zero and logged at Debug.
func discoverCgroups(logger hclog.Logger, fsys fs.FS) Cgroups {
	cg := Cgroups{V1: map[string]Cgroup{}}
	b, err := readFile(fsys, "/proc/self/cgroup")
	if err != nil {
		logger.Debug("no cgroup membership, ignoring cgroup limits", "path", "/proc/self/cgroup", "error", err)
		return cg
	}
	pc, err := parseProcCgroup(b)
	if err != nil {
		logger.Warn("unreadable cgroup membership, ignoring cgroup limits", "path", "/proc/self/cgroup", "error", err)
		return cg
	}
	b, err = readFile(fsys, "/proc/self/mountinfo")
	if err != nil {
		logger.Debug("no mount table, ignoring cgroup limits", "path", "/proc/self/mountinfo", "error", err)
		return cg
	}
	mounts, err := parseMountinfo(b)
	if err != nil {
		logger.Warn("unreadable mount table, ignoring cgroup limits", "path", "/proc/self/mountinfo", "error", err)
		return cg
	}
	if pc.hasV2 {
		if c, ok := locate(logger, mounts, pc.v2, func(m mount) bool { return m.fstype == "cgroup2" }); ok {
			cg.V2 = c
		} else {
			logger.Debug("cgroup v2 not mounted", "cgroup", pc.v2)
		}
	}
	for _, ctrl := range v1Controllers {
		p, member := pc.byCtrl[ctrl]
		if !member {
			logger.Debug("no cgroup v1 controller", "controller", ctrl)
			continue
		}
		isCtrl := func(m mount) bool { return m.fstype == "cgroup" && slices.Contains(m.superOpts, ctrl) }
		if c, ok := locate(logger, mounts, p, isCtrl); ok {
			cg.V1[ctrl] = c
		} else {
			logger.Debug("cgroup v1 controller not mounted", "controller", ctrl, "cgroup", p)
		}
	}
	logger.Debug("found cgroups", "v2", cg.V2.Dir, "v1_memory", cg.V1["memory"].Dir, "v1_cpu", cg.V1["cpu"].Dir)
	return cg
}

// locate maps the cgroup path p (as /proc/self/cgroup shows it) to a directory under a
// mount accepted by match. A mount of a subtree (a container's bind mount of its own cgroup)
// has a root other than "/", and p must lie below it; when no mount holds p (the process sits
// outside its cgroup namespace) the mount point itself is the best guess.
func locate(logger hclog.Logger, mounts []mount, p string, match func(mount) bool) (Cgroup, bool) {
	var fallback *mount
	for i, m := range mounts {
		if !match(m) {
			continue
		}
		if rel, ok := below(m.root, p); ok {
			return Cgroup{Mount: m.point, Dir: path.Join(m.point, rel)}, true
		}
		if fallback == nil {
			fallback = &mounts[i]
		}
	}
	if fallback == nil {
		return Cgroup{}, false
	}
	logger.Debug("cgroup outside the mounted subtree, using the mount point",
		"cgroup", p, "mount_root", fallback.root, "mount_point", fallback.point)
	return Cgroup{Mount: fallback.point, Dir: fallback.point}, true
}

// below returns p relative to root when p is root or lies under it.
func below(root, p string) (string, bool) {
	if !strings.HasPrefix(p, "/") || slices.Contains(strings.Split(p, "/"), "..") {
		return "", false
	}
	p = path.Clean(p)
	root = path.Clean(root)
	switch {
	case root == "/":
		return p, true
	case p == root:
		return "/", true
	case strings.HasPrefix(p, root+"/"):
		return strings.TrimPrefix(p, root), true
	}
	return "", false
}

// limitFile is one kind of limit file: its name and how to read it from a cgroup directory.
type limitFile[T cmp.Ordered] struct {
	version string // "cgroup v1" or "cgroup v2"
	name    string
	read    func(fsys fs.FS, dir string) (T, error) // errUnlimited for none
}

// found is the smallest limit seen and the file (node path) that set it.
type found[T cmp.Ordered] struct {
	value T
	file  string
	ok    bool
}

// smallest walks from the cgroup's directory up to its mount point and returns the smallest
// limit set at any level: a parent's limit binds its children whatever they say. Missing
// files are normal (the root cgroup has no memory.max) and malformed ones are skipped.
func smallest[T cmp.Ordered](logger hclog.Logger, fsys fs.FS, cg Cgroup, lf limitFile[T]) found[T] {
	var best found[T]
	for _, dir := range cg.levels() {
		file := path.Join(dir, lf.name)
		v, err := lf.read(fsys, dir)
		switch {
		case errors.Is(err, errUnlimited):
			continue
		case errors.Is(err, fs.ErrNotExist):
			logger.Debug("no cgroup limit file", "path", file)
			continue
		case err != nil:
			logger.Warn("ignoring unreadable cgroup limit", "path", file, "error", err)
			continue
		}
		if !best.ok || v < best.value {
			best = found[T]{value: v, file: file, ok: true}
		}
	}
	return best
}

// readWith adapts a parser of one file to limitFile.read.
func readWith[T cmp.Ordered](name string, parse func([]byte) (T, error)) func(fs.FS, string) (T, error) {
	return func(fsys fs.FS, dir string) (T, error) {
		b, err := readFile(fsys, path.Join(dir, name))
		if err != nil {
			var zero T
			return zero, err
		}
		return parse(b)
	}
}
