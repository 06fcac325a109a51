// Package config reads the admin's node defaults from one TOML file (/etc/shoal/shoal.toml, or
// the path in SHOAL_CONFIG / --config) and tells, for every setting, where its value came from:
// a command-line flag, a SHOAL_* variable, the file, or the built-in default. Flags and
// variables override the file; the file overrides defaults.
package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// DefaultPath is where the admin's file lives unless SHOAL_CONFIG or --config says otherwise.
const DefaultPath = "/etc/shoal/shoal.toml"

// File is the file's content. Every field is optional.
type File struct {
	Node struct {
		NumCPUs           *float64           `toml:"num_cpus"`
		NumGPUs           *float64           `toml:"num_gpus"`
		Memory            *string            `toml:"memory"`
		ObjectStoreMemory *string            `toml:"object_store_memory"`
		ObjectStoreDir    *string            `toml:"object_store_dir"`
		SpillDir          *string            `toml:"spill_dir"`
		TmpDir            *string            `toml:"tmpdir"`
		Resources         map[string]float64 `toml:"resources"`
		Labels            map[string]string  `toml:"labels"` // --labels (docs/ray-tasks.md)
		AllowedInterfaces []string           `toml:"allowed_interfaces"`
		PortRange         *string            `toml:"port_range"`
		GPUConfinement    *string            `toml:"gpu_confinement"`
		MaxWorkers        *int               `toml:"max_workers"`
	} `toml:"node"`
	Log struct {
		Level  *string `toml:"level"`
		Format *string `toml:"format"`
	} `toml:"log"`
	// Head is the cluster's state store.
	Head struct {
		// StateDir keeps each cluster's head database after it ends (--state-dir).
		StateDir *string `toml:"state_dir"`
	} `toml:"head"`
	// Cluster holds what the head node of a multi-node cluster decides for all its nodes.
	Cluster struct {
		// HeartbeatTimeout: how long a node may stay silent before it is lost
		// (--heartbeat-timeout), a Go duration such as "5s".
		HeartbeatTimeout *string `toml:"heartbeat_timeout"`
		// LocalTasks: member nodes run the plain tasks their own workers submit (default
		// true; false is --no-local-tasks, docs/architecture.md "Member-local scheduling").
		LocalTasks *bool `toml:"local_tasks"`
	} `toml:"cluster"`
	// DataPlane is the traffic of objects and collectives between nodes.
	DataPlane struct {
		// Insecure turns its encryption off (TLS 1.3 by default), for fabrics the admin
		// trusts; the control plane stays encrypted (docs/security.md, "Data plane").
		Insecure *bool `toml:"insecure"`
	} `toml:"data_plane"`
}

// ErrInvalid is wrapped by every error about the file's content.
var ErrInvalid = errors.New("invalid shoal config")

// Parse reads a config file's content; name is used in messages.
func Parse(r io.Reader, name string) (*File, error) {
	var f File
	md, err := toml.NewDecoder(r).Decode(&f)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrInvalid, name, err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		keys := make([]string, len(und))
		for i, k := range und {
			keys[i] = k.String()
		}
		sort.Strings(keys)
		return nil, fmt.Errorf("%w: %s: unknown setting(s) %s; see examples/shoal.toml for the known ones", ErrInvalid, name, strings.Join(keys, ", "))
	}
	if p := f.Node.PortRange; p != nil {
		if _, _, err := ParsePortRange(*p); err != nil {
			return nil, fmt.Errorf("%w: %s: node.port_range: %v", ErrInvalid, name, err)
		}
	}
	if g := f.Node.GPUConfinement; g != nil && *g != "auto" && *g != "on" && *g != "off" {
		return nil, fmt.Errorf("%w: %s: node.gpu_confinement = %q: use auto, on or off", ErrInvalid, name, *g)
	}
	if h := f.Cluster.HeartbeatTimeout; h != nil {
		if _, err := time.ParseDuration(*h); err != nil {
			return nil, fmt.Errorf("%w: %s: cluster.heartbeat_timeout = %q: write a duration such as \"5s\"", ErrInvalid, name, *h)
		}
	}
	if l := f.Log.Format; l != nil && *l != "text" && *l != "json" {
		return nil, fmt.Errorf("%w: %s: log.format = %q: use text or json", ErrInvalid, name, *l)
	}
	return &f, nil
}

// Load reads path. A missing file at the default path is an empty config; a missing file that
// was asked for explicitly is an error.
func Load(path string, explicit bool) (*File, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) && !explicit {
		return &File{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read shoal config: %w", err)
	}
	defer f.Close()
	return Parse(f, path)
}

// ParsePortRange reads "30000-31000".
func ParsePortRange(s string) (lo, hi int, err error) {
	a, b, ok := strings.Cut(strings.TrimSpace(s), "-")
	if !ok {
		return 0, 0, fmt.Errorf("port range %q: write LOW-HIGH, e.g. 30000-31000", s)
	}
	lo, err1 := strconv.Atoi(strings.TrimSpace(a))
	hi, err2 := strconv.Atoi(strings.TrimSpace(b))
	if err1 != nil || err2 != nil || lo < 1 || hi > 65535 || lo > hi {
		return 0, 0, fmt.Errorf("port range %q: want 1 <= LOW <= HIGH <= 65535", s)
	}
	return lo, hi, nil
}

// Values flattens the file into flag-name -> value strings, the way the CLI's flags spell them.
func (f *File) Values() map[string]string {
	v := map[string]string{}
	n := f.Node
	putF := func(k string, p *float64) {
		if p != nil {
			v[k] = strconv.FormatFloat(*p, 'g', -1, 64)
		}
	}
	putS := func(k string, p *string) {
		if p != nil {
			v[k] = *p
		}
	}
	putF("num-cpus", n.NumCPUs)
	putF("num-gpus", n.NumGPUs)
	putS("memory", n.Memory)
	putS("object-store-memory", n.ObjectStoreMemory)
	putS("object-store-dir", n.ObjectStoreDir)
	putS("spill-dir", n.SpillDir)
	putS("tmpdir", n.TmpDir)
	putS("port-range", n.PortRange)
	putS("gpu-confinement", n.GPUConfinement)
	if n.MaxWorkers != nil {
		v["max-workers-per-node"] = strconv.Itoa(*n.MaxWorkers)
	}
	putS("state-dir", f.Head.StateDir)
	putS("heartbeat-timeout", f.Cluster.HeartbeatTimeout)
	putS("log-level", f.Log.Level)
	putS("log-format", f.Log.Format)
	if p := f.Cluster.LocalTasks; p != nil {
		v["no-local-tasks"] = strconv.FormatBool(!*p)
	}
	if p := f.DataPlane.Insecure; p != nil {
		v["insecure-data-plane"] = strconv.FormatBool(*p)
	}
	if len(n.Resources) > 0 {
		keys := make([]string, 0, len(n.Resources))
		for k := range n.Resources {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = strconv.Quote(k) + ": " + strconv.FormatFloat(n.Resources[k], 'g', -1, 64)
		}
		v["resources"] = "{" + strings.Join(parts, ", ") + "}"
	}
	if len(n.Labels) > 0 {
		b, _ := json.Marshal(n.Labels) // --labels takes JSON; keys come out sorted
		v["labels"] = string(b)
	}
	if len(n.AllowedInterfaces) > 0 {
		v["allowed-interfaces"] = strings.Join(n.AllowedInterfaces, ",")
	}
	return v
}
