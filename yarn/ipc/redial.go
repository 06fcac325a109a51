package ipc

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/hashicorp/go-hclog"
)

// endpoint is a connection to one server and protocol that is dialed again
// when it breaks (a server restart, an idle connection the server dropped) or
// when its token changes.
type endpoint struct {
	mu       sync.Mutex
	addr     string
	protocol string
	token    Token
	min      Protection // refuse a server that negotiates less
	log      hclog.Logger
	c        *conn // nil: dial on the next call
}

func (e *endpoint) dial(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.dialLocked(ctx)
}

func (e *endpoint) dialLocked(ctx context.Context) error {
	if e.c != nil && e.c.usable() {
		return nil
	}
	if e.c != nil {
		e.c.close()
		e.c = nil
	}
	c, err := dial(ctx, e.addr, e.protocol, e.token, e.log)
	if err != nil {
		return err
	}
	if c.prot < e.min {
		c.close()
		return fmt.Errorf("%s negotiated hadoop.rpc.protection=%s, and %s is required: set hadoop.rpc.protection=%s in the cluster's core-site.xml, or drop the requirement",
			e.addr, c.prot, e.min, e.min)
	}
	e.c = c
	return nil
}

// protection is what the current connection negotiated (dialing one if there
// is none).
func (e *endpoint) protection(ctx context.Context) (Protection, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.dialLocked(ctx); err != nil {
		return 0, err
	}
	return e.c.prot, nil
}

// call runs one call. If the connection fails (not a server error, not ctx),
// it dials once more and repeats the call: the YARN calls made here are safe
// to repeat (allocate is deduplicated by its response id).
func (e *endpoint) call(ctx context.Context, method string, req msg) ([]byte, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for try := 0; ; try++ {
		if err := e.dialLocked(ctx); err != nil {
			if try > 0 {
				return nil, fmt.Errorf("reconnect: %w", err)
			}
			return nil, err
		}
		resp, err := e.c.call(ctx, method, req)
		var re *RemoteError
		if err == nil || (errors.As(err, &re) && !re.Fatal) || ctx.Err() != nil || try > 0 {
			return resp, err
		}
		e.log.Warn("connection failed; reconnecting", "method", method, "error", err)
	}
}

// setToken makes the next connection use tok; the current one is closed.
func (e *endpoint) setToken(tok Token) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.token = tok
	if e.c != nil {
		e.c.close()
		e.c = nil
	}
}

func (e *endpoint) currentToken() Token {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.token
}

func (e *endpoint) close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.c == nil {
		return nil
	}
	err := e.c.close()
	e.c = nil
	return err
}
