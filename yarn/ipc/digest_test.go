package ipc

import (
	"strings"
	"testing"
)

// RFC 2831 section 4 example: chris / secret at elwood.innosoft.com, IMAP.
func TestDigestResponseRFC2831(t *testing.T) {
	ha1 := sessionKey("chris", "elwood.innosoft.com", "secret", "OA6MG9tEQGm2hh", "OA6MHXh6VqTrRk")
	got := digestResponse(ha1, "OA6MG9tEQGm2hh", "OA6MHXh6VqTrRk", "00000001", "auth", "imap/elwood.innosoft.com", false)
	if want := "d388dad90d4bbd760a152321f2143af7"; got != want {
		t.Errorf("response = %s, want %s (RFC 2831 example)", got, want)
	}
	got = digestResponse(ha1, "OA6MG9tEQGm2hh", "OA6MHXh6VqTrRk", "00000001", "auth", "imap/elwood.innosoft.com", true)
	if want := "ea40f60335c427b5527b84dbabcdfffd"; got != want {
		t.Errorf("rspauth = %s, want %s (RFC 2831 example)", got, want)
	}
}

// The whole client exchange on the RFC's challenge, then the server's final message.
func TestDigestClientExchange(t *testing.T) {
	d := &digestClient{user: "chris", pass: "secret", digestURI: "imap/elwood.innosoft.com", cnonce: "OA6MHXh6VqTrRk"}
	resp, err := d.respond([]byte(`realm="elwood.innosoft.com",nonce="OA6MG9tEQGm2hh",qop="auth",algorithm=md5-sess,charset=utf-8`))
	if err != nil {
		t.Fatal(err)
	}
	dir, err := parseDirectives(string(resp))
	if err != nil {
		t.Fatalf("own response does not parse: %v", err)
	}
	for k, want := range map[string]string{
		"username": "chris", "realm": "elwood.innosoft.com", "nonce": "OA6MG9tEQGm2hh", "nc": "00000001",
		"cnonce": "OA6MHXh6VqTrRk", "digest-uri": "imap/elwood.innosoft.com", "qop": "auth",
		"response": "d388dad90d4bbd760a152321f2143af7", "charset": "utf-8",
	} {
		if got := dir[k]; len(got) != 1 || got[0] != want {
			t.Errorf("%s = %q, want %q; response %s", k, got, want, resp)
		}
	}
	if err := d.verify([]byte("rspauth=ea40f60335c427b5527b84dbabcdfffd")); err != nil {
		t.Errorf("verify the RFC's rspauth: %v", err)
	}
	if err := d.verify([]byte("rspauth=00000000000000000000000000000000")); err == nil {
		t.Error("verify accepted a wrong rspauth")
	}
}

// A Hadoop token: user and password are base64 of the token's bytes, the
// digest-uri is "/default".
func TestDigestClientHadoopToken(t *testing.T) {
	d := newDigestClient(Token{Identifier: []byte{0, 1, 2, 0xff}, Password: []byte("pw")}, "", "default")
	if d.user != "AAEC/w==" || d.pass != "cHc=" || d.digestURI != "/default" {
		t.Errorf("user %q pass %q uri %q", d.user, d.pass, d.digestURI)
	}
	resp, err := d.respond([]byte(`realm="default",nonce="abc",qop="auth",charset=utf-8,algorithm=md5-sess`))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(resp), `digest-uri="/default"`) || !strings.Contains(string(resp), `username="AAEC/w=="`) {
		t.Errorf("response %s", resp)
	}
}

func TestDigestClientRejects(t *testing.T) {
	for name, ch := range map[string]string{
		"no nonce":             `realm="r",qop="auth",algorithm=md5-sess`,
		"two nonces":           `nonce="a",nonce="b",algorithm=md5-sess`,
		"auth-conf, no cipher": `nonce="a",qop="auth-conf",algorithm=md5-sess`,
		"auth-conf, weak":      `nonce="a",qop="auth-conf",cipher="des,rc4-40,rc4-56",algorithm=md5-sess`,
		"unknown qop":          `nonce="a",qop="auth-x",algorithm=md5-sess`,
		"maxbuf":               `nonce="a",qop="auth",maxbuf=x,algorithm=md5-sess`,
		"no algorithm":         `nonce="a",qop="auth"`,
		"unterminated":         `nonce="a`,
		"directive no val":     `nonce`,
	} {
		d := &digestClient{user: "u", pass: "p", digestURI: "/default"}
		if _, err := d.respond([]byte(ch)); err == nil {
			t.Errorf("%s: challenge %q accepted", name, ch)
		}
	}
}

func TestParseDirectives(t *testing.T) {
	dir, err := parseDirectives(` realm="a\"b" , qop="auth,auth-int", x = y ,, nonce="n"`)
	if err != nil {
		t.Fatal(err)
	}
	if dir["realm"][0] != `a"b` || dir["qop"][0] != "auth,auth-int" || dir["x"][0] != "y" || dir["nonce"][0] != "n" {
		t.Errorf("%q", dir)
	}
}

// FuzzDigestChallenge feeds server challenges and final messages to the client.
func FuzzDigestChallenge(f *testing.F) {
	f.Add([]byte(`realm="default",nonce="abc",qop="auth",charset=utf-8,algorithm=md5-sess`))
	f.Fuzz(func(t *testing.T, ch []byte) {
		d := &digestClient{user: "u", pass: "p", digestURI: "/default"}
		resp, err := d.respond(ch)
		if err != nil {
			return
		}
		if _, err := parseDirectives(string(resp)); err != nil {
			t.Fatalf("own response %q does not parse: %v", resp, err)
		}
		d.verify(ch)
	})
}
