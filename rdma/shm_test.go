package rdma

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/shoal-hpc/shoal/wire"
)

func TestShm(t *testing.T) {
	dir := t.TempDir()
	for _, single := range []bool{false, true} {
		tr, err := NewShm(ShmConfig{Secret: wire.NewSecret(), Cluster: "test" + filepath.Base(dir), Dir: dir, Ring: 64 << 10, SingleCopy: single})
		if err != nil {
			t.Fatal(err)
		}
		t.Run(map[bool]string{false: "ring", true: "single copy"}[single], func(t *testing.T) { conformance(t, tr) })
	}
	left, _ := os.ReadDir(dir)
	if len(left) != 0 {
		t.Fatalf("the shm transport left %d files in %s: %v", len(left), dir, left)
	}
}

func TestShmWrongSecret(t *testing.T) {
	server, _ := NewShm(ShmConfig{Secret: wire.NewSecret(), Cluster: "wrongsecret"})
	client, _ := NewShm(ShmConfig{Secret: wire.NewSecret(), Cluster: "wrongsecret"})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ln, err := server.Listen(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if _, err := client.Dial(ctx, ln.Addr()); !errors.Is(err, wire.ErrAuth) {
		t.Fatalf("dial with another cluster's secret: %v, want wire.ErrAuth", err)
	}
}

func TestShmBadConfig(t *testing.T) {
	if _, err := NewShm(ShmConfig{Secret: "s", Cluster: "c", Dir: "/nonexistent/dir"}); !errors.Is(err, ErrNotSupported) {
		t.Fatalf("shm in a missing directory: %v, want ErrNotSupported", err)
	}
	if _, err := NewShm(ShmConfig{Secret: "s", Cluster: "c", Ring: 5000}); err == nil {
		t.Fatal("a ring of 5000 bytes was accepted")
	}
}

// A receiver that cannot read the sender's memory (here: a pid that does not exist) answers so,
// and the message comes through the ring instead; later ones skip the attempt.
func TestShmSingleCopyFallback(t *testing.T) {
	tr, _ := NewShm(ShmConfig{Secret: wire.NewSecret(), Cluster: "cmafallback", Ring: 64 << 10, SingleCopy: true})
	a, b := pair(t, tr)
	old := cmaPID
	cmaPID = func() int { return 1 << 30 }
	defer func() { cmaPID = old }()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := range 2 {
		msg := randBytes(1<<20, uint64(i))
		errc := make(chan error, 1)
		go func() { errc <- a.Send(ctx, msg) }()
		got := make([]byte, len(msg))
		if err := b.Recv(ctx, got); err != nil {
			t.Fatal(err)
		}
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
		if string(got) != string(msg) {
			t.Fatalf("message %d differs", i)
		}
		if !a.(*shmConn).cmaOff.Load() {
			t.Fatal("single copy is still on after the receiver could not use it")
		}
	}
}
