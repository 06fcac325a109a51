package wire

import (
	"errors"
	"net"
	"time"
)

// AcceptBackoff accepts the next connection on ln. An error that a flood or a busy node causes
// (too many open files, a connection reset before it was accepted) is waited out, with a
// back-off from 5 ms to 1 s, instead of ending the caller's accept loop: a loop that stopped on
// it would let any peer that can reach the port close the listener for good. onErr, when not
// nil, sees each such error (once per spell, so a flood does not flood the log). It returns an
// error only when ln was closed (wrapping net.ErrClosed).
func AcceptBackoff(ln net.Listener, onErr func(error)) (net.Conn, error) {
	delay := time.Duration(0)
	for {
		nc, err := ln.Accept()
		if err == nil {
			return nc, nil
		}
		if errors.Is(err, net.ErrClosed) {
			return nil, err
		}
		if delay == 0 {
			delay = 5 * time.Millisecond
			if onErr != nil {
				onErr(err)
			}
		} else if delay *= 2; delay > time.Second {
			delay = time.Second
		}
		time.Sleep(delay)
	}
}
