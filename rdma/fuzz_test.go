package rdma

import (
	"encoding/binary"
	"syscall"
	"testing"
)

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

// FuzzParseShmAuth: the first message an shm listener reads from anyone on the node.
func FuzzParseShmAuth(f *testing.F) {
	f.Add(make([]byte, shmAuthLen))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		proof, nonce, err := parseShmAuth(b)
		if err == nil && (len(b) != shmAuthLen || len(proof) != 32 || len(nonce) != 32) {
			t.Fatalf("accepted %d bytes as proof %x nonce %x", len(b), proof, nonce)
		}
	})
}

// FuzzParseShmRing: the ring message (size and control message) of an authenticated dialer.
// The fuzzer's control messages carry no real descriptors: an accepted one must be exactly one
// SCM_RIGHTS descriptor with the right size, and a refused one must have closed nothing it
// did not parse (descriptors 0-2 are never named by the seeds).
func FuzzParseShmRing(f *testing.F) {
	size := make([]byte, 8)
	binary.LittleEndian.PutUint64(size, 4<<20)
	f.Add(size, syscall.UnixRights(1<<20))
	f.Add(size, []byte{})
	f.Add([]byte{1}, syscall.UnixRights(1<<20, 1<<20+1))
	f.Fuzz(func(t *testing.T, buf, oob []byte) {
		// descriptors named in fuzzed input are replaced by ones far above what this process
		// has open, so that a refused message's close hits nothing
		msgs, err := syscall.ParseSocketControlMessage(oob)
		if err != nil {
			return
		}
		for _, m := range msgs {
			if m.Header.Level == syscall.SOL_SOCKET && m.Header.Type == syscall.SCM_RIGHTS && len(m.Data)%4 == 0 {
				fds, err := syscall.ParseUnixRights(&m)
				if err != nil {
					return
				}
				for _, fd := range fds {
					if fd < 1<<20 {
						return
					}
				}
			}
		}
		fd, err := parseShmRing(buf, oob, 4<<20)
		if err == nil && (len(buf) != 8 || binary.LittleEndian.Uint64(buf) != 4<<20 || fd < 0) {
			t.Fatalf("accepted %x %x as descriptor %d", buf, oob, fd)
		}
	})
}
