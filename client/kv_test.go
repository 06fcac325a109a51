package client_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/shoal-hpc/shoal/client"
)

const kvEnv = "SHOAL_GOSDK_TEST_KV"

// TestKVInCluster runs itself as the driver of a real `shoal run` cluster and uses the agent's
// rendezvous store the way collective groups do.
func TestKVInCluster(t *testing.T) {
	if os.Getenv(kvEnv) == "" {
		shoal, _ := binaries(t)
		cmd := exec.Command(shoal, "run", "--", os.Args[0], "-test.run=^TestKVInCluster$", "-test.v")
		cmd.Env = append(os.Environ(), kvEnv+"=1")
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "--- PASS: TestKVInCluster") {
			t.Fatalf("shoal run: %v\n%s", err, out)
		}
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := client.DialKV(nil, os.Getenv("SHOAL_ADDRESS"), os.Getenv("SHOAL_SECRET"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, ok, err := c.KVGet(ctx, "coll/t/0", 0); err != nil || ok {
		t.Fatalf("get of a key nobody put: ok=%v err=%v", ok, err)
	}
	// a get that waits is answered by a later put, from another connection
	got := make(chan []byte, 1)
	go func() {
		v, ok, err := c.KVGet(ctx, "coll/t/1", 20*time.Second)
		if err != nil || !ok {
			t.Errorf("waiting get: ok=%v err=%v", ok, err)
		}
		got <- v
	}()
	// meanwhile the same connection still answers other requests
	host, err := c.KVPut(ctx, "coll/t/other", []byte("x"))
	if err != nil || host == "" {
		t.Fatalf("put while a get waits: host=%q err=%v", host, err)
	}
	select {
	case v := <-got:
		t.Fatalf("the waiting get returned %q before anyone put its key", v)
	default:
	}
	c2, err := client.DialKV(nil, os.Getenv("SHOAL_ADDRESS"), os.Getenv("SHOAL_SECRET"))
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if _, err := c2.KVPut(ctx, "coll/t/1", []byte("tcp:10.0.0.1:4000")); err != nil {
		t.Fatal(err)
	}
	if v := <-got; !bytes.Equal(v, []byte("tcp:10.0.0.1:4000")) {
		t.Fatalf("waiting get got %q", v)
	}
	if had, err := c.KVDelete(ctx, "coll/t/1"); err != nil || !had {
		t.Fatalf("delete: had=%v err=%v", had, err)
	}
	if _, ok, _ := c.KVGet(ctx, "coll/t/1", 0); ok {
		t.Fatal("the key is still there after delete")
	}
	if _, err := c.KVPut(ctx, "coll/t/big", make([]byte, 65<<10)); err == nil || !strings.Contains(err.Error(), "limit") {
		t.Fatalf("put of 65 KiB: %v, want an error about the limit", err)
	}
	if _, ok, err := c.KVGet(ctx, "coll/t/never", 100*time.Millisecond); err != nil || ok {
		t.Fatalf("a wait that ends: ok=%v err=%v", ok, err)
	}
}
