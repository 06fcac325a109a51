package ucx

import (
	"fmt"

	"github.com/shoal-hpc/shoal/rdma"
)

// Mode is SHOAL_UCX: "auto" (default) offers UCX to collective groups only on a node whose
// RDMA port is ACTIVE (Preferred), "on" offers it wherever libucp loads (UCX then uses TCP and
// shared memory), "off" never.
func Mode() string {
	switch m := getenv("SHOAL_UCX"); m {
	case "on", "off":
		return m
	}
	return "auto"
}

// init registers "ucx" with rdma's backend registry. Every collective group starts each
// registered backend that can run, so on a node without RDMA (where rdma.Choose would pick
// tcp anyway) the constructor declines with ErrNotSupported instead of starting a UCX worker
// nobody uses; SHOAL_UCX=on lifts that, e.g. to force the "ucx" backend in tests.
func init() {
	rdma.Register("ucx", func(cfg rdma.Config) (rdma.Transport, error) {
		switch Mode() {
		case "off":
			return nil, fmt.Errorf("ucx is switched off (SHOAL_UCX=off): %w", rdma.ErrNotSupported)
		case "auto":
			if ok, why := Preferred(SysfsPorts(cfg.SysRoot)); !ok {
				return nil, fmt.Errorf("ucx is not used here: %s (SHOAL_UCX=on uses it anyway): %w", why, rdma.ErrNotSupported)
			}
		}
		return New(cfg.Secret, WithHost(cfg.Host))
	})
}
