package ipc

import (
	"crypto/md5"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
)

// digestClient is the client side of SASL DIGEST-MD5 (RFC 2831) as Hadoop's
// token authentication uses it: qop "auth" only (no integrity or privacy
// layer, so nothing is wrapped after the handshake), no authorization id.
type digestClient struct {
	user, pass string // base64 of the token identifier and password
	digestURI  string // "<protocol>/<server id>", "/default" for Hadoop tokens
	cnonce     string // empty: random
	rspauth    string // expected from the server's final message
}

// newDigestClient prepares the DIGEST-MD5 exchange for a Hadoop token: the user
// name is base64 of the token identifier and the password base64 of the token
// password, as Hadoop's SaslRpcClient encodes them.
func newDigestClient(tok Token, protocol, serverID string) *digestClient {
	return &digestClient{
		user:      base64.StdEncoding.EncodeToString(tok.Identifier),
		pass:      base64.StdEncoding.EncodeToString(tok.Password),
		digestURI: protocol + "/" + serverID,
	}
}

// respond answers the server's digest-challenge with a digest-response.
func (d *digestClient) respond(challenge []byte) ([]byte, error) {
	dir, err := parseDirectives(string(challenge))
	if err != nil {
		return nil, fmt.Errorf("parse DIGEST-MD5 challenge: %w", err)
	}
	nonce := dir["nonce"]
	if len(nonce) != 1 || nonce[0] == "" {
		return nil, fmt.Errorf("DIGEST-MD5 challenge has %d nonces, want 1", len(nonce))
	}
	if alg := dir["algorithm"]; len(alg) != 1 || !strings.EqualFold(alg[0], "md5-sess") {
		return nil, fmt.Errorf("DIGEST-MD5 challenge algorithm %q, want md5-sess", alg)
	}
	qops := []string{"auth"} // the RFC's default when qop is absent
	if q, ok := dir["qop"]; ok {
		qops = nil
		for _, v := range q {
			for _, s := range strings.Split(v, ",") {
				qops = append(qops, strings.TrimSpace(s))
			}
		}
	}
	if !slices.Contains(qops, "auth") {
		return nil, fmt.Errorf("server requires SASL qop %v; this client does only \"auth\" (set hadoop.rpc.protection=authentication)", qops)
	}
	realm := ""
	if r := dir["realm"]; len(r) > 0 {
		realm = r[0]
	}
	cnonce := d.cnonce
	if cnonce == "" {
		b := make([]byte, 16)
		if _, err := rand.Read(b); err != nil {
			return nil, fmt.Errorf("make DIGEST-MD5 cnonce: %w", err)
		}
		cnonce = base64.RawStdEncoding.EncodeToString(b)
	}
	const nc = "00000001"
	resp := digestResponse(d.user, realm, d.pass, nonce[0], cnonce, nc, "auth", d.digestURI, false)
	d.rspauth = digestResponse(d.user, realm, d.pass, nonce[0], cnonce, nc, "auth", d.digestURI, true)
	var b strings.Builder
	if cs := dir["charset"]; len(cs) > 0 && strings.EqualFold(cs[0], "utf-8") {
		b.WriteString("charset=utf-8,")
	}
	fmt.Fprintf(&b, "username=%s,realm=%s,nonce=%s,nc=%s,cnonce=%s,digest-uri=%s,maxbuf=65536,response=%s,qop=auth",
		quote(d.user), quote(realm), quote(nonce[0]), nc, quote(cnonce), quote(d.digestURI), resp)
	return []byte(b.String()), nil
}

// verify checks the server's response-auth, which proves the server knows the
// token password too.
func (d *digestClient) verify(final []byte) error {
	dir, err := parseDirectives(string(final))
	if err != nil {
		return fmt.Errorf("parse DIGEST-MD5 response-auth: %w", err)
	}
	got := dir["rspauth"]
	if len(got) != 1 {
		return fmt.Errorf("DIGEST-MD5 server message has no rspauth")
	}
	if d.rspauth == "" || subtle.ConstantTimeCompare([]byte(got[0]), []byte(d.rspauth)) != 1 {
		return fmt.Errorf("DIGEST-MD5 rspauth does not match: the server does not know this token's password")
	}
	return nil
}

// digestResponse computes RFC 2831's response-value (or, with rspauth, the
// server's response-auth value, which differs only in A2) for qop "auth".
func digestResponse(user, realm, pass, nonce, cnonce, nc, qop, digestURI string, rspauth bool) string {
	h := md5.Sum([]byte(user + ":" + realm + ":" + pass))
	a1 := string(h[:]) + ":" + nonce + ":" + cnonce
	a2 := "AUTHENTICATE:" + digestURI
	if rspauth {
		a2 = ":" + digestURI
	}
	ha1 := md5.Sum([]byte(a1))
	ha2 := md5.Sum([]byte(a2))
	kd := md5.Sum([]byte(hex.EncodeToString(ha1[:]) + ":" + nonce + ":" + nc + ":" + cnonce + ":" + qop + ":" + hex.EncodeToString(ha2[:])))
	return hex.EncodeToString(kd[:])
}

func quote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// parseDirectives splits "k=v, k="quoted, v", ..." into a map of values, in
// order; keys are lower-cased.
func parseDirectives(s string) (map[string][]string, error) {
	out := map[string][]string{}
	i := 0
	skip := func() {
		for i < len(s) && (s[i] == ' ' || s[i] == '\t' || s[i] == ',' || s[i] == '\r' || s[i] == '\n') {
			i++
		}
	}
	for {
		skip()
		if i >= len(s) {
			return out, nil
		}
		j := i
		for j < len(s) && s[j] != '=' && s[j] != ',' {
			j++
		}
		if j >= len(s) || s[j] != '=' {
			return nil, fmt.Errorf("directive %q has no value", strings.TrimSpace(s[i:j]))
		}
		key := strings.ToLower(strings.TrimSpace(s[i:j]))
		i = j + 1
		var val strings.Builder
		if i < len(s) && s[i] == '"' {
			i++
			closed := false
			for i < len(s) {
				c := s[i]
				i++
				if c == '\\' && i < len(s) {
					val.WriteByte(s[i])
					i++
					continue
				}
				if c == '"' {
					closed = true
					break
				}
				val.WriteByte(c)
			}
			if !closed {
				return nil, fmt.Errorf("directive %s: unterminated quoted value", key)
			}
		} else {
			j := i
			for j < len(s) && s[j] != ',' {
				j++
			}
			val.WriteString(strings.TrimSpace(s[i:j]))
			i = j
		}
		out[key] = append(out[key], val.String())
	}
}
