package ipc

import (
	"fmt"
	"math"
	"sort"

	"google.golang.org/protobuf/encoding/protowire"
)

// The few protobuf helpers the Hadoop messages need. Field numbers are those
// of Hadoop's .proto files, named at each use; no generated code is involved.

// msg builds one protobuf message.
type msg []byte

func (m *msg) uint(num protowire.Number, v uint64) {
	*m = protowire.AppendTag(*m, num, protowire.VarintType)
	*m = protowire.AppendVarint(*m, v)
}

// int32 and int64 fields: negative values are sign-extended to ten bytes.
func (m *msg) int(num protowire.Number, v int64) { m.uint(num, uint64(v)) }

// sint32 fields use zigzag encoding.
func (m *msg) sint(num protowire.Number, v int32) {
	m.uint(num, protowire.EncodeZigZag(int64(v)))
}

func (m *msg) bool(num protowire.Number, v bool) {
	var b uint64
	if v {
		b = 1
	}
	m.uint(num, b)
}

func (m *msg) float(num protowire.Number, v float32) {
	*m = protowire.AppendTag(*m, num, protowire.Fixed32Type)
	*m = protowire.AppendFixed32(*m, math.Float32bits(v))
}

func (m *msg) bytes(num protowire.Number, v []byte) {
	*m = protowire.AppendTag(*m, num, protowire.BytesType)
	*m = protowire.AppendBytes(*m, v)
}

func (m *msg) str(num protowire.Number, v string) {
	*m = protowire.AppendTag(*m, num, protowire.BytesType)
	*m = protowire.AppendString(*m, v)
}

func (m *msg) sub(num protowire.Number, v msg) { m.bytes(num, v) }

// delimited prefixes b with its length as a varint, as Java's writeDelimitedTo does.
func delimited(dst, b []byte) []byte {
	dst = protowire.AppendVarint(dst, uint64(len(b)))
	return append(dst, b...)
}

// field is one decoded field: u holds varint and fixed values, b length-delimited ones.
type field struct {
	num protowire.Number
	typ protowire.Type
	u   uint64
	b   []byte
}

// fields calls fn for each field of a message, in wire order. Unknown fields are
// passed too; fn ignores what it does not know.
func fields(b []byte, fn func(f field) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return fmt.Errorf("bad protobuf tag: %w", protowire.ParseError(n))
		}
		b = b[n:]
		f := field{num: num, typ: typ}
		switch typ {
		case protowire.VarintType:
			f.u, n = protowire.ConsumeVarint(b)
		case protowire.Fixed32Type:
			var v uint32
			v, n = protowire.ConsumeFixed32(b)
			f.u = uint64(v)
		case protowire.Fixed64Type:
			f.u, n = protowire.ConsumeFixed64(b)
		case protowire.BytesType:
			f.b, n = protowire.ConsumeBytes(b)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return fmt.Errorf("bad protobuf field %d: %w", num, protowire.ParseError(n))
		}
		b = b[n:]
		if err := fn(f); err != nil {
			return err
		}
	}
	return nil
}

// Typed accessors: a known field number with the wrong wire type is an error,
// never a silent zero.
func (f field) want(t protowire.Type) error {
	if f.typ != t {
		return fmt.Errorf("protobuf field %d has wire type %d, want %d", f.num, f.typ, t)
	}
	return nil
}

func (f field) varint() (uint64, error) { return f.u, f.want(protowire.VarintType) }

func (f field) int32() (int32, error) {
	v, err := f.varint()
	return int32(v), err
}

func (f field) int64() (int64, error) {
	v, err := f.varint()
	return int64(v), err
}

func (f field) sint32() (int32, error) {
	v, err := f.varint()
	return int32(protowire.DecodeZigZag(v)), err
}

func (f field) float() (float32, error) {
	return math.Float32frombits(uint32(f.u)), f.want(protowire.Fixed32Type)
}

func (f field) bytes() ([]byte, error) { return f.b, f.want(protowire.BytesType) }

func (f field) str() (string, error) { return string(f.b), f.want(protowire.BytesType) }

// sortedKeys gives map encodings a stable order.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
