package client

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"reflect"

	"github.com/vmihailenco/msgpack/v5"
	"github.com/vmihailenco/msgpack/v5/msgpcode"

	"github.com/shoal-hpc/shoal/wire"
)

// MessagePack extension types of this SDK; see the package documentation.
const (
	extDep int8 = 0x53 // 'S': placeholder for deps[i], 4-byte big-endian index
	extRef int8 = 0x52 // 'R': a nested ObjectRef, 16-byte id
)

// buffer is the writer values are encoded into. ObjectRef.EncodeMsgpack finds it through
// Encoder.Writer and records the ids it writes, so that they can be listed in refs.
type buffer struct {
	bytes.Buffer
	refs []wire.ID
}

func (b *buffer) addRef(id wire.ID) {
	for _, r := range b.refs {
		if r == id {
			return
		}
	}
	b.refs = append(b.refs, id)
}

func newEncoder(b *buffer) *msgpack.Encoder {
	e := msgpack.NewEncoder(b)
	e.UseCompactInts(true)
	return e
}

// encodeValue encodes v and returns its bytes and the ids of the ObjectRefs inside it.
func encodeValue(v any) ([]byte, []wire.ID, error) {
	var b buffer
	if err := newEncoder(&b).Encode(v); err != nil {
		return nil, nil, fmt.Errorf("encode %T as MessagePack: %w", v, err)
	}
	return b.Bytes(), b.refs, nil
}

// encodeArgs encodes a task's arguments as one MessagePack array. A top-level ObjectRef
// becomes a dependency placeholder and its id goes into deps; refs lists ObjectRefs nested
// deeper.
func encodeArgs(args []any) (data []byte, deps, refs []wire.ID, err error) {
	var b buffer
	e := newEncoder(&b)
	if err := e.EncodeArrayLen(len(args)); err != nil {
		return nil, nil, nil, err
	}
	for i, a := range args {
		var ref *ObjectRef
		switch r := a.(type) {
		case ObjectRef:
			ref = &r
		case *ObjectRef:
			ref = r
		}
		if ref != nil {
			if ref.id.IsZero() {
				return nil, nil, nil, fmt.Errorf("argument %d is a zero ObjectRef", i+1)
			}
			if err := encodeDep(e, len(deps)); err != nil {
				return nil, nil, nil, err
			}
			deps = append(deps, ref.id)
			continue
		}
		if err := e.Encode(a); err != nil {
			return nil, nil, nil, fmt.Errorf("encode argument %d (%T) as MessagePack: %w", i+1, a, err)
		}
	}
	return b.Bytes(), deps, b.refs, nil
}

func encodeDep(e *msgpack.Encoder, i int) error {
	if err := e.EncodeExtHeader(extDep, 4); err != nil {
		return err
	}
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(i))
	_, err := e.Writer().Write(n[:])
	return err
}

// depIndex reports whether raw is a dependency placeholder, and which.
func depIndex(raw []byte) (int, bool) {
	if len(raw) != 6 || raw[0] != msgpcode.FixExt4 || int8(raw[1]) != extDep {
		return 0, false
	}
	return int(binary.BigEndian.Uint32(raw[2:])), true
}

// splitArray returns the raw elements of a MessagePack array.
func splitArray(data []byte) ([]msgpack.RawMessage, error) {
	d := msgpack.NewDecoder(bytes.NewReader(data))
	n, err := d.DecodeArrayLen()
	if err != nil {
		return nil, fmt.Errorf("arguments are not a MessagePack array: %w", err)
	}
	if n < 0 {
		return nil, nil
	}
	out := make([]msgpack.RawMessage, n)
	for i := range out {
		if out[i], err = d.DecodeRaw(); err != nil {
			return nil, fmt.Errorf("argument %d is not valid MessagePack: %w", i+1, err)
		}
	}
	return out, nil
}

// EncodeMsgpack writes r as extension 0x52 holding its id, and records the id as contained in
// the value being encoded; the zero ObjectRef is nil.
func (r ObjectRef) EncodeMsgpack(e *msgpack.Encoder) error {
	if r.id.IsZero() {
		return e.EncodeNil()
	}
	if b, ok := e.Writer().(*buffer); ok {
		b.addRef(r.id)
	}
	if err := e.EncodeExtHeader(extRef, 16); err != nil {
		return err
	}
	_, err := e.Writer().Write(r.id[:])
	return err
}

// DecodeMsgpack reads what EncodeMsgpack wrote. The result is a borrowed reference: it can be
// read with Get, and Release does nothing.
func (r *ObjectRef) DecodeMsgpack(d *msgpack.Decoder) error {
	c, err := d.PeekCode()
	if err != nil {
		return err
	}
	if c == msgpcode.Nil {
		*r = ObjectRef{}
		return d.DecodeNil()
	}
	typ, n, err := d.DecodeExtHeader()
	if err != nil {
		return fmt.Errorf("decode ObjectRef: %w", err)
	}
	if typ != extRef || n != 16 {
		return fmt.Errorf("decode ObjectRef: extension type %d of %d bytes, want type %d of 16 bytes", typ, n, extRef)
	}
	var id wire.ID
	if err := d.ReadFull(id[:]); err != nil {
		return fmt.Errorf("decode ObjectRef: %w", err)
	}
	*r = ObjectRef{id: id}
	return nil
}

// errorData encodes an error object's bytes.
func errorData(kind, msg string) []byte {
	b, err := msgpack.Marshal(map[string]string{"kind": kind, "msg": msg})
	if err != nil {
		panic(fmt.Sprintf("[internal error] encode error object: %v", err))
	}
	return b
}

// decodeError turns an error object's bytes into a *TaskError.
func decodeError(data []byte) error {
	var e struct {
		Kind string `msgpack:"kind"`
		Msg  string `msgpack:"msg"`
	}
	if err := msgpack.Unmarshal(data, &e); err != nil {
		return &TaskError{Kind: KindTaskError, Msg: fmt.Sprintf("the error object could not be decoded: %v", err)}
	}
	if e.Kind == "" {
		e.Kind = KindTaskError
	}
	return &TaskError{Kind: e.Kind, Msg: e.Msg}
}

// decodeObject decodes an object's bytes of format f into out (a non-nil pointer, or nil to
// discard the value). An error object is returned as its *TaskError.
func decodeObject(id wire.ID, f int, data []byte, out any) error {
	switch f {
	case wire.FmtError:
		return decodeError(data)
	case wire.FmtMsgpack:
		if out == nil {
			return nil
		}
		if err := msgpack.Unmarshal(data, out); err != nil {
			return fmt.Errorf("decode object %s into %T: %w", id, out, err)
		}
		return nil
	case wire.FmtRaw:
		switch p := out.(type) {
		case nil:
		case *[]byte:
			*p = append([]byte(nil), data...)
		case *string:
			*p = string(data)
		case *any:
			*p = append([]byte(nil), data...)
		default:
			return fmt.Errorf("decode object %s: it holds raw bytes (format 0), which decode into *[]byte, *string or *any, not %T", id, out)
		}
		return nil
	case wire.FmtPython:
		return fmt.Errorf("decode object %s: it holds a Python value (format 1), which Go cannot read; have the Python side put MessagePack-friendly data as raw bytes or msgpack", id)
	}
	return fmt.Errorf("decode object %s: unknown object format %d", id, f)
}

// asMsgpack returns an object's bytes as one MessagePack value, to stand in for a dependency
// placeholder: MessagePack as is, raw bytes as a bin. An error object is its *TaskError.
func asMsgpack(id wire.ID, f int, data []byte) (msgpack.RawMessage, error) {
	switch f {
	case wire.FmtMsgpack:
		return data, nil
	case wire.FmtRaw:
		b, err := msgpack.Marshal(data)
		return b, err
	case wire.FmtError:
		return nil, decodeError(data)
	}
	return nil, decodeObject(id, f, data, nil)
}

// decodeArg decodes one argument into a new value of type t.
func decodeArg(raw []byte, t reflect.Type) (reflect.Value, error) {
	p := reflect.New(t)
	if err := msgpack.Unmarshal(raw, p.Interface()); err != nil {
		return reflect.Value{}, err
	}
	return p.Elem(), nil
}

var errNotPointer = errors.New("want a non-nil pointer")
