package yarn

import (
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Site is the set of properties of a Hadoop configuration file such as yarn-site.xml.
type Site map[string]string

// ParseSite reads a Hadoop configuration file (<configuration><property><name/><value/>...).
// ${var} references are left as they are.
func ParseSite(r io.Reader) (Site, error) {
	var doc struct {
		XMLName    xml.Name `xml:"configuration"`
		Properties []struct {
			Name  string `xml:"name"`
			Value string `xml:"value"`
		} `xml:"property"`
	}
	dec := xml.NewDecoder(io.LimitReader(r, 16<<20))
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("parse Hadoop configuration: %w", err)
	}
	s := Site{}
	for _, p := range doc.Properties {
		if n := strings.TrimSpace(p.Name); n != "" {
			s[n] = strings.TrimSpace(p.Value)
		}
	}
	return s, nil
}

// LoadSite reads the cluster's configuration from the first of $YARN_CONF_DIR, $HADOOP_CONF_DIR
// and $HADOOP_HOME/etc/hadoop that has a yarn-site.xml: that file, with core-site.xml and
// hdfs-site.xml beside it merged in (yarn-site.xml wins). It returns an empty Site and no path
// when there is none.
func LoadSite() (Site, string, error) {
	var dirs []string
	for _, v := range []string{"YARN_CONF_DIR", "HADOOP_CONF_DIR"} {
		if d := os.Getenv(v); d != "" {
			dirs = append(dirs, d)
		}
	}
	if h := os.Getenv("HADOOP_HOME"); h != "" {
		dirs = append(dirs, filepath.Join(h, "etc", "hadoop"))
	}
	for _, d := range dirs {
		p := filepath.Join(d, "yarn-site.xml")
		if _, err := os.Stat(p); errors.Is(err, os.ErrNotExist) {
			continue
		}
		site := Site{}
		for _, name := range []string{"core-site.xml", "hdfs-site.xml", "yarn-site.xml"} {
			f, err := os.Open(filepath.Join(d, name))
			if errors.Is(err, os.ErrNotExist) && name != "yarn-site.xml" {
				continue
			}
			if err != nil {
				return Site{}, p, fmt.Errorf("read %s: %w", filepath.Join(d, name), err)
			}
			s, err := ParseSite(f)
			f.Close()
			if err != nil {
				return Site{}, p, fmt.Errorf("%s: %w", filepath.Join(d, name), err)
			}
			for k, v := range s {
				site[k] = v
			}
		}
		return site, p, nil
	}
	return Site{}, "", nil
}

// DefaultFS is fs.defaultFS (core-site.xml), or "" when unset.
func (s Site) DefaultFS() string { return s["fs.defaultFS"] }

// NameNodeWeb is dfs.namenode.http-address (hdfs-site.xml), else the default file system's host
// with port 9870, or "" when the default file system is not HDFS.
func (s Site) NameNodeWeb() string {
	if a := s["dfs.namenode.http-address"]; a != "" && !strings.HasPrefix(a, "0.0.0.0:") {
		return a
	}
	fs := s.DefaultFS()
	if !strings.HasPrefix(fs, "hdfs://") {
		return ""
	}
	host := strings.TrimPrefix(fs, "hdfs://")
	if i := strings.IndexAny(host, ":/"); i >= 0 {
		host = host[:i]
	}
	return host + ":9870"
}

// Address returns the host:port of an address property, with YARN's fallbacks: a missing
// property takes yarn.resourcemanager.hostname with the default port, and a 0.0.0.0 host also
// takes yarn.resourcemanager.hostname.
func (s Site) Address(prop string, defaultPort int) string {
	host := s["yarn.resourcemanager.hostname"]
	if host == "" {
		host = "0.0.0.0"
	}
	v := s[prop]
	if v == "" || strings.Contains(v, "${") {
		return fmt.Sprintf("%s:%d", host, defaultPort)
	}
	h, p, ok := strings.Cut(v, ":")
	if !ok {
		return fmt.Sprintf("%s:%d", v, defaultPort)
	}
	if h == "0.0.0.0" || h == "" {
		h = host
	}
	return h + ":" + p
}

// RMWebAddress is yarn.resourcemanager.webapp.address (default port 8088), or "" when the site
// names no ResourceManager.
func (s Site) RMWebAddress() string {
	if s["yarn.resourcemanager.webapp.address"] == "" && s["yarn.resourcemanager.hostname"] == "" {
		return ""
	}
	return s.Address("yarn.resourcemanager.webapp.address", 8088)
}

// SchedulerAddress is yarn.resourcemanager.scheduler.address (default port 8030), or "" when
// the site names no ResourceManager.
func (s Site) SchedulerAddress() string {
	if s["yarn.resourcemanager.scheduler.address"] == "" && s["yarn.resourcemanager.hostname"] == "" {
		return ""
	}
	return s.Address("yarn.resourcemanager.scheduler.address", 8030)
}

// ParseMemoryMB reads a container size as YARN counts it, in MB: "4g", "512m", "1.5g", "4096"
// (a bare number is MB, YARN's unit), "4GiB".
func ParseMemoryMB(s string) (int64, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	t = strings.TrimSuffix(strings.TrimSuffix(t, "ib"), "b")
	mult := 1.0 // MB
	if n := len(t); n > 0 {
		unit := true
		switch t[n-1] {
		case 'k':
			mult = 1.0 / 1024
		case 'm':
			mult = 1
		case 'g':
			mult = 1024
		case 't':
			mult = 1024 * 1024
		default:
			unit = false
		}
		if unit {
			t = t[:n-1]
		}
	}
	v, err := strconv.ParseFloat(t, 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) || v <= 0 || v*mult > 1<<40 {
		return 0, fmt.Errorf("%q is not a memory size; write e.g. 4g, 512m or 4096 (MB)", s)
	}
	mb := int64(v*mult + 0.5)
	if mb < 1 {
		return 0, fmt.Errorf("%q is less than 1 MB; YARN sizes containers in MB", s)
	}
	return mb, nil
}

func sortedKeys[T any](m map[string]T) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
