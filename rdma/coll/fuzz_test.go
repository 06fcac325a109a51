package coll

import "testing"

func FuzzParseRecord(f *testing.F) {
	f.Add([]byte(`{"rank":1,"node":"n1","addrs":{"tcp":"10.0.0.1:4000","shm":"@shoal-c-rdma-00"},"token":"0123456789abcdef01234567"}`), 1)
	f.Add([]byte(`{"rank":2}`), 2)
	f.Add([]byte(`not json`), 0)
	f.Fuzz(func(t *testing.T, b []byte, r int) {
		rec, err := parseRecord(b, r)
		if err == nil && (rec.Rank != r || len(rec.Addrs) == 0 || len(rec.Token) < 24) {
			t.Fatalf("accepted %q as %+v", b, rec)
		}
	})
}
