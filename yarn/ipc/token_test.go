package ipc

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
)

// writeVLong and vbytes build test files and pin appendVLong to the byte
// strings Hadoop's WritableUtils.writeVLong produces (TestVLongMatchesHadoop).
func writeVLong(b []byte, v int64) []byte { return appendVLong(b, v) }

func vbytes(b, v []byte) []byte { return appendVBytes(b, v) }

type kv struct {
	alias string
	tok   Token
}

// v0 builds a version-0 (Writable) token file.
func v0(tokens []kv, secrets map[string][]byte) []byte {
	b := []byte("HDTS\x00")
	b = writeVLong(b, int64(len(tokens)))
	for _, t := range tokens {
		b = vbytes(b, []byte(t.alias))
		b = vbytes(b, t.tok.Identifier)
		b = vbytes(b, t.tok.Password)
		b = vbytes(b, []byte(t.tok.Kind))
		b = vbytes(b, []byte(t.tok.Service))
	}
	b = writeVLong(b, int64(len(secrets)))
	for _, k := range sortedKeys(secrets) {
		b = vbytes(b, []byte(k))
		b = vbytes(b, secrets[k])
	}
	return b
}

// v1 builds a version-1 (delimited CredentialsProto) token file.
func v1(tokens []kv, secrets map[string][]byte) []byte {
	var cp msg
	for _, t := range tokens {
		var e msg
		e.str(1, t.alias)
		e.sub(2, t.tok.proto())
		cp.sub(1, e)
	}
	for _, k := range sortedKeys(secrets) {
		var e msg
		e.str(1, k)
		e.bytes(3, secrets[k])
		cp.sub(2, e)
	}
	return delimited([]byte("HDTS\x01"), cp)
}

func TestVLongMatchesHadoop(t *testing.T) {
	// Byte strings as Hadoop's WritableUtils.writeVLong produces them.
	for v, want := range map[int64][]byte{
		0: {0}, 127: {127}, -112: {0x90}, 128: {0x8f, 0x80}, 255: {0x8f, 0xff}, 256: {0x8e, 0x01, 0x00},
		-113: {0x87, 0x70}, -256: {0x87, 0xff}, -257: {0x86, 0x01, 0x00}, 1 << 40: {0x8a, 1, 0, 0, 0, 0, 0},
	} {
		got := writeVLong(nil, v)
		if !bytes.Equal(got, want) {
			t.Errorf("writeVLong(%d) = % x, want % x", v, got, want)
		}
		back, err := readVLong(bytes.NewReader(want))
		if err != nil || back != v {
			t.Errorf("readVLong(% x) = %d, %v; want %d", want, back, err, v)
		}
	}
}

func TestParseCredentials(t *testing.T) {
	amrm := Token{Identifier: []byte{0, 1, 2, 3}, Password: []byte("secret-pw"), Kind: KindAMRMToken, Service: "127.0.0.1:8030"}
	// identifiers longer than 127 bytes need multi-byte VInts in version 0
	long := Token{Identifier: bytes.Repeat([]byte{0xab}, 300), Password: bytes.Repeat([]byte("p"), 1000), Kind: "HDFS_DELEGATION_TOKEN", Service: "ha-hdfs:nn"}
	empty := Token{Identifier: []byte{}, Password: []byte{}, Kind: "", Service: ""}
	cases := []struct {
		name    string
		tokens  []kv
		secrets map[string][]byte
	}{
		{"nothing", nil, nil},
		{"amrm", []kv{{"appattempt_1_0001_000001", amrm}}, nil},
		{"several", []kv{{"a", amrm}, {"b", long}, {"", empty}}, map[string][]byte{"s1": []byte("x"), "s2": bytes.Repeat([]byte{7}, 200), "s3": {}}},
	}
	for _, tc := range cases {
		want := &Credentials{Tokens: map[string]Token{}, Secrets: map[string][]byte{}}
		for _, t := range tc.tokens {
			want.Tokens[t.alias] = t.tok
		}
		for k, v := range tc.secrets {
			want.Secrets[k] = v
		}
		for ver, file := range map[string][]byte{"v0": v0(tc.tokens, tc.secrets), "v1": v1(tc.tokens, tc.secrets)} {
			t.Run(tc.name+"/"+ver, func(t *testing.T) {
				got, err := ParseCredentials(bytes.NewReader(file))
				if err != nil {
					t.Fatal(err)
				}
				if !credsEqual(got, want) {
					t.Errorf("got %+v\nwant %+v", got, want)
				}
			})
		}
	}
}

func credsEqual(a, b *Credentials) bool {
	if len(a.Tokens) != len(b.Tokens) || len(a.Secrets) != len(b.Secrets) {
		return false
	}
	for k, t := range a.Tokens {
		u, ok := b.Tokens[k]
		if !ok || !bytes.Equal(t.Identifier, u.Identifier) || !bytes.Equal(t.Password, u.Password) || t.Kind != u.Kind || t.Service != u.Service {
			return false
		}
	}
	for k, s := range a.Secrets {
		if u, ok := b.Secrets[k]; !ok || !bytes.Equal(s, u) {
			return false
		}
	}
	return true
}

func TestParseCredentialsErrors(t *testing.T) {
	good0 := v0([]kv{{"a", Token{Identifier: []byte("id"), Password: []byte("pw"), Kind: "k", Service: "s"}}}, nil)
	good1 := v1([]kv{{"a", Token{Identifier: []byte("id"), Password: []byte("pw"), Kind: "k", Service: "s"}}}, nil)
	negLen := append([]byte("HDTS\x00"), writeVLong(nil, 1)...)
	negLen = vbytes(negLen, []byte("a"))
	negLen = writeVLong(negLen, -5)
	noToken := delimited([]byte("HDTS\x01"), func() msg { var e, m msg; e.str(1, "a"); m.sub(1, e); return m }())
	for name, tc := range map[string]struct {
		in   []byte
		want string
	}{
		"empty":           {nil, "header"},
		"bad magic":       {[]byte("HDTX\x00\x00\x00"), "not a Hadoop token file"},
		"version 2":       {[]byte("HDTS\x02"), "version 2"},
		"v0 truncated":    {good0[:len(good0)-3], "unexpected EOF"},
		"v1 truncated":    {good1[:len(good1)-3], "unexpected EOF"},
		"v0 negative len": {negLen, "out of range"},
		"v0 huge count":   {append([]byte("HDTS\x00"), writeVLong(nil, 1<<30)...), "out of range"},
		"v1 huge length":  {append([]byte("HDTS\x01"), protowire.AppendVarint(nil, 1<<40)...), "message length"},
		"v1 no token":     {noToken, "has no token"},
	} {
		_, err := ParseCredentials(bytes.NewReader(tc.in))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one containing %q", name, err, tc.want)
		}
	}
}

func TestReadTokenFileAndByKind(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "container_tokens")
	amrm := Token{Identifier: []byte("amrm-id"), Password: []byte("amrm-pw"), Kind: KindAMRMToken}
	other := Token{Identifier: []byte("x"), Password: []byte("y"), Kind: "HDFS_DELEGATION_TOKEN"}
	if err := os.WriteFile(path, v1([]kv{{"hdfs", other}, {"amrm", amrm}}, nil), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := ReadTokenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	got, ok := c.ByKind(KindAMRMToken)
	if !ok || !reflect.DeepEqual(got, amrm) {
		t.Errorf("ByKind = %+v, %v", got, ok)
	}
	if _, ok := c.ByKind("NOPE"); ok {
		t.Error("ByKind found a kind that is not there")
	}
	_, err = ReadTokenFile(filepath.Join(dir, "missing"))
	if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "HADOOP_TOKEN_FILE_LOCATION") {
		t.Errorf("missing file: %v", err)
	}
}

func FuzzParseCredentials(f *testing.F) {
	tok := Token{Identifier: []byte{1, 2}, Password: []byte("pw"), Kind: KindAMRMToken, Service: "h:1"}
	f.Add(v0([]kv{{"a", tok}}, map[string][]byte{"s": []byte("v")}))
	f.Add(v1([]kv{{"a", tok}}, map[string][]byte{"s": []byte("v")}))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseCredentials(bytes.NewReader(b))
		if err != nil {
			return
		}
		if c.Tokens == nil || c.Secrets == nil {
			t.Fatal("nil maps on success")
		}
		// what parsed must survive a round trip through Marshal, in both versions
		for _, version := range []int{TokenFileWritable, TokenFileProto} {
			enc, err := c.Marshal(version)
			if err != nil {
				t.Fatalf("marshal version %d: %v", version, err)
			}
			again, err := ParseCredentials(bytes.NewReader(enc))
			if err != nil || !credsEqual(c, again) {
				t.Fatalf("round trip through version %d: %v", version, err)
			}
		}
	})
}

func TestMarshalCredentials(t *testing.T) {
	tok := Token{Identifier: []byte{0, 1, 0x80, 0xff}, Password: []byte("pw"), Kind: KindAMRMToken, Service: "rm:8030"}
	big := Token{Identifier: make([]byte, 300), Password: make([]byte, 20), Kind: KindNMToken, Service: "nm:45454"}
	secrets := map[string][]byte{"shoal.cluster.secret": []byte("0123456789abcdef"), "empty": {}, "big": make([]byte, 70000)}
	c := &Credentials{Tokens: map[string]Token{"a": tok, "b": big}, Secrets: secrets}
	for version, want := range map[int][]byte{
		TokenFileWritable: v0([]kv{{"a", tok}, {"b", big}}, secrets),
		TokenFileProto:    v1([]kv{{"a", tok}, {"b", big}}, secrets),
	} {
		got, err := c.Marshal(version)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("version %d: Marshal differs from the reference encoding", version)
		}
		back, err := ParseCredentials(bytes.NewReader(got))
		if err != nil || !credsEqual(c, back) {
			t.Errorf("version %d: round trip: %v", version, err)
		}
	}
	if _, err := c.Marshal(2); err == nil || !strings.Contains(err.Error(), "version 2") {
		t.Errorf("version 2: %v, want a refusal naming it", err)
	}
	empty, err := (&Credentials{}).Marshal(TokenFileWritable)
	if err != nil || string(empty) != "HDTS\x00\x00\x00" {
		t.Errorf("empty credentials: %q, %v", empty, err)
	}
}
