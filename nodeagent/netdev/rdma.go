package netdev

import (
	"errors"
	"io/fs"
	"path"
	"slices"
	"strconv"

	"github.com/hashicorp/go-hclog"
)

// rdmaDevices lists /sys/class/infiniband. A node without it has no RDMA.
func (r *reader) rdmaDevices() []RDMADevice {
	names, err := r.entries(classIB)
	if errors.Is(err, fs.ErrNotExist) {
		r.log.Debug("no rdma devices", "path", "/"+classIB, "error", err)
		return nil
	}
	if err != nil {
		r.log.Warn("cannot list rdma devices, reporting none", "path", "/"+classIB, "error", err)
		return nil
	}
	var out []RDMADevice
	for _, name := range names {
		if !validName(name) {
			continue
		}
		d, err := r.rdmaDevice(name)
		if err != nil {
			r.log.Warn("leaving out unreadable rdma device", "device", name, "error", err)
			continue
		}
		out = append(out, d)
	}
	return out
}

// rdmaDevice reads one device. Its ports directory is required; everything else is optional.
func (r *reader) rdmaDevice(name string) (RDMADevice, error) {
	dir := path.Join(classIB, name)
	log := r.log.With("device", name)
	hw := r.deviceOf(dir, r.realPath(dir))
	d := RDMADevice{Name: name, NUMANode: r.numa(dir, hw), PCIBusID: hw.bus}
	if netdevs, err := r.entries(dir + "/device/net"); err == nil {
		for _, n := range netdevs {
			if validName(n) {
				d.NetDevs = append(d.NetDevs, n)
			}
		}
	} else {
		log.Debug("no network interface for rdma device", "error", err)
	}
	ports, err := r.entries(dir + "/ports")
	if err != nil {
		return RDMADevice{}, err
	}
	for _, p := range ports {
		num, err := strconv.Atoi(p)
		if err != nil || num < 0 {
			log.Debug("skipping unexpected port entry", "entry", p)
			continue
		}
		d.Ports = append(d.Ports, r.rdmaPort(dir+"/ports/"+p, num, log))
	}
	slices.SortFunc(d.Ports, func(a, b RDMAPort) int { return a.Port - b.Port })
	return d, nil
}

// rdmaPort reads one port; whatever cannot be read stays unknown.
func (r *reader) rdmaPort(dir string, num int, log hclog.Logger) RDMAPort {
	p := RDMAPort{Port: num}
	if s, err := r.readString(dir + "/state"); err == nil {
		if p.State, err = parseState(s); err != nil {
			log.Warn("ignoring malformed port state", "port", num, "error", err)
		}
	}
	if s, err := r.readString(dir + "/link_layer"); err == nil {
		p.LinkLayer = s
	}
	// rate fails with EINVAL while the port has no link.
	if s, err := r.readString(dir + "/rate"); err == nil {
		if p.RateGbps, err = parseRate(s); err != nil {
			log.Warn("ignoring malformed port rate", "port", num, "error", err)
		}
	}
	p.GIDs = r.gids(dir, num, log)
	return p
}

// gids reads a port's GID table, leaving out the empty (all-zero) entries. The kernel fails
// reads of gid_attrs/types/<i> for empty entries, so a type is read only for a GID in use.
func (r *reader) gids(dir string, port int, log hclog.Logger) []GID {
	idx, err := r.entries(dir + "/gids")
	if err != nil {
		log.Debug("no gid table", "port", port, "error", err)
		return nil
	}
	var out []GID
	for _, e := range idx {
		i, err := strconv.Atoi(e)
		if err != nil || i < 0 {
			continue
		}
		s, err := r.readString(dir + "/gids/" + e)
		if err != nil {
			continue
		}
		if zero, err := zeroGID(s); err != nil || zero {
			if err != nil {
				log.Debug("skipping malformed gid", "port", port, "index", i, "error", err)
			}
			continue
		}
		g := GID{Index: i, GID: s}
		if t, err := r.readString(dir + "/gid_attrs/types/" + e); err == nil {
			if g.Type, err = parseGIDType(t); err != nil {
				log.Debug("gid type unknown", "port", port, "index", i, "error", err)
			}
		}
		out = append(out, g)
	}
	slices.SortFunc(out, func(a, b GID) int { return a.Index - b.Index })
	return out
}
