package ipc

import (
	"crypto/md5"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// digestClient is the client side of SASL DIGEST-MD5 (RFC 2831) as Hadoop's
// token authentication uses it, no authorization id. It takes the strongest
// quality of protection the server offers: "auth-conf" (privacy: every later
// message encrypted and integrity-protected, hadoop.rpc.protection=privacy),
// "auth-int" (integrity) or "auth" (authentication only: nothing is wrapped
// after the handshake). See saslLayer for the wrapping.
type digestClient struct {
	user, pass string // base64 of the token identifier and password
	digestURI  string // "<protocol>/<server id>", "/default" for Hadoop tokens
	cnonce     string // empty: random
	rspauth    string // expected from the server's final message

	qop     string   // negotiated: auth, auth-int or auth-conf
	cipher  string   // with auth-conf: 3des or rc4
	ha1     [16]byte // H(A1), the session key the security layer's keys derive from
	maxSend int      // the server's maxbuf: the largest wrapped message it takes
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

// list splits the comma-separated values of a directive that may be repeated.
func list(dir map[string][]string, key string) []string {
	var out []string
	for _, v := range dir[key] {
		for _, s := range strings.Split(v, ",") {
			if s = strings.ToLower(strings.TrimSpace(s)); s != "" {
				out = append(out, s)
			}
		}
	}
	return out
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
	if _, ok := dir["qop"]; ok {
		qops = list(dir, "qop")
	}
	// the strongest protection offered; a cipher weaker than 3DES or RC4-128 is never chosen
	d.qop, d.cipher = "", ""
	switch ciphers := list(dir, "cipher"); {
	case slices.Contains(qops, "auth-conf") && slices.Contains(ciphers, "3des"):
		d.qop, d.cipher = "auth-conf", "3des"
	case slices.Contains(qops, "auth-conf") && slices.Contains(ciphers, "rc4"):
		d.qop, d.cipher = "auth-conf", "rc4"
	case slices.Contains(qops, "auth-int"):
		d.qop = "auth-int"
	case slices.Contains(qops, "auth"):
		d.qop = "auth"
	default:
		return nil, fmt.Errorf("server offers SASL qop %v with ciphers %v; this client does auth, auth-int, and auth-conf with 3des or rc4", qops, list(dir, "cipher"))
	}
	d.maxSend = 65536 // RFC 2831's default maxbuf
	if m := dir["maxbuf"]; len(m) > 0 {
		n, err := strconv.Atoi(m[0])
		if err != nil || n < 64 || n > 1<<24 {
			return nil, fmt.Errorf("DIGEST-MD5 challenge maxbuf %q out of range [64, %d]", m[0], 1<<24)
		}
		d.maxSend = n
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
	d.ha1 = sessionKey(d.user, realm, d.pass, nonce[0], cnonce)
	resp := digestResponse(d.ha1, nonce[0], cnonce, nc, d.qop, d.digestURI, false)
	d.rspauth = digestResponse(d.ha1, nonce[0], cnonce, nc, d.qop, d.digestURI, true)
	var b strings.Builder
	if cs := dir["charset"]; len(cs) > 0 && strings.EqualFold(cs[0], "utf-8") {
		b.WriteString("charset=utf-8,")
	}
	fmt.Fprintf(&b, "username=%s,realm=%s,nonce=%s,nc=%s,cnonce=%s,digest-uri=%s,maxbuf=%d,response=%s,qop=%s",
		quote(d.user), quote(realm), quote(nonce[0]), nc, quote(cnonce), quote(d.digestURI), maxRecvBuf, resp, d.qop)
	if d.cipher != "" {
		fmt.Fprintf(&b, ",cipher=%s", quote(d.cipher))
	}
	return []byte(b.String()), nil
}

// maxRecvBuf is the maxbuf this client announces: the largest wrapped message
// it takes from the server.
const maxRecvBuf = 65536

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

// sessionKey is RFC 2831's H(A1) for md5-sess without authzid:
// MD5(MD5(user:realm:pass) ":" nonce ":" cnonce).
func sessionKey(user, realm, pass, nonce, cnonce string) [16]byte {
	h := md5.Sum([]byte(user + ":" + realm + ":" + pass))
	return md5.Sum([]byte(string(h[:]) + ":" + nonce + ":" + cnonce))
}

// digestResponse computes RFC 2831's response-value (or, with rspauth, the
// server's response-auth value, which differs only in A2) from H(A1). With qop
// auth-int or auth-conf, A2 ends in ":" and 32 zeros.
func digestResponse(ha1 [16]byte, nonce, cnonce, nc, qop, digestURI string, rspauth bool) string {
	a2 := "AUTHENTICATE:" + digestURI
	if rspauth {
		a2 = ":" + digestURI
	}
	if qop == "auth-int" || qop == "auth-conf" {
		a2 += ":00000000000000000000000000000000"
	}
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
