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
	tr, err := NewShm(ShmConfig{Secret: wire.NewSecret(), Cluster: "test" + filepath.Base(dir), Dir: dir, Ring: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	conformance(t, tr)
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
