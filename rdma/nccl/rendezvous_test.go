package nccl_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/shoal-hpc/shoal/client"
	"github.com/shoal-hpc/shoal/rdma/nccl"
)

// The cluster's KV client (the head's rendezvous store) is what carries rank 0's unique id.
var _ nccl.KVStore = (*client.Client)(nil)

type oneKey struct{ k, v string }

func (o *oneKey) KVPut(_ context.Context, k string, v []byte) (string, error) {
	o.k, o.v = k, string(v)
	return "10.0.0.1", nil
}

func (o *oneKey) KVGet(_ context.Context, k string, _ time.Duration) ([]byte, bool, error) {
	if k != o.k {
		return nil, false, nil
	}
	return []byte(o.v), true, nil
}

func TestFromKV(t *testing.T) {
	kv := &oneKey{}
	rv := nccl.FromKV(kv, 10*time.Millisecond)
	ctx := context.Background()
	if err := rv.Put(ctx, "job/nccl", []byte("id")); err != nil {
		t.Fatal(err)
	}
	if v, err := rv.Get(ctx, "job/nccl"); err != nil || string(v) != "id" {
		t.Fatalf("get: %q %v", v, err)
	}
	if _, err := rv.Get(ctx, "other"); err == nil || !strings.Contains(err.Error(), "rank 0") {
		t.Fatalf("get of a key never put: %v, want an error naming rank 0", err)
	}
}
