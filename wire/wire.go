// Package wire is shoal's one versioned wire protocol: length-prefixed MessagePack frames,
// the handshake that proves both ends know the cluster's secret, and the message bodies that
// the agent, the Go SDK and the Python SDK exchange. docs/protocol.md is its specification;
// this package must match it.
//
// Frame decoding never panics on hostile input: a bad frame is an error wrapping
// ErrCorruptFrame, and the caller closes only that connection.
package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/vmihailenco/msgpack/v5"
)

// Proto is the protocol version spoken by this build. Version 2: TLS on TCP, and a handshake
// in which both proofs cover both nonces and the TLS channel binding. Version 3: the messages of
// the Ray API's depth (actors' exit and cancel, generators, the state API, remote drivers' parts,
// memory limits, per-node logs) and a member's node figures on its HEARTBEAT (NODE_STATS gone).
const Proto = 3

// MaxFrame is the largest frame payload accepted, in bytes.
const MaxFrame = 256 << 20

// InlineMax is the size under which objects travel inside messages instead of the arena.
const InlineMax = 100 << 10

// Type identifies a message.
type Type uint8

// Message types; see docs/protocol.md.
const (
	TError    Type = 0
	THello    Type = 1
	TAuth     Type = 2
	TWelcome  Type = 3
	TOK       Type = 4
	TPut      Type = 10
	TCreate   Type = 11
	TSeal     Type = 12
	TGet      Type = 13
	TWait     Type = 14
	TDecref   Type = 15
	TIncref   Type = 16
	TRelease  Type = 17
	TReady    Type = 18
	TSubmit   Type = 20
	TKill     Type = 21
	TGetActor Type = 22
	TCancel   Type = 23
	TExec     Type = 30
	TDone     Type = 31
	// actors (docs/ray-actors.md): a worker's actor exits on purpose (exit_actor,
	// __ray_terminate__); the agent asks an actor to end gracefully (its last handle is gone)
	TActorExit Type = 32
	TTerminate Type = 33
	TInfo      Type = 40
	TPGCreate  Type = 41
	TPGRemove  Type = 42
	TShutdown  Type = 50
	// objects in parts, for drivers outside the allocation (nodeagent/remote_driver.go)
	TPutPart  Type = 51
	TReadPart Type = 52
	// between the head node's agent and the member agents of other nodes
	TNodeJoin   Type = 60
	TSpawn      Type = 61
	TWorkerExit Type = 62
	TKillWorker Type = 63
	TStop       Type = 64
)

// ErrCorruptFrame is wrapped by every error about a frame that does not follow the protocol.
var ErrCorruptFrame = errors.New("corrupt frame")

// Frame is one decoded frame. Body holds the raw MessagePack of the body, to be decoded with
// Decode into the struct that Type names.
type Frame struct {
	Type Type
	Seq  uint64
	Body []byte
}

// Decode unmarshals the frame body into v.
func (f Frame) Decode(v any) error {
	if err := msgpack.Unmarshal(f.Body, v); err != nil {
		return fmt.Errorf("%w: decode body of message type %d: %v", ErrCorruptFrame, f.Type, err)
	}
	return nil
}

// Encode returns the whole frame (length prefix included) for a message.
func Encode(t Type, seq uint64, body any) ([]byte, error) {
	var buf bytes.Buffer
	buf.Write([]byte{0, 0, 0, 0})
	enc := msgpack.GetEncoder()
	defer msgpack.PutEncoder(enc)
	enc.Reset(&buf)
	enc.UseCompactInts(true)
	if err := enc.EncodeArrayLen(3); err != nil {
		return nil, err
	}
	if err := enc.EncodeUint(uint64(t)); err != nil {
		return nil, err
	}
	if err := enc.EncodeUint(seq); err != nil {
		return nil, err
	}
	if err := enc.Encode(body); err != nil {
		return nil, fmt.Errorf("encode message type %d: %w", t, err)
	}
	b := buf.Bytes()
	n := len(b) - 4
	if n > MaxFrame {
		return nil, fmt.Errorf("encode message type %d: %d bytes is over the %d-byte frame limit", t, n, MaxFrame)
	}
	binary.BigEndian.PutUint32(b, uint32(n))
	return b, nil
}

// ReadFrame reads one frame from r.
func ReadFrame(r io.Reader) (Frame, error) { return ReadFrameLimit(r, MaxFrame) }

// ReadFrameLimit reads one frame from r whose payload is at most max bytes. The length is
// checked before the payload is allocated, and r is read no further than the frame's end.
func ReadFrameLimit(r io.Reader, max uint32) (Frame, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return Frame{}, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > max {
		return Frame{}, fmt.Errorf("%w: length %d is over the %d-byte limit (is the peer speaking the shoal protocol?)", ErrCorruptFrame, n, max)
	}
	payload := make([]byte, n)
	if _, err := io.ReadFull(r, payload); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return Frame{}, fmt.Errorf("read frame of %d bytes: %w", n, err)
	}
	return ParseFrame(payload)
}

// ParseFrame decodes a frame payload (without its length prefix).
func ParseFrame(payload []byte) (Frame, error) {
	br := bytes.NewReader(payload)
	d := msgpack.NewDecoder(br)
	l, err := d.DecodeArrayLen()
	if err != nil || l != 3 {
		return Frame{}, fmt.Errorf("%w: payload is not a 3-element array", ErrCorruptFrame)
	}
	t, err := d.DecodeInt64()
	if err != nil || t < 0 || t > 255 {
		return Frame{}, fmt.Errorf("%w: message type is not a small unsigned integer", ErrCorruptFrame)
	}
	seq, err := d.DecodeInt64()
	if err != nil || seq < 0 {
		return Frame{}, fmt.Errorf("%w: sequence number is not an unsigned integer", ErrCorruptFrame)
	}
	start := len(payload) - br.Len()
	if err := d.Skip(); err != nil {
		return Frame{}, fmt.Errorf("%w: body of message type %d: %v", ErrCorruptFrame, t, err)
	}
	if left := br.Len(); left != 0 {
		return Frame{}, fmt.Errorf("%w: %d trailing bytes after the body", ErrCorruptFrame, left)
	}
	return Frame{Type: Type(t), Seq: uint64(seq), Body: payload[start:]}, nil
}
