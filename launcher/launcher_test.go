package launcher

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/shoal-hpc/shoal/wire"
)

func opts(t *testing.T) Options {
	return Options{TmpRoot: t.TempDir(), NumCPUs: 2, ObjectStoreMemory: 32 << 20}
}

func run(t *testing.T, o Options, script string) int {
	t.Helper()
	code, err := Run(context.Background(), hclog.NewNullLogger(), o, []string{"sh", "-c", script})
	if err != nil {
		t.Fatalf("run %q: %v", script, err)
	}
	return code
}

func TestRunExitCodes(t *testing.T) {
	cases := map[string]int{"true": 0, "exit 3": 3, "kill -TERM $$": 128 + 15, "kill -KILL $$": 128 + 9}
	for script, want := range cases {
		if got := run(t, opts(t), script); got != want {
			t.Errorf("%q: exit code %d, want %d", script, got, want)
		}
	}
	code, err := Run(context.Background(), hclog.NewNullLogger(), opts(t), []string{"no-such-command-xyz"})
	if err == nil || code != 127 {
		t.Errorf("missing command: code %d err %v", code, err)
	}
}

func TestRunLeavesNothingBehind(t *testing.T) {
	o := opts(t)
	out := filepath.Join(t.TempDir(), "env")
	// the driver leaves a daemon behind, and records where the cluster lives
	script := `sleep 300 & echo $! > ` + out + `.pid; env | grep ^SHOAL_ > ` + out
	if code := run(t, o, script); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		k, v, _ := strings.Cut(l, "=")
		env[k] = v
	}
	id := env["SHOAL_CLUSTER_ID"]
	if id == "" || env["SHOAL_ADDRESS"] == "" || len(env["SHOAL_SECRET"]) != 64 {
		t.Fatalf("driver environment lacks the cluster: %v", env)
	}
	for _, p := range []string{filepath.Join(BaseDir(o.TmpRoot), id), "/dev/shm/shoal-" + id, strings.TrimPrefix(env["SHOAL_ADDRESS"], "unix:")} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s is left behind", p)
		}
	}
	pb, _ := os.ReadFile(out + ".pid")
	pid, _ := strconv.Atoi(strings.TrimSpace(string(pb)))
	if pid == 0 {
		t.Fatal("no pid of the background process")
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("the driver's background process %d is still running", pid)
	}
}

func TestTwoClustersDoNotCollide(t *testing.T) {
	o := opts(t)
	a, err := Start(hclog.NewNullLogger(), o)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := Start(hclog.NewNullLogger(), o)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if a.ID == b.ID || a.Addr == b.Addr || a.Dir == b.Dir || a.Secret == b.Secret ||
		a.Agent().ArenaPath() == b.Agent().ArenaPath() || a.Agent().TCPAddr() == b.Agent().TCPAddr() {
		t.Fatalf("clusters share something: %+v %+v", a.Info(), b.Info())
	}
	// each cluster refuses the other's secret
	if _, _, err := wire.Dial(a.Addr, b.Secret, wire.Auth{Role: "cli"}); !errors.Is(err, wire.ErrAuth) {
		t.Fatalf("cluster a accepted cluster b's secret: %v", err)
	}
	c, _, err := wire.Dial(a.Agent().TCPAddr(), a.Secret, wire.Auth{Role: "cli"})
	if err != nil {
		t.Fatalf("TCP with the right secret: %v", err)
	}
	var info wire.InfoReply
	if err := c.Call(wire.TInfo, 1, struct{}{}, &info); err != nil || info.Cluster != a.ID || info.Total["CPU"] != 2 {
		t.Fatalf("info %+v %v", info, err)
	}
	c.Close()
	st, _ := os.Stat(a.Dir)
	if st.Mode().Perm() != 0o700 {
		t.Fatalf("session dir mode %v", st.Mode().Perm())
	}
	sec, _ := os.Stat(filepath.Join(a.Dir, "secret"))
	if sec.Mode().Perm() != 0o600 {
		t.Fatalf("secret file mode %v", sec.Mode().Perm())
	}
}

func TestSignalReachesDriver(t *testing.T) {
	o := opts(t)
	marker := filepath.Join(t.TempDir(), "got-usr1")
	done := make(chan int, 1)
	go func() {
		done <- run(t, o, `trap 'touch `+marker+`; exit 0' USR1; touch `+marker+`.started; while true; do sleep 0.05; done`)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for { // signal only once the driver runs, so that shoal's handler is installed
		if _, err := os.Stat(marker + ".started"); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("driver did not start")
		}
		time.Sleep(10 * time.Millisecond)
	}
	for {
		time.Sleep(100 * time.Millisecond)
		syscall.Kill(os.Getpid(), syscall.SIGUSR1)
		select {
		case code := <-done:
			if code != 0 {
				t.Fatalf("exit code %d", code)
			}
			if _, err := os.Stat(marker); err != nil {
				t.Fatal("the driver did not see SIGUSR1")
			}
			return
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("driver did not exit after SIGUSR1")
		}
	}
}

func TestBindAddr(t *testing.T) {
	got, err := bindAddr("localhost", []string{"lo"})
	if err != nil || got != "127.0.0.1" {
		t.Errorf(`bindAddr(localhost, [lo]) = %q, %v; want 127.0.0.1`, got, err)
	}
	if got, err := bindAddr("localhost", nil); err != nil || got != nodeAddr("localhost") {
		t.Errorf("bindAddr without allowed interfaces = %q, %v; want the resolved address %q", got, err, nodeAddr("localhost"))
	}
	_, err = bindAddr("node7", []string{"nosuch0", "nosuch1"})
	if err == nil || !strings.Contains(err.Error(), "nosuch0,nosuch1") || !strings.Contains(err.Error(), "node7") {
		t.Errorf("bindAddr with no usable interface: error %v, want one naming the interfaces and the node", err)
	}
}
