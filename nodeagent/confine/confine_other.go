//go:build !linux

package confine

import (
	"errors"

	"github.com/hashicorp/go-hclog"
)

// Confiner makes Groups under one parent cgroup; only Linux has them.
type Confiner struct{}

// Group is one confined cgroup; only Linux has them.
type Group struct{}

var errNotLinux = errors.New("device cgroups need Linux")

// New reports ErrNotSupported: device confinement needs Linux's cgroup v2.
func New(logger hclog.Logger, opts ...Option) (*Confiner, error) {
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	err := errors.Join(ErrNotSupported, errNotLinux)
	logger.Warn("GPU confinement unavailable: workers see their GPUs through CUDA_VISIBLE_DEVICES only", "error", err)
	return nil, err
}

// Parent is empty: there is no parent cgroup.
func (c *Confiner) Parent() string { return "" }

// Confine reports ErrNotSupported.
func (c *Confiner) Confine(name string, rules []Rule) (*Group, error) { return nil, ErrNotSupported }

// Close does nothing.
func (c *Confiner) Close() error { return nil }

// Dir is empty.
func (g *Group) Dir() string { return "" }

// AddProcess reports ErrNotSupported.
func (g *Group) AddProcess(pid int) error { return ErrNotSupported }

// Close does nothing.
func (g *Group) Close() error { return nil }
