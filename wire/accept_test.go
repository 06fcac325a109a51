package wire

import (
	"errors"
	"net"
	"syscall"
	"testing"
)

// failingListener fails its first n Accepts with err, then hands out one end of a pipe.
type failingListener struct {
	net.Listener
	n      int
	err    error
	closed bool
}

func (l *failingListener) Accept() (net.Conn, error) {
	if l.closed {
		return nil, net.ErrClosed
	}
	if l.n > 0 {
		l.n--
		return nil, l.err
	}
	a, _ := net.Pipe()
	return a, nil
}

func TestAcceptBackoffOutlastsTransientErrors(t *testing.T) {
	emfile := &net.OpError{Op: "accept", Net: "tcp", Err: syscall.EMFILE}
	l := &failingListener{n: 4, err: emfile}
	seen := 0
	nc, err := AcceptBackoff(l, func(error) { seen++ })
	if err != nil {
		t.Fatalf("AcceptBackoff after %d EMFILE: %v (a flood must not end the accept loop)", 4, err)
	}
	nc.Close()
	if seen != 1 {
		t.Errorf("onErr called %d times for one spell of errors, want 1", seen)
	}
	l.closed = true
	if _, err := AcceptBackoff(l, nil); !errors.Is(err, net.ErrClosed) {
		t.Errorf("AcceptBackoff on a closed listener: %v, want net.ErrClosed", err)
	}
}
