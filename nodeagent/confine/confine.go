package confine

import (
	"errors"
	"fmt"
	"strings"
)

// ErrNotSupported means this node or process cannot confine devices: no cgroup v2, a kernel
// without CGROUP_DEVICE programs, or no privilege. The caller falls back to
// CUDA_VISIBLE_DEVICES alone.
var ErrNotSupported = errors.New("device confinement not supported")

// Option changes how New probes and where groups go.
type Option func(*options)

type options struct {
	parent string
	proc   string
}

// WithParent makes groups directories under dir, which must be in a cgroup v2 hierarchy and is
// created when missing (its parent must exist). The default is shoal-<pid> below this
// process's own cgroup v2.
func WithParent(dir string) Option {
	return func(o *options) { o.parent = dir }
}

// WithProcRoot makes New read self/mountinfo and self/cgroup under dir instead of /proc, so
// tests can use fixture trees.
func WithProcRoot(dir string) Option {
	return func(o *options) { o.proc = dir }
}

// validName keeps a group name to one path element that is not a cgroup interface file.
func validName(name string) error {
	switch {
	case name == "", name == ".", name == "..", strings.ContainsAny(name, "/\x00\n"):
		return fmt.Errorf("group name %q: want one non-empty path element", name)
	case strings.HasPrefix(name, "cgroup."), len(name) > 200:
		return fmt.Errorf("group name %q: reserved or too long", name)
	}
	return nil
}
