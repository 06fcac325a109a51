package nodeagent

import (
	"encoding/binary"
	"testing"
)

// FuzzParseXferReq: the 32-byte pull request. A request is never read beyond its 32 bytes,
// and bytes are sent only for a range inside the object, whatever offset and length it names.
func FuzzParseXferReq(f *testing.F) {
	f.Add(make([]byte, 32), int64(100))
	f.Add([]byte{}, int64(0))
	f.Fuzz(func(t *testing.T, b []byte, size int64) {
		id, off, n, err := parseXferReq(b)
		if err != nil {
			if len(b) == xferReqLen {
				t.Fatalf("refused a %d-byte request: %v", len(b), err)
			}
			return
		}
		if len(b) != xferReqLen || string(id[:]) != string(b[:16]) ||
			off != int64(binary.BigEndian.Uint64(b[16:])) || n != int64(binary.BigEndian.Uint64(b[24:])) {
			t.Fatalf("parsed %x as %x %d %d", b, id, off, n)
		}
		if xferRange(size, off, n) {
			if off < 0 || n <= 0 || size < 0 || off > size || off+n > size || off+n < off {
				t.Fatalf("range off %d len %d accepted for an object of %d bytes", off, n, size)
			}
		}
	})
}
