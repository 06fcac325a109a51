package rdma

import "testing"

func FuzzParseTCPAuth(f *testing.F) {
	good := make([]byte, tcpAuthLen)
	good[81] = 4
	f.Add(good)
	f.Add([]byte{})
	f.Add(make([]byte, tcpAuthLen-1))
	f.Fuzz(func(t *testing.T, b []byte) {
		au, err := parseTCPAuth(b)
		if err == nil && (au.n == 0 || au.idx >= au.n || len(au.mac) != 32 || len(au.nonce) != 32) {
			t.Fatalf("accepted %x as %+v", b, au)
		}
	})
}
