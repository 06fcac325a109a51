package nccl

import (
	"context"
	"fmt"
	"time"
)

// KVStore is the cluster's rendezvous store as the Go SDK's client offers it
// (client.Client's KVPut and KVGet).
type KVStore interface {
	KVPut(ctx context.Context, key string, value []byte) (host string, err error)
	KVGet(ctx context.Context, key string, wait time.Duration) (value []byte, ok bool, err error)
}

// FromKV makes a Rendezvous of the cluster's key-value store. Get waits up to wait for rank 0
// to put the id (less when ctx ends first).
func FromKV(kv KVStore, wait time.Duration) Rendezvous { return kvRendezvous{kv, wait} }

type kvRendezvous struct {
	kv   KVStore
	wait time.Duration
}

func (r kvRendezvous) Put(ctx context.Context, key string, value []byte) error {
	_, err := r.kv.KVPut(ctx, key, value)
	return err
}

func (r kvRendezvous) Get(ctx context.Context, key string) ([]byte, error) {
	v, ok, err := r.kv.KVGet(ctx, key, r.wait)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("key %q not put within %s: is rank 0 running?", key, r.wait)
	}
	return v, nil
}
