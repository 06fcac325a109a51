package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
)

func TestEncodeParseRoundTrip(t *testing.T) {
	id := ID{1, 2, 3}
	b, err := Encode(TPut, 7, &Put{ID: id, Fmt: FmtPython, Data: []byte("hello"), Refs: []ID{{9}}})
	if err != nil {
		t.Fatal(err)
	}
	if n := binary.BigEndian.Uint32(b); int(n) != len(b)-4 {
		t.Fatalf("length prefix %d, frame has %d bytes", n, len(b)-4)
	}
	f, err := ReadFrame(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if f.Type != TPut || f.Seq != 7 {
		t.Fatalf("got type %d seq %d", f.Type, f.Seq)
	}
	var p Put
	if err := f.Decode(&p); err != nil {
		t.Fatal(err)
	}
	if p.ID != id || string(p.Data) != "hello" || len(p.Refs) != 1 || p.Refs[0] != (ID{9}) {
		t.Fatalf("decoded %+v", p)
	}
}

func TestZeroIDTravelsAsNil(t *testing.T) {
	b, _ := Encode(TSubmit, 0, &Task{Name: "f"})
	f, err := ReadFrame(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	var task Task
	if err := f.Decode(&task); err != nil {
		t.Fatal(err)
	}
	if !task.ArgObj.IsZero() || !task.Actor.IsZero() {
		t.Fatalf("zero ids did not survive: %+v", task)
	}
}

func TestCorruptFrames(t *testing.T) {
	frame := func(payload []byte) []byte {
		h := make([]byte, 4)
		binary.BigEndian.PutUint32(h, uint32(len(payload)))
		return append(h, payload...)
	}
	cases := map[string][]byte{
		"length over limit":   {0xff, 0xff, 0xff, 0xff},
		"not an array":        frame([]byte{0xc3}),
		"two elements":        frame([]byte{0x92, 0x01, 0x02}),
		"type not an integer": frame([]byte{0x93, 0xa1, 'x', 0x00, 0xc0}),
		"type too large":      frame([]byte{0x93, 0xcd, 0x01, 0x00, 0x00, 0xc0}),
		"negative seq":        frame([]byte{0x93, 0x01, 0xff, 0xc0}),
		"trailing bytes":      frame([]byte{0x93, 0x01, 0x00, 0xc0, 0x00}),
		"truncated body":      frame([]byte{0x93, 0x01, 0x00, 0xdb, 0x00, 0x00, 0x00, 0x09, 'a'}),
		"reserved byte":       frame([]byte{0xc1, 0xc1, 0xc1}),
	}
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := ReadFrame(bytes.NewReader(b))
			if !errors.Is(err, ErrCorruptFrame) {
				t.Fatalf("got %v, want ErrCorruptFrame", err)
			}
		})
	}
	t.Run("short read", func(t *testing.T) {
		_, err := ReadFrame(bytes.NewReader([]byte{0, 0, 0, 9, 0x93}))
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("got %v, want unexpected EOF", err)
		}
	})
}

func TestHandshake(t *testing.T) {
	const secret = "s3cret"
	serve := func(ln net.Listener, errs chan<- error) {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				c, _, err := Accept(nc, secret, "c1", func(a *Auth) (*Welcome, error) {
					return &Welcome{Node: "n1", Client: []byte("12345678")}, nil
				})
				errs <- err
				if c != nil {
					c.Close()
				}
			}()
		}
	}
	dir := t.TempDir()
	ln, err := net.Listen("unix", dir+"/s.sock")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	errs := make(chan error, 4)
	go serve(ln, errs)
	addr := "unix:" + dir + "/s.sock"

	c, w, err := Dial(addr, secret, Auth{Role: "cli"})
	if err != nil {
		t.Fatalf("right secret refused: %v", err)
	}
	c.Close()
	if w.Node != "n1" || <-errs != nil {
		t.Fatalf("welcome %+v", w)
	}

	_, _, err = Dial(addr, "wrong", Auth{Role: "cli"})
	if !errors.Is(err, ErrAuth) || !strings.Contains(err.Error(), "wrong secret") {
		t.Fatalf("wrong secret: got %v, want ErrAuth naming the wrong secret", err)
	}
	if err := <-errs; !errors.Is(err, ErrAuth) {
		t.Fatalf("server side: got %v, want ErrAuth", err)
	}
}

func TestSplitAddr(t *testing.T) {
	for in, want := range map[string]string{"unix:/a/b": "unix /a/b", "tcp:1.2.3.4:5": "tcp 1.2.3.4:5"} {
		n, a, err := SplitAddr(in)
		if err != nil || n+" "+a != want {
			t.Errorf("SplitAddr(%q) = %q %q %v", in, n, a, err)
		}
	}
	if _, _, err := SplitAddr("http://x"); err == nil {
		t.Error("SplitAddr accepted http://x")
	}
}

// FuzzParseFrame: no input makes the decoder panic, and what it accepts re-encodes to a frame
// that parses to the same type, sequence number and body.
func FuzzParseFrame(f *testing.F) {
	for _, body := range []any{&Put{ID: ID{1}, Data: []byte("x")}, &Get{IDs: []ID{{2}}, TimeoutMS: -1}, nil, &Task{Name: "f", Nret: 2}} {
		b, _ := Encode(TGet, 3, body)
		f.Add(b[4:])
	}
	f.Add([]byte{0x93, 0x01, 0x00, 0xc0, 0x00})
	f.Add([]byte{0xc1})
	f.Fuzz(func(t *testing.T, payload []byte) {
		fr, err := ParseFrame(payload)
		if err != nil {
			if !errors.Is(err, ErrCorruptFrame) {
				t.Fatalf("error %v does not wrap ErrCorruptFrame", err)
			}
			return
		}
		var anyBody any
		if err := fr.Decode(&anyBody); err != nil {
			return
		}
		for _, v := range []any{&Task{}, &Put{}, &Get{}, &Done{}, &Auth{}} {
			fr.Decode(v) // must not panic
		}
	})
}

func TestProofBindsEveryField(t *testing.T) {
	c, s, b := NewNonce(), NewNonce(), []byte("binding")
	p := Proof("secret", "shoal/2 client", c, s, b)
	if !CheckProof("secret", "shoal/2 client", c, s, b, p) {
		t.Fatal("a proof does not check against its own arguments")
	}
	for name, ok := range map[string]bool{
		"other secret":       CheckProof("secret2", "shoal/2 client", c, s, b, p),
		"other label":        CheckProof("secret", "shoal/2 server", c, s, b, p),
		"other client nonce": CheckProof("secret", "shoal/2 client", NewNonce(), s, b, p),
		"other server nonce": CheckProof("secret", "shoal/2 client", c, NewNonce(), b, p),
		"other binding":      CheckProof("secret", "shoal/2 client", c, s, []byte("bindinh"), p),
		"fields shifted":     CheckProof("secret", "shoal/2 client", append(c, s[0]), s[1:], b, p),
	} {
		if ok {
			t.Errorf("%s: proof accepted", name)
		}
	}
}
