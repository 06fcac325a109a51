package nodeagent

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/shoal-hpc/shoal/wire"
)

const spawnSecret = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// TestSpawnCarriesNoSecret: the head node's agent asks a member (here a test playing one, over
// TLS) to start a worker; the SPAWN names the worker and the head's address but not the secret.
func TestSpawnCarriesNoSecret(t *testing.T) {
	a := startTestHead(t, func(c *Config) { c.ObjectStoreMemory = 1 << 20 })
	member, _ := joinTestMember(t, a, "m1", map[string]float64{"CPU": 1, "only_m1": 1})

	driver, w, err := wire.Dial(a.Addr(), spawnSecret, wire.Auth{Role: "driver", Lang: "go", PID: os.Getpid(), Exe: "/bin/true", Path: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	defer driver.Close()
	var id wire.ID
	copy(id[:8], w.Client)
	id[11] = 1
	if err := driver.Send(wire.TSubmit, 0, &wire.Task{Task: id, Name: "f", Lang: "go", Nret: 1,
		Res: map[string]float64{"only_m1": 1}}); err != nil {
		t.Fatal(err)
	}

	member.Net().SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		f, err := member.Read()
		if err != nil {
			t.Fatalf("no SPAWN came: %v", err)
		}
		if f.Type != wire.TSpawn {
			continue
		}
		var s wire.Spawn
		if err := f.Decode(&s); err != nil {
			t.Fatal(err)
		}
		var sawAddr bool
		for _, e := range s.Env {
			if strings.HasPrefix(e, "SHOAL_SECRET=") || strings.Contains(e, spawnSecret) {
				t.Fatalf("SPAWN carries the secret: %q", e)
			}
			sawAddr = sawAddr || strings.HasPrefix(e, "SHOAL_ADDRESS=tcp:")
		}
		if !sawAddr {
			t.Fatalf("SPAWN has no SHOAL_ADDRESS of the head: %q", s.Env)
		}
		return
	}
}

// TestMemberGivesItsWorkersTheSecret: a member puts its own secret into the worker's
// environment, and drops any SHOAL_SECRET a SPAWN might carry.
func TestMemberGivesItsWorkersTheSecret(t *testing.T) {
	out := filepath.Join(t.TempDir(), "env")
	head, mine := net.Pipe()
	defer head.Close()
	go func() { // the head's end: read WORKER_EXIT and the rest
		for {
			if _, err := wire.ReadFrame(head); err != nil {
				return
			}
		}
	}()
	m := &Member{log: hclog.NewNullLogger(), conn: wire.NewConn(mine), node: "m1", procs: &spawner{log: hclog.NewNullLogger()},
		cfg: MemberConfig{Secret: spawnSecret}, stdout: os.Stderr, stderr: os.Stderr}
	m.spawn(&wire.Spawn{Worker: "w1", Argv: []string{"/bin/sh", "-c", `printf %s "$SHOAL_SECRET" > "$1"`, "sh", out},
		Env: []string{"SHOAL_WORKER_ID=w1", "SHOAL_SECRET=from-spawn"}})
	m.procs.wg.Wait()
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != spawnSecret {
		t.Fatalf("the worker got SHOAL_SECRET=%q, want the member's own", b)
	}
}
