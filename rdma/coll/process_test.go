package coll

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/shoal-hpc/shoal/wire"
)

// Ranks as real processes: the test binary re-runs itself as each rank (TestMain), and the
// ranks meet through a directory-backed store (the agent's store is tested end to end by
// python/tests/test_collective.py in a real cluster).

const rankEnv = "SHOAL_COLL_TEST_RANK"

func TestMain(m *testing.M) {
	if os.Getenv(rankEnv) != "" {
		os.Exit(rankMain())
	}
	os.Exit(m.Run())
}

type fileKV struct{ dir string }

func (k fileKV) path(key string) string {
	return filepath.Join(k.dir, strings.ReplaceAll(key, "/", "_"))
}

func (k fileKV) KVPut(ctx context.Context, key string, v []byte) (string, error) {
	tmp := k.path(key) + ".tmp" + strconv.Itoa(os.Getpid())
	if err := os.WriteFile(tmp, v, 0o600); err != nil {
		return "", err
	}
	return "127.0.0.1", os.Rename(tmp, k.path(key))
}

func (k fileKV) KVGet(ctx context.Context, key string, wait time.Duration) ([]byte, bool, error) {
	end := time.Now().Add(wait)
	for {
		if b, err := os.ReadFile(k.path(key)); err == nil {
			return b, true, nil
		}
		if time.Now().After(end) {
			return nil, false, nil
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func (k fileKV) KVDelete(ctx context.Context, key string) (bool, error) {
	return os.Remove(k.path(key)) == nil, nil
}

func rankMain() int {
	rank, _ := strconv.Atoi(os.Getenv(rankEnv))
	size, _ := strconv.Atoi(os.Getenv("SHOAL_COLL_TEST_SIZE"))
	dir := os.Getenv("SHOAL_COLL_TEST_DIR")
	mode := os.Getenv("SHOAL_COLL_TEST_MODE")
	timeout, _ := time.ParseDuration(os.Getenv("SHOAL_COLL_TEST_TIMEOUT"))
	opts := Options{Secret: os.Getenv("SHOAL_COLL_TEST_SECRET"), Cluster: "proc" + filepath.Base(dir),
		Backend: os.Getenv("SHOAL_COLL_TEST_BACKEND"), Node: os.Getenv("SHOAL_COLL_TEST_NODE"), Timeout: timeout}
	ctx := context.Background()
	g, err := NewGroup(ctx, fileKV{dir}, "proc", rank, size, opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer g.Close()
	switch mode {
	case "check":
		if err := checkAll(ctx, g, []int{3, 40001}); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	case "big", "big-single-copy": // 16 MiB allreduces (with single copy: process_vm_readv)
		buf := make([]byte, 16<<20)
		for i := range 3 {
			f := typed[float32](buf)
			for j := range f {
				f[j] = float32(rank + j%7 + i)
			}
			if err := g.AllReduce(ctx, buf, Float32, Sum); err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
			for j, v := range f {
				want := float32(size*(j%7+i) + size*(size-1)/2)
				if v != want {
					fmt.Fprintf(os.Stderr, "element %d: %v, want %v\n", j, v, want)
					return 1
				}
			}
		}
	case "loop": // allreduce until something fails; the test kills one rank meanwhile
		buf := make([]byte, 8<<20)
		os.WriteFile(filepath.Join(dir, fmt.Sprintf("running-%d", rank)), nil, 0o600)
		for {
			if err := g.AllReduce(ctx, buf, Float32, Sum); err != nil {
				fmt.Fprintln(os.Stderr, "ERROR:", err)
				return 3
			}
		}
	}
	return 0
}

type rankProc struct {
	cmd    *exec.Cmd
	stderr strings.Builder
	done   chan error
}

func spawnRanks(t *testing.T, n int, mode, backend string, timeout time.Duration, node func(int) string) (string, []*rankProc) {
	t.Helper()
	dir := t.TempDir()
	secret := wire.NewSecret()
	procs := make([]*rankProc, n)
	for r := range n {
		p := &rankProc{done: make(chan error, 1)}
		p.cmd = exec.Command(os.Args[0], "-test.run=^$")
		p.cmd.Env = append(os.Environ(), "SHOAL_SHM_SINGLE_COPY="+map[bool]string{true: "1"}[strings.HasSuffix(mode, "single-copy")], rankEnv+"="+strconv.Itoa(r), "SHOAL_COLL_TEST_SIZE="+strconv.Itoa(n),
			"SHOAL_COLL_TEST_DIR="+dir, "SHOAL_COLL_TEST_MODE="+mode, "SHOAL_COLL_TEST_SECRET="+secret,
			"SHOAL_COLL_TEST_BACKEND="+backend, "SHOAL_COLL_TEST_TIMEOUT="+timeout.String(), "SHOAL_COLL_TEST_NODE="+node(r))
		p.cmd.Stderr = &p.stderr
		if err := p.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { p.done <- p.cmd.Wait() }()
		procs[r] = p
	}
	t.Cleanup(func() {
		for _, p := range procs {
			p.cmd.Process.Kill()
		}
	})
	return dir, procs
}

func TestCollectivesAcrossProcesses(t *testing.T) {
	cases := []struct {
		n       int
		backend string
		nodes   int // ranks are spread over this many node ids (shm inside, tcp across)
		mode    string
	}{{2, "auto", 1, "check"}, {3, "auto", 1, "check"}, {5, "auto", 2, "check"}, {8, "auto", 3, "check"}, {4, "tcp", 1, "check"},
		{2, "shm", 1, "big"}, {3, "shm", 1, "big"}, {3, "shm", 1, "big-single-copy"}}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%d ranks %s on %d nodes %s", c.n, c.backend, c.nodes, c.mode), func(t *testing.T) {
			_, procs := spawnRanks(t, c.n, c.mode, c.backend, 60*time.Second, func(r int) string { return fmt.Sprintf("n%d", r%c.nodes) })
			for r, p := range procs {
				select {
				case err := <-p.done:
					if err != nil {
						t.Errorf("rank %d: %v: %s", r, err, p.stderr.String())
					}
				case <-time.After(5 * time.Minute):
					t.Fatalf("rank %d hangs", r)
				}
			}
		})
	}
}

// A rank killed in the middle of allreduces: every other rank's call fails with an error
// (never a hang), and nothing stays in /dev/shm.
func TestRankKilledMidCollective(t *testing.T) {
	for _, backend := range []string{"shm", "tcp"} {
		t.Run(backend, func(t *testing.T) {
			const n = 3
			dir, procs := spawnRanks(t, n, "loop", backend, 20*time.Second, func(int) string { return "" })
			for r := range n {
				for {
					if _, err := os.Stat(filepath.Join(dir, fmt.Sprintf("running-%d", r))); err == nil {
						break
					}
					select {
					case err := <-procs[r].done:
						t.Fatalf("rank %d ended before the loop: %v: %s", r, err, procs[r].stderr.String())
					case <-time.After(10 * time.Millisecond):
					}
				}
			}
			time.Sleep(200 * time.Millisecond)
			procs[1].cmd.Process.Signal(syscall.SIGKILL)
			var wg sync.WaitGroup
			for _, r := range []int{0, 2} {
				wg.Add(1)
				go func() {
					defer wg.Done()
					select {
					case err := <-procs[r].done:
						ee, ok := err.(*exec.ExitError)
						if !ok || ee.ExitCode() != 3 || !strings.Contains(procs[r].stderr.String(), "ERROR:") {
							t.Errorf("rank %d after rank 1 died: %v, stderr %q; want exit 3 with the collective's error", r, err, procs[r].stderr.String())
						}
						t.Logf("rank %d: %s", r, strings.TrimSpace(procs[r].stderr.String()))
					case <-time.After(2 * time.Minute):
						t.Errorf("rank %d still runs 2 minutes after rank 1 died (the group timeout is 20 s)", r)
					}
				}()
			}
			wg.Wait()
			<-procs[1].done
			left, _ := filepath.Glob("/dev/shm/shoal-proc" + filepath.Base(dir) + "*")
			if len(left) > 0 {
				t.Errorf("left in /dev/shm: %v", left)
			}
		})
	}
}
