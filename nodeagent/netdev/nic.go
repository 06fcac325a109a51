package netdev

import (
	"path"
	"strconv"
	"strings"
)

// nics lists /sys/class/net. Only the listing itself is required.
func (r *reader) nics() ([]NIC, error) {
	names, err := r.entries(classNet)
	if err != nil {
		return nil, errNoClass(err)
	}
	var out []NIC
	for _, name := range names {
		if !validName(name) {
			continue
		}
		out = append(out, r.nic(name))
	}
	return out, nil
}

// nic reads one interface; whatever cannot be read stays unknown.
func (r *reader) nic(name string) NIC {
	dir := path.Join(classNet, name)
	log := r.log.With("interface", name)
	real := r.realPath(dir)
	hw := r.deviceOf(dir, real)
	n := NIC{
		Name:      name,
		SpeedMbps: unknown,
		NUMANode:  r.numa(dir, hw),
		PCIBusID:  hw.bus,
		Virtual:   !hw.present || strings.HasPrefix(real+"/", devices+"/virtual/"),
	}
	if n.Virtual {
		n.PCIBusID = ""
	}
	if s, err := r.readString(dir + "/address"); err == nil {
		n.MAC = s
	}
	if s, err := r.readString(dir + "/type"); err == nil {
		n.Kind = parseKind(s)
	} else {
		log.Debug("interface type unknown", "error", err)
	}
	if s, err := r.readString(dir + "/operstate"); err == nil {
		n.Up = s == "up" || s == "unknown" && r.adminUp(dir)
	}
	if s, err := r.readString(dir + "/mtu"); err == nil {
		if v, err := strconv.Atoi(s); err == nil && v > 0 {
			n.MTU = v
		} else {
			log.Warn("ignoring malformed mtu", "value", s)
		}
	}
	// Reading speed fails with EINVAL on virtual interfaces and links that are down.
	if s, err := r.readString(dir + "/speed"); err == nil {
		if v, err := parseSpeed(s); err == nil {
			n.SpeedMbps = v
		} else {
			log.Warn("ignoring malformed speed", "error", err)
		}
	}
	addrs, err := r.addrs(name)
	if err != nil {
		log.Debug("interface addresses unknown", "error", err)
	} else if len(addrs) > 0 {
		n.Addrs = addrs
	}
	return n
}

// iffUp is IFF_UP in the interface flags (linux/if.h).
const iffUp = 0x1

// adminUp reports whether the interface is administratively up, from the hex flags file.
func (r *reader) adminUp(dir string) bool {
	s, err := r.readString(dir + "/flags")
	if err != nil {
		return false
	}
	f, err := strconv.ParseUint(strings.TrimPrefix(s, "0x"), 16, 32)
	return err == nil && f&iffUp != 0
}

// validName keeps a directory entry from naming anything but one entry of its class.
func validName(name string) bool {
	return name != "" && name != "." && name != ".." && !strings.ContainsAny(name, "/\\")
}
