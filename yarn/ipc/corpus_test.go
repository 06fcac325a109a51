package ipc

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

var updateCorpus = flag.Bool("update-corpus", false, "rewrite the fuzz seed corpora under testdata/fuzz")

// seedCorpora are the committed seeds of the fuzz targets, beyond their f.Add
// ones: well-formed inputs of each shape and near misses.
func seedCorpora() map[string][][]byte {
	tok := Token{Identifier: []byte{0, 1, 2, 0x80, 0xff}, Password: []byte("password"), Kind: KindAMRMToken, Service: "127.0.0.1:8030"}
	big := Token{Identifier: make([]byte, 200), Password: make([]byte, 20), Kind: KindNMToken, Service: "nm:45454"}
	file0 := v0([]kv{{"a", tok}, {"b", big}}, map[string][]byte{"s": []byte("secret")})
	file1 := v1([]kv{{"a", tok}, {"b", big}}, map[string][]byte{"s": []byte("secret")})

	var ok, fatal, sasl, neg, auth msg
	ok.uint(1, 3)
	ok.int(2, statusSuccess)
	ok.uint(3, 9)
	var body msg
	body.bool(1, true)
	fatal.uint(1, 0xFFFFFFDF)
	fatal.int(2, statusFatal)
	fatal.str(4, "javax.security.sasl.SaslException")
	fatal.str(5, "DIGEST-MD5: digest response format violation.")
	fatal.int(6, errorFatalUnauthorized)
	sasl.uint(1, 0xFFFFFFDF)
	sasl.int(2, statusSuccess)
	neg.int(2, saslNegotiate)
	auth.str(1, "TOKEN")
	auth.str(2, "DIGEST-MD5")
	auth.str(3, "")
	auth.str(4, "default")
	auth.str(5, `realm="default",nonce="n0nce",qop="auth",charset=utf-8,algorithm=md5-sess`)
	neg.sub(4, auth)

	id := ContainerID{ApplicationAttemptID{ApplicationID{1700000000000, 7}, 1}, 2}
	var node, c, st, alloc msg
	node.str(1, "localhost")
	node.int(2, 41811)
	c.sub(1, id.proto())
	c.sub(2, node)
	c.sub(4, Resource{MemoryMB: 128, VCores: 1}.proto())
	c.sub(6, tok.proto())
	st.sub(1, id.proto())
	st.int(2, 3)
	st.str(3, "Container killed by the ApplicationMaster.")
	st.int(4, -105)
	alloc.int(2, 4)
	alloc.sub(3, c)
	alloc.sub(4, st)

	// FuzzSaslUnwrap: a mode byte (0 3des, 1 rc4, 2 integrity), then a server message
	var unwrap [][]byte
	for mode, m := range []struct{ qop, cipher string }{{"auth-conf", "3des"}, {"auth-conf", "rc4"}, {"auth-int", ""}} {
		_, srv := saslPair(m.qop, m.cipher)
		w := srv.wrap([]byte("hello"))
		unwrap = append(unwrap, append([]byte{byte(mode)}, w...), append([]byte{byte(mode)}, w[:len(w)-1]...))
	}

	return map[string][][]byte{
		"FuzzSaslUnwrap":       unwrap,
		"FuzzParseCredentials": {file0, file1, file0[:len(file0)/2], file1[:7], []byte("HDTS\x02")},
		"FuzzParseResponse":    {respFrame(ok, body), respFrame(fatal, nil), respFrame(sasl, neg), respFrame(ok, nil)},
		"FuzzDecodeRecords":    {c, st, alloc, neg, auth},
		"FuzzDigestChallenge": {[]byte(`realm="default",nonce="n",qop="auth,auth-int,auth-conf",charset=utf-8,algorithm=md5-sess,cipher="rc4"`),
			[]byte(`realm="default",nonce="n",qop="auth-conf",charset=utf-8,maxbuf=65536,algorithm=md5-sess,cipher="3des,rc4,des,rc4-56,rc4-40"`),
			[]byte(`realm="default",nonce="n",qop="auth-int",maxbuf=64,algorithm=md5-sess`),
			[]byte(`nonce="a\"b",algorithm=md5-sess`), []byte("rspauth=ea40f60335c427b5527b84dbabcdfffd")},
		"FuzzParseContainerID": {[]byte("container_e02_1700000000000_0007_01_000002"), []byte("container_1_1_1_1"), []byte("container_e_1_1_1_1")},
	}
}

func TestFuzzCorpusCommitted(t *testing.T) {
	for name, seeds := range seedCorpora() {
		dir := filepath.Join("testdata", "fuzz", name)
		for i, s := range seeds {
			path := filepath.Join(dir, fmt.Sprintf("seed-%02d", i))
			var content string
			if name == "FuzzParseContainerID" {
				content = fmt.Sprintf("go test fuzz v1\nstring(%q)\n", s)
			} else if name == "FuzzSaslUnwrap" {
				content = fmt.Sprintf("go test fuzz v1\nbyte(%d)\n[]byte(%q)\n", s[0], s[1:])
			} else {
				content = fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", s)
			}
			if *updateCorpus {
				if err := os.MkdirAll(dir, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
				continue
			}
			got, err := os.ReadFile(path)
			if err != nil || string(got) != content {
				t.Errorf("%s is missing or stale; run go test ./yarn/ipc -run TestFuzzCorpusCommitted -update-corpus", path)
			}
		}
	}
}
