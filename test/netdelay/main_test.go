package main

import (
	"encoding/binary"
	"testing"

	"github.com/mdlayher/netlink"
)

func packetMsg(t testing.TB, id uint32) []byte {
	ae := netlink.NewAttributeEncoder()
	hdr := make([]byte, 7)
	binary.BigEndian.PutUint32(hdr, id)
	binary.BigEndian.PutUint16(hdr[4:], 0x0800)
	hdr[6] = 3 // NF_INET_LOCAL_OUT
	ae.Bytes(attrPacketHdr, hdr)
	ae.Bytes(11, []byte{0, 0, 0, 5}) // NFQA_IFINDEX_OUTDEV, which netdelay does not read
	b, err := ae.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return append(nfgen(7), b...)
}

func TestPacketID(t *testing.T) {
	if id, ok := packetID(packetMsg(t, 0xdeadbeef)); !ok || id != 0xdeadbeef {
		t.Fatalf("packetID = %#x, %v; want 0xdeadbeef, true", id, ok)
	}
	for _, bad := range [][]byte{nil, {1, 2}, nfgen(7), append(nfgen(7), 5, 0, 1, 0, 9)} {
		if _, ok := packetID(bad); ok {
			t.Errorf("packetID(%x) = ok; want no id", bad)
		}
	}
}

// FuzzPacketID: whatever the kernel (or anything on the netlink socket) sends, packetID
// neither panics nor reads past the message.
func FuzzPacketID(f *testing.F) {
	f.Add(packetMsg(f, 1))
	f.Add(packetMsg(f, 0))
	f.Add([]byte{0, 0, 0, 7, 4, 0, 1, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		packetID(b)
	})
}
