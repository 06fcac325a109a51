package wire

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

var updateSeeds = flag.Bool("update-seeds", false, "rewrite the committed fuzz seed corpora under testdata/fuzz")

// sampleBodies holds one realistic body of every message type with one.
func sampleBodies() map[Type]any {
	id := ID{1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 1, 0, 0, 0, 0}
	obj := Obj{ID: id, Fmt: FmtPython, Path: "/dev/shm/shoal-0123456789ab/arena", Offset: 4096, Size: 1 << 20}
	task := &Task{Task: id, Name: "f", Lang: "python", Args: []byte{0x90}, Deps: []ID{id}, Nret: 1,
		Res: map[string]float64{"CPU": 1}, Depv: []Obj{obj}, GPUs: []int{0}}
	return map[Type]any{
		TError:      &Error{Code: "auth", Msg: "authentication failed"},
		THello:      &Hello{Proto: Proto, Nonce: bytes.Repeat([]byte{7}, NonceSize), Cluster: "0123456789ab"},
		TAuth:       &Auth{Proto: Proto, Nonce: bytes.Repeat([]byte{8}, NonceSize), Proof: bytes.Repeat([]byte{9}, 32), Role: "driver", Lang: "python", PID: 42, Path: []string{"/home/u"}, Cwd: "/home/u"},
		TWelcome:    &Welcome{Node: "n1", Client: []byte("12345678"), Proof: bytes.Repeat([]byte{9}, 32), Arena: "/dev/shm/x", ArenaSize: 1 << 30, Resources: map[string]float64{"CPU": 4}},
		TPut:        &Put{ID: id, Fmt: FmtRaw, Data: []byte("x"), Refs: []ID{id}},
		TPutPart:    &PutPart{ID: id, Fmt: FmtPython, Size: 3 << 20, Refs: []ID{id}, Off: 1 << 20, Data: []byte("part"), Last: true},
		TReadPart:   &ReadPart{ID: id, Off: 1 << 20, Len: 1 << 20},
		TCreate:     &Create{ID: id, Fmt: FmtRaw, Size: 1 << 20},
		TSeal:       &One{ID: id},
		TGet:        &Get{IDs: []ID{id}, TimeoutMS: -1},
		TWait:       &Wait{IDs: []ID{id}, Num: 1, TimeoutMS: 100},
		TDecref:     &IDs{IDs: []ID{id, {}}},
		TReady:      &Ready{Objs: []Obj{obj}},
		TSubmit:     task,
		TKill:       &Kill{Actor: id, NoRestart: true},
		TActorExit:  &ActorExit{Why: "exit_actor() was called"},
		TGetActor:   &GetActor{Name: "a", NS: "ns"},
		TDone:       &Done{Task: id, Rets: []Ret{{ID: id, Fmt: FmtRaw, Data: []byte("r")}}},
		TPGCreate:   &PGCreate{PG: id, Bundles: []map[string]float64{{"CPU": 1}}, Strategy: "PACK"},
		TNodeJoin:   &NodeJoin{Node: "n2", Addr: "10.0.0.2", Resources: map[string]float64{"CPU": 8}, GPUs: []int{0, 1}, Devices: []GPU{{Index: 0, CPUs: []int{0, 1}}}},
		TSpawn:      &Spawn{Worker: "j1-w1", Argv: []string{"/usr/bin/python3", "-m", "shoal._worker"}, Env: []string{"SHOAL_WORKER_ID=j1-w1"}, GPUs: []int{1}},
		TWorkerExit: &WorkerExit{Worker: "j1-w1", Msg: "exited"},
		TStop:       &Stop{Code: 1, Msg: "stop"},
		TKVPut:      &KVPut{Key: "k", Value: []byte("v")},
		TKVGet:      &KVGet{Key: "k", WaitMs: 10},
		TKVDelete:   &KVKey{Key: "k"},
		TKVReply:    &KVReply{Found: true, Value: []byte("v"), Peer: "10.0.0.1"},
		TFetch:      &Fetch{ID: id, Size: 10, Loc: "tcp:10.0.0.2:1"},
		TPutAt:      &PutAt{ID: id, Size: 10, Loc: "tcp:10.0.0.2:1"},
		TNodeStore:  &NodeStore{Loc: "tcp:10.0.0.2:1"},
		TGenItem:    &GenItem{Task: id, Index: 3, Ret: Ret{ID: id, Fmt: FmtPython, Data: []byte("x")}},
		TTaskCancel: &TaskCancel{Task: id},
		TMemLimit:   &MemLimit{Worker: "j1-w1", Bytes: 64 << 20, Task: "hog", IntervalMs: 250},
		// member-local scheduling (local.go)
		TLocalSubmit:  task,
		TLeaseNext:    &LeaseNext{Lease: id, Done: &Done{Task: id, Rets: []Ret{{ID: id, Fmt: FmtPython, Stored: true, Size: 1 << 20}}}},
		TExpect:       &Expect{IDs: []ID{id}, Node: "n2"},
		TLeaseRequest: &LeaseRequest{Job: "0123abcd-0001", N: 2},
		TLocalDone:    &LocalDone{Rets: []LocalRet{{ID: id, Fmt: FmtPython, Data: []byte("v"), Owner: "j1-w1"}}, Tasks: []LocalTask{{Task: id, Name: "f", Job: "j", Worker: "j1-w2", Failed: "raised"}}},
		TLocalGet:     &LocalGet{IDs: []ID{id}, TimeoutMS: 50},
		TBlock:        &Block{On: true},
		TLocalCancel:  &LocalCancel{Task: id, Force: true, Recursive: true},
		TLocalForget:  &IDs{IDs: []ID{id}},
		TLeaseFailed:  &LeaseFailed{Job: "0123abcd-0001", Kind: "worker_start_failed", Msg: "3 worker processes in a row failed to start"},
		TLocalSpill:   &LocalSpill{Job: "0123abcd-0001", Tasks: []Task{*task}, Owners: []string{"j1-w1"}},
	}
}

// TestBodyCoversEveryType: every message type with a sample body decodes into Body's value.
func TestBodyCoversEveryType(t *testing.T) {
	for typ, body := range sampleBodies() {
		b, err := Encode(typ, 1, body)
		if err != nil {
			t.Fatal(err)
		}
		f, err := ParseFrame(b[4:])
		if err != nil {
			t.Fatal(err)
		}
		v := Body(typ)
		if v == nil {
			t.Fatalf("Body(%d) is nil", typ)
		}
		if err := f.Decode(v); err != nil {
			t.Fatalf("type %d: %v", typ, err)
		}
	}
}

// FuzzDecodeBody: no body makes the decoder of any message type panic; a failure wraps
// ErrCorruptFrame (the agent closes that connection only).
func FuzzDecodeBody(f *testing.F) {
	for typ, body := range sampleBodies() {
		b, _ := Encode(typ, 0, body)
		fr, _ := ParseFrame(b[4:])
		f.Add(uint8(typ), fr.Body)
	}
	f.Fuzz(func(t *testing.T, typ uint8, body []byte) {
		v := Body(Type(typ))
		if v == nil {
			return
		}
		if err := (Frame{Type: Type(typ), Body: body}).Decode(v); err != nil && !errors.Is(err, ErrCorruptFrame) {
			t.Fatalf("error %v does not wrap ErrCorruptFrame", err)
		}
	})
}

// FuzzReadFrame: the frame reader, with the limit before authentication and without, never
// panics, reads no further than the frame and answers a clean error.
func FuzzReadFrame(f *testing.F) {
	for typ, body := range sampleBodies() {
		b, _ := Encode(typ, 5, body)
		f.Add(b)
	}
	f.Add([]byte{0x10, 0, 0, 0, 0x93})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, max := range []uint32{PreAuthMax, MaxFrame} {
			r := bytes.NewReader(data)
			fr, err := ReadFrameLimit(r, max)
			if err != nil {
				if !errors.Is(err, ErrCorruptFrame) && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Fatalf("error %v is neither a corrupt frame nor a short read", err)
				}
				continue
			}
			if used := len(data) - r.Len(); used > int(max)+4 {
				t.Fatalf("read %d bytes for a frame of at most %d", used, max)
			}
			if v := Body(fr.Type); v != nil {
				fr.Decode(v)
			}
		}
	})
}

// pipeTo runs fn on one end of a pipe while the other end reads what fn writes and writes
// data (once the first frame arrived); it returns when fn does.
func pipeTo(data []byte, fn func(nc net.Conn)) {
	a, b := net.Pipe()
	go func() {
		defer b.Close()
		b.SetDeadline(time.Now().Add(2 * time.Second))
		go io.Copy(io.Discard, b)
		b.Write(data)
	}()
	fn(a)
	a.Close()
}

// FuzzAccept: whatever an unauthenticated client sends, the server's handshake ends with an
// error (or, only for a right proof, a connection), never a panic.
func FuzzAccept(f *testing.F) {
	good, _ := Encode(TAuth, 0, sampleBodies()[TAuth])
	f.Add(good)
	f.Add([]byte{0, 0, 0x40, 0x01})
	f.Add([]byte{0x16, 0x03, 0x01, 0x00, 0x10}) // a TLS record on a plain socket
	old := handshakeTimeout
	handshakeTimeout = time.Second
	defer func() { handshakeTimeout = old }()
	f.Fuzz(func(t *testing.T, data []byte) {
		pipeTo(data, func(nc net.Conn) {
			c, _, err := Accept(nc, testSecret, "c1", func(*Auth) (*Welcome, error) { return &Welcome{}, nil })
			if err == nil {
				c.Close()
				t.Fatal("an unauthenticated client was accepted")
			}
		})
	})
}

// FuzzClientHandshake: whatever a server that does not know the secret sends, the client's
// handshake fails cleanly.
func FuzzClientHandshake(f *testing.F) {
	hello, _ := Encode(THello, 0, sampleBodies()[THello])
	welcome, _ := Encode(TWelcome, 0, sampleBodies()[TWelcome])
	errFrame, _ := Encode(TError, 0, sampleBodies()[TError])
	f.Add(append(bytes.Clone(hello), welcome...))
	f.Add(append(bytes.Clone(hello), errFrame...))
	f.Add([]byte{0x10, 0, 0, 0})
	old := handshakeTimeout
	handshakeTimeout = time.Second
	defer func() { handshakeTimeout = old }()
	f.Fuzz(func(t *testing.T, data []byte) {
		pipeTo(data, func(nc net.Conn) {
			c, _, err := ClientHandshake(nc, "unix:/fuzz", testSecret, Auth{Role: "cli"})
			if err == nil {
				c.Close()
				t.Fatal("a server that does not know the secret was believed")
			}
		})
	})
}

// TestWriteFuzzSeeds rewrites the committed seed corpora (go test ./wire -run WriteFuzzSeeds
// -update-seeds), so that `go test` replays them even where the code's seeds change.
func TestWriteFuzzSeeds(t *testing.T) {
	if !*updateSeeds {
		t.Skip("run with -update-seeds to rewrite testdata/fuzz")
	}
	write := func(target, name string, lines ...string) {
		dir := filepath.Join("testdata", "fuzz", target)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		s := "go test fuzz v1\n"
		for _, l := range lines {
			s += l + "\n"
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	q := func(b []byte) string { return "[]byte(" + strconv.Quote(string(b)) + ")" }
	for typ, body := range sampleBodies() {
		b, _ := Encode(typ, 5, body)
		fr, _ := ParseFrame(b[4:])
		write("FuzzDecodeBody", fmt.Sprintf("seed-type-%d", typ), fmt.Sprintf("uint8(%d)", typ), q(fr.Body))
		write("FuzzReadFrame", fmt.Sprintf("seed-type-%d", typ), q(b))
	}
	write("FuzzReadFrame", "seed-256mib-length", q([]byte{0x10, 0, 0, 0, 0x93}))
	write("FuzzReadFrame", "seed-over-preauth", q([]byte{0, 0, 0x40, 0x01, 0x93, 0x02, 0x00, 0xc0}))
	auth, _ := Encode(TAuth, 0, sampleBodies()[TAuth])
	write("FuzzAccept", "seed-auth-wrong-proof", q(auth))
	write("FuzzAccept", "seed-oversized", q([]byte{0x10, 0, 0, 0}))
	write("FuzzAccept", "seed-tls-on-plain", q([]byte{0x16, 0x03, 0x01, 0x00, 0x10}))
	hello, _ := Encode(THello, 0, sampleBodies()[THello])
	welcome, _ := Encode(TWelcome, 0, sampleBodies()[TWelcome])
	write("FuzzClientHandshake", "seed-replayed-welcome", q(append(bytes.Clone(hello), welcome...)))
	write("FuzzClientHandshake", "seed-oversized-hello", q([]byte{0x10, 0, 0, 0}))
}
