package ipc

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	"google.golang.org/protobuf/encoding/protowire"
)

// maxTokenField bounds any one length in a token file, so a corrupt file
// cannot make the parser allocate gigabytes.
const maxTokenField = 16 << 20

// ReadTokenFile reads a Hadoop token file, the one HADOOP_TOKEN_FILE_LOCATION
// names in a YARN container ("HDTS", then version 0 or 1).
func ReadTokenFile(path string) (*Credentials, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read token file: %w (in a YARN container, HADOOP_TOKEN_FILE_LOCATION names it)", err)
	}
	defer f.Close()
	c, err := ParseCredentials(bufio.NewReader(f))
	if err != nil {
		return nil, fmt.Errorf("read token file %s: %w", path, err)
	}
	return c, nil
}

// ParseCredentials parses the content of a Hadoop token file: the magic
// "HDTS", a version byte, then for version 0 Hadoop's Writable encoding (with
// WritableUtils' VInt lengths) and for version 1 a varint-delimited
// CredentialsProto.
func ParseCredentials(r io.Reader) (*Credentials, error) {
	var head [5]byte
	if _, err := io.ReadFull(r, head[:]); err != nil {
		return nil, fmt.Errorf("parse token file header: %w", noEOF(err))
	}
	if string(head[:4]) != "HDTS" {
		return nil, fmt.Errorf("parse token file: magic %q, want \"HDTS\" (not a Hadoop token file)", head[:4])
	}
	br, ok := r.(io.ByteReader)
	if !ok {
		br = bufio.NewReader(r)
		r = br.(io.Reader)
	}
	c := &Credentials{Tokens: map[string]Token{}, Secrets: map[string][]byte{}}
	var err error
	switch head[4] {
	case 0:
		err = c.readWritable(r, br)
	case 1:
		err = c.readProto(r, br)
	default:
		return nil, fmt.Errorf("parse token file: version %d, this reader knows 0 and 1", head[4])
	}
	if err != nil {
		return nil, fmt.Errorf("parse token file version %d: %w", head[4], err)
	}
	return c, nil
}

// ByKind returns a token of the given kind, e.g. KindAMRMToken. With several
// of that kind it returns the one whose alias sorts first.
func (c *Credentials) ByKind(kind string) (Token, bool) {
	if c == nil {
		return Token{}, false
	}
	for _, alias := range sortedKeys(c.Tokens) {
		if t := c.Tokens[alias]; t.Kind == kind {
			return t, true
		}
	}
	return Token{}, false
}

func noEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// readVLong reads Hadoop's WritableUtils VLong: one byte in [-112, 127] is the
// value itself; otherwise the first byte gives the sign and the count of
// big-endian bytes that follow (-113..-120 positive, -121..-128 negative, the
// negative ones stored one's-complemented).
func readVLong(br io.ByteReader) (int64, error) {
	b, err := br.ReadByte()
	if err != nil {
		return 0, noEOF(err)
	}
	first := int8(b)
	if first >= -112 {
		return int64(first), nil
	}
	neg := first < -120
	n := int(-112 - int(first))
	if neg {
		n = int(-120 - int(first))
	}
	var v int64
	for i := 0; i < n; i++ {
		b, err := br.ReadByte()
		if err != nil {
			return 0, noEOF(err)
		}
		v = v<<8 | int64(b)
	}
	if neg {
		v = ^v
	}
	return v, nil
}

// readVInt is readVLong limited to a Java int.
func readVInt(br io.ByteReader) (int32, error) {
	v, err := readVLong(br)
	if err != nil {
		return 0, err
	}
	if v < -1<<31 || v >= 1<<31 {
		return 0, fmt.Errorf("vint %d out of int range", v)
	}
	return int32(v), nil
}

// readLen reads a VInt length and checks it.
func readLen(br io.ByteReader, what string) (int, error) {
	n, err := readVInt(br)
	if err != nil {
		return 0, fmt.Errorf("read %s length: %w", what, err)
	}
	if n < 0 || n > maxTokenField {
		return 0, fmt.Errorf("%s length %d out of range [0, %d]", what, n, maxTokenField)
	}
	return int(n), nil
}

func readBytes(r io.Reader, br io.ByteReader, what string) ([]byte, error) {
	n, err := readLen(br, what)
	if err != nil {
		return nil, err
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, fmt.Errorf("read %s: %w", what, noEOF(err))
	}
	return b, nil
}

// readWritable reads version 0: VInt count, then (Text alias, Token) pairs,
// where Text is VInt length + UTF-8 and Token is identifier, password (each VInt
// length + bytes), kind and service (Text); then VInt count of (Text alias,
// VInt length + secret bytes).
func (c *Credentials) readWritable(r io.Reader, br io.ByteReader) error {
	n, err := readLen(br, "token count")
	if err != nil {
		return err
	}
	for i := 0; i < n; i++ {
		alias, err := readBytes(r, br, "token alias")
		if err != nil {
			return fmt.Errorf("token %d: %w", i, err)
		}
		var t Token
		if t.Identifier, err = readBytes(r, br, "token identifier"); err == nil {
			if t.Password, err = readBytes(r, br, "token password"); err == nil {
				var kind, service []byte
				if kind, err = readBytes(r, br, "token kind"); err == nil {
					service, err = readBytes(r, br, "token service")
				}
				t.Kind, t.Service = string(kind), string(service)
			}
		}
		if err != nil {
			return fmt.Errorf("token %d (%q): %w", i, alias, err)
		}
		c.Tokens[string(alias)] = t
	}
	n, err = readLen(br, "secret count")
	if err != nil {
		return err
	}
	for i := 0; i < n; i++ {
		alias, err := readBytes(r, br, "secret alias")
		if err != nil {
			return fmt.Errorf("secret %d: %w", i, err)
		}
		v, err := readBytes(r, br, "secret")
		if err != nil {
			return fmt.Errorf("secret %d (%q): %w", i, alias, err)
		}
		c.Secrets[string(alias)] = v
	}
	return nil
}

// readProto reads version 1: a varint length, then CredentialsProto
// (tokens = 1, secrets = 2, both CredentialsKVProto: alias = 1, token = 2,
// secret = 3).
func (c *Credentials) readProto(r io.Reader, br io.ByteReader) error {
	var lenBuf []byte
	for {
		b, err := br.ReadByte()
		if err != nil {
			return fmt.Errorf("read message length: %w", noEOF(err))
		}
		lenBuf = append(lenBuf, b)
		if b < 0x80 || len(lenBuf) >= 10 {
			break
		}
	}
	n, k := protowire.ConsumeVarint(lenBuf)
	if k < 0 {
		return fmt.Errorf("read message length: %w", protowire.ParseError(k))
	}
	if n > maxTokenField {
		return fmt.Errorf("message length %d over %d", n, maxTokenField)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return fmt.Errorf("read message: %w", noEOF(err))
	}
	return fields(body, func(f field) error {
		if f.num != 1 && f.num != 2 {
			return nil
		}
		kv, err := f.bytes()
		if err != nil {
			return err
		}
		var alias string
		var tok *Token
		var secret []byte
		err = fields(kv, func(g field) error {
			switch g.num {
			case 1:
				v, err := g.str()
				alias = v
				return err
			case 2:
				v, err := g.bytes()
				if err != nil {
					return err
				}
				t, err := decodeToken(v)
				tok = &t
				return err
			case 3:
				v, err := g.bytes()
				secret = bytes.Clone(v)
				if secret == nil {
					secret = []byte{}
				}
				return err
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("credentials entry: %w", err)
		}
		if f.num == 1 {
			if tok == nil {
				return fmt.Errorf("token entry %q has no token", alias)
			}
			c.Tokens[alias] = *tok
		} else {
			if secret == nil {
				secret = []byte{}
			}
			c.Secrets[alias] = secret
		}
		return nil
	})
}

// Token file versions, the byte after "HDTS".
const (
	TokenFileWritable = 0 // Hadoop's Writable encoding; every Hadoop release reads it
	TokenFileProto    = 1 // a delimited CredentialsProto; Hadoop 3 and later
)

// Marshal encodes c as a token file of the given version (TokenFileWritable or
// TokenFileProto), the form a ContainerLaunchContext's tokens take and the
// NodeManager writes to the container's HADOOP_TOKEN_FILE_LOCATION. Entries
// are written in alias order, so the output is deterministic.
func (c *Credentials) Marshal(version int) ([]byte, error) {
	if c == nil {
		c = &Credentials{}
	}
	for alias, t := range c.Tokens {
		for what, n := range map[string]int{"alias": len(alias), "identifier": len(t.Identifier),
			"password": len(t.Password), "kind": len(t.Kind), "service": len(t.Service)} {
			if n > maxTokenField {
				return nil, fmt.Errorf("marshal credentials: token %q: %s of %d bytes over the %d limit", alias, what, n, maxTokenField)
			}
		}
	}
	for alias, s := range c.Secrets {
		if len(alias) > maxTokenField || len(s) > maxTokenField {
			return nil, fmt.Errorf("marshal credentials: secret %q over the %d-byte limit", alias, maxTokenField)
		}
	}
	switch version {
	case TokenFileWritable:
		b := []byte("HDTS\x00")
		b = appendVLong(b, int64(len(c.Tokens)))
		for _, alias := range sortedKeys(c.Tokens) {
			t := c.Tokens[alias]
			b = appendVBytes(b, []byte(alias))
			b = appendVBytes(b, t.Identifier)
			b = appendVBytes(b, t.Password)
			b = appendVBytes(b, []byte(t.Kind))
			b = appendVBytes(b, []byte(t.Service))
		}
		b = appendVLong(b, int64(len(c.Secrets)))
		for _, alias := range sortedKeys(c.Secrets) {
			b = appendVBytes(b, []byte(alias))
			b = appendVBytes(b, c.Secrets[alias])
		}
		return b, nil
	case TokenFileProto:
		var cp msg // CredentialsProto: tokens = 1, secrets = 2 (CredentialsKVProto: alias 1, token 2, secret 3)
		for _, alias := range sortedKeys(c.Tokens) {
			var e msg
			e.str(1, alias)
			e.sub(2, c.Tokens[alias].proto())
			cp.sub(1, e)
		}
		for _, alias := range sortedKeys(c.Secrets) {
			var e msg
			e.str(1, alias)
			e.bytes(3, c.Secrets[alias])
			cp.sub(2, e)
		}
		return delimited([]byte("HDTS\x01"), cp), nil
	}
	return nil, fmt.Errorf("marshal credentials: token file version %d; use %d (Writable) or %d (protobuf)", version, TokenFileWritable, TokenFileProto)
}

// appendVLong appends Hadoop's WritableUtils VLong (the inverse of readVLong).
func appendVLong(b []byte, v int64) []byte {
	if v >= -112 && v <= 127 {
		return append(b, byte(int8(v)))
	}
	l := int64(-112)
	if v < 0 {
		v = ^v
		l = -120
	}
	for tmp := v; tmp != 0; tmp >>= 8 {
		l--
	}
	b = append(b, byte(int8(l)))
	n := -(l + 112)
	if l < -120 {
		n = -(l + 120)
	}
	for i := n; i > 0; i-- {
		b = append(b, byte(v>>((i-1)*8)))
	}
	return b
}

func appendVBytes(b, v []byte) []byte { return append(appendVLong(b, int64(len(v))), v...) }
