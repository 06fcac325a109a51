package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestExampleFileParses(t *testing.T) {
	f, err := Load(filepath.Join("..", "examples", "shoal.toml"), true)
	if err != nil {
		t.Fatal(err)
	}
	v := f.Values()
	if v["object-store-memory"] != "8g" || v["gpu-confinement"] != "auto" || v["port-range"] != "30000-30999" ||
		v["state-dir"] != "/var/lib/shoal/history" || v["heartbeat-timeout"] != "5s" || v["no-local-tasks"] != "false" {
		t.Fatalf("values %v", v)
	}
}

func TestParseErrorsNameTheSetting(t *testing.T) {
	cases := map[string]string{
		"[node]\nobject_store_memroy = \"1g\"\n": "node.object_store_memroy",
		"[node]\nport_range = \"9-1\"\n":         "port_range",
		"[node]\ngpu_confinement = \"maybe\"\n":  "gpu_confinement",
		"[log]\nformat = \"xml\"\n":              "log.format",
		"[head]\nstate_dri = \"/x\"\n":           "head.state_dri",
		"[cluster]\nheartbeat_timeout = \"5\"\n": "cluster.heartbeat_timeout",
		"[node\n":                                "shoal.toml",
	}
	for in, want := range cases {
		_, err := Parse(strings.NewReader(in), "shoal.toml")
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: got %v, want an ErrInvalid naming %q", in, err, want)
		}
	}
}

func TestMissingFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "none.toml")
	if f, err := Load(p, false); err != nil || len(f.Values()) != 0 {
		t.Fatalf("a missing default file is an empty config: %v", err)
	}
	if _, err := Load(p, true); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a missing file asked for by name: %v", err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add("[node]\nnum_cpus = 4\nresources = { disk = 2 }\n")
	f.Add("[log]\nlevel = \"debug\"\n")
	f.Fuzz(func(t *testing.T, s string) {
		cfg, err := Parse(strings.NewReader(s), "fuzz")
		if err == nil {
			cfg.Values()
		} else if !errors.Is(err, ErrInvalid) {
			t.Fatalf("error %v does not wrap ErrInvalid", err)
		}
	})
}

func TestDataPlaneInsecure(t *testing.T) {
	f, err := Parse(strings.NewReader("[data_plane]\ninsecure = true\n"), "shoal.toml")
	if err != nil {
		t.Fatal(err)
	}
	if v := f.Values()["insecure-data-plane"]; v != "true" {
		t.Fatalf("insecure-data-plane = %q, want true", v)
	}
	if _, err := Parse(strings.NewReader("[data_plane]\ninsecure = \"yes\"\n"), "shoal.toml"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("a string for data_plane.insecure: %v, want ErrInvalid", err)
	}
}

func TestLabelsBecomeTheLabelsFlag(t *testing.T) {
	f, err := Parse(strings.NewReader("[node]\nlabels = { zone = \"east\", disk = \"ssd\" }\n"), "shoal.toml")
	if err != nil {
		t.Fatal(err)
	}
	if got := f.Values()["labels"]; got != `{"disk":"ssd","zone":"east"}` {
		t.Fatalf("labels = %q", got)
	}
}
