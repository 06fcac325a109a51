package client

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/shoal-hpc/shoal/wire"
)

// DialKV connects to the agent at addr with secret for the rendezvous store only (role "cli":
// no job, no worker). Collective groups use it to find their ranks; close it when done.
func DialKV(log hclog.Logger, addr, secret string) (*Client, error) {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	return dial(log, addr, secret, "cli", "")
}

// KVPut stores value under key in the cluster's rendezvous store (kept by the head node's
// agent) and returns this process's host as that agent sees it: an address on which ranks on
// other nodes can reach this one.
func (c *Client) KVPut(ctx context.Context, key string, value []byte) (host string, err error) {
	var r wire.KVReply
	if err := c.request(ctx, wire.TKVPut, &wire.KVPut{Key: key, Value: value}, &r); err != nil {
		return "", fmt.Errorf("kv put %q: %w", key, err)
	}
	return r.Peer, nil
}

// KVGet returns key's value, waiting up to wait for another process to put it (the wait ends
// early when ctx does). ok is false when the key was still absent after the wait.
func (c *Client) KVGet(ctx context.Context, key string, wait time.Duration) (value []byte, ok bool, err error) {
	if dl, has := ctx.Deadline(); has {
		wait = min(wait, time.Until(dl))
	}
	wait = max(wait, 0)
	var r wire.KVReply
	if err := c.request(ctx, wire.TKVGet, &wire.KVGet{Key: key, WaitMs: min(wait.Milliseconds(), wire.KVMaxWait)}, &r); err != nil {
		return nil, false, fmt.Errorf("kv get %q: %w", key, err)
	}
	return r.Value, r.Found, nil
}

// KVDelete removes key; it reports whether the key was there.
func (c *Client) KVDelete(ctx context.Context, key string) (bool, error) {
	var r wire.KVReply
	if err := c.request(ctx, wire.TKVDelete, &wire.KVKey{Key: key}, &r); err != nil {
		return false, fmt.Errorf("kv delete %q: %w", key, err)
	}
	return r.Found, nil
}
