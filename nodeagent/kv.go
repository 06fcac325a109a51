package nodeagent

import (
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/shoal-hpc/shoal/wire"
)

// The rendezvous store (KV_PUT, KV_GET, KV_DELETE): collective groups publish their listener
// addresses here and wait for each other's. It is kept apart from the agent's main lock (a.mu)
// so that a GET waiting for a key never holds up scheduling. The stores are found by agent
// (one per Agent value) rather than a field of Agent, which keeps this feature in this file.
var kvStores sync.Map // *Agent -> *kvStore

const kvMaxKeys = 100000

type kvWaiter struct {
	c     *client
	seq   uint64
	timer *time.Timer
}

type kvStore struct {
	mu      sync.Mutex
	vals    map[string][]byte
	waiters map[string][]*kvWaiter
}

func (a *Agent) kv() *kvStore {
	if s, ok := kvStores.Load(a); ok {
		return s.(*kvStore)
	}
	s, _ := kvStores.LoadOrStore(a, &kvStore{vals: map[string][]byte{}, waiters: map[string][]*kvWaiter{}})
	return s.(*kvStore)
}

// peerHost is c's host as this agent sees it.
func (a *Agent) peerHost(c *client) string {
	if c.remote {
		if h, _, err := net.SplitHostPort(c.conn.Net().RemoteAddr().String()); err == nil {
			return h
		}
	}
	if t := strings.TrimPrefix(a.TCPAddr(), "tcp:"); t != "" {
		if h, _, err := net.SplitHostPort(t); err == nil && h != "0.0.0.0" && h != "::" {
			return h
		}
	}
	return "127.0.0.1"
}

func checkKey(k string) error {
	if k == "" || len(k) > wire.KVMaxKey {
		return fmt.Errorf("kv key of %d bytes: want 1 to %d bytes", len(k), wire.KVMaxKey)
	}
	return nil
}

func (a *Agent) handleKV(c *client, f wire.Frame) error {
	s := a.kv()
	switch f.Type {
	case wire.TKVPut:
		var m wire.KVPut
		if err := f.Decode(&m); err != nil {
			return err
		}
		if err := checkKey(m.Key); err != nil {
			return err
		}
		if len(m.Value) > wire.KVMaxValue {
			return fmt.Errorf("kv value for %q is %d bytes, over the %d-byte limit", m.Key, len(m.Value), wire.KVMaxValue)
		}
		s.mu.Lock()
		_, had := s.vals[m.Key]
		if !had && len(s.vals) >= kvMaxKeys {
			s.mu.Unlock()
			return fmt.Errorf("kv store is full (%d keys); delete keys that are no longer needed", kvMaxKeys)
		}
		s.vals[m.Key] = m.Value
		ws := s.waiters[m.Key]
		delete(s.waiters, m.Key)
		s.mu.Unlock()
		for _, w := range ws {
			if w.timer.Stop() {
				w.c.conn.Send(wire.TKVReply, w.seq, &wire.KVReply{Found: true, Value: m.Value, Peer: a.peerHost(w.c)})
			}
		}
		return c.conn.Send(wire.TKVReply, f.Seq, &wire.KVReply{Found: had, Peer: a.peerHost(c)})
	case wire.TKVGet:
		var m wire.KVGet
		if err := f.Decode(&m); err != nil {
			return err
		}
		if err := checkKey(m.Key); err != nil {
			return err
		}
		if m.WaitMs < 0 || m.WaitMs > wire.KVMaxWait {
			return fmt.Errorf("kv get %q: wait of %d ms: want 0 to %d", m.Key, m.WaitMs, wire.KVMaxWait)
		}
		s.mu.Lock()
		v, ok := s.vals[m.Key]
		if ok || m.WaitMs == 0 {
			s.mu.Unlock()
			return c.conn.Send(wire.TKVReply, f.Seq, &wire.KVReply{Found: ok, Value: v, Peer: a.peerHost(c)})
		}
		w := &kvWaiter{c: c, seq: f.Seq}
		key := m.Key
		w.timer = time.AfterFunc(time.Duration(m.WaitMs)*time.Millisecond, func() {
			s.mu.Lock()
			ws := s.waiters[key]
			for i, x := range ws {
				if x == w {
					ws = append(ws[:i], ws[i+1:]...)
					break
				}
			}
			if len(ws) == 0 {
				delete(s.waiters, key)
			} else {
				s.waiters[key] = ws
			}
			s.mu.Unlock()
			c.conn.Send(wire.TKVReply, f.Seq, &wire.KVReply{Found: false, Peer: a.peerHost(c)})
		})
		s.waiters[key] = append(s.waiters[key], w)
		s.mu.Unlock()
		return nil
	case wire.TKVDelete:
		var m wire.KVKey
		if err := f.Decode(&m); err != nil {
			return err
		}
		s.mu.Lock()
		_, had := s.vals[m.Key]
		delete(s.vals, m.Key)
		s.mu.Unlock()
		return c.conn.Send(wire.TKVReply, f.Seq, &wire.KVReply{Found: had, Peer: a.peerHost(c)})
	}
	return fmt.Errorf("[internal error] kv handler got message type %d", f.Type)
}
