package ipc

import (
	"strings"
	"testing"
)

func TestContainerIDText(t *testing.T) {
	for _, tc := range []struct {
		s     string
		want  ContainerID
		epoch int64
	}{
		{"container_1410901177871_0001_01_000005", ContainerID{ApplicationAttemptID{ApplicationID{1410901177871, 1}, 1}, 5}, 0},
		{"container_e17_1410901177871_0001_01_000005", ContainerID{ApplicationAttemptID{ApplicationID{1410901177871, 1}, 1}, 17<<40 | 5}, 17},
		{"container_1700000000000_12345_03_1234567", ContainerID{ApplicationAttemptID{ApplicationID{1700000000000, 12345}, 3}, 1234567}, 0},
	} {
		got, err := ParseContainerID(tc.s)
		if err != nil {
			t.Errorf("%s: %v", tc.s, err)
			continue
		}
		if got != tc.want || got.Epoch() != tc.epoch {
			t.Errorf("%s: %+v (epoch %d), want %+v", tc.s, got, got.Epoch(), tc.want)
		}
		if got.String() != tc.s {
			t.Errorf("String() = %s, want %s", got.String(), tc.s)
		}
	}
	a := ApplicationAttemptID{ApplicationID{1410901177871, 1}, 2}
	if a.String() != "appattempt_1410901177871_0001_000002" || a.App.String() != "application_1410901177871_0001" {
		t.Errorf("%s %s", a, a.App)
	}
	for _, bad := range []string{"", "container", "container_1_2_3", "containr_1_1_1_1", "container_x_1_1_1",
		"container_e_1_1_1_1", "container_1_1_1_1_1", "container_1_1_1_-1", "container_1_1_1_99999999999999", "application_1_1"} {
		if _, err := ParseContainerID(bad); err == nil || !strings.Contains(err.Error(), "CONTAINER_ID") {
			t.Errorf("ParseContainerID(%q) = %v, want an error naming the format", bad, err)
		}
	}
}

func FuzzParseContainerID(f *testing.F) {
	f.Add("container_1410901177871_0001_01_000005")
	f.Add("container_e17_1410901177871_0001_01_000005")
	f.Fuzz(func(t *testing.T, s string) {
		id, err := ParseContainerID(s)
		if err != nil {
			return
		}
		again, err := ParseContainerID(id.String())
		if err != nil || again != id {
			t.Fatalf("%q -> %s -> %+v, %v", s, id, again, err)
		}
	})
}

func TestRecordsRoundTrip(t *testing.T) {
	id := ContainerID{ApplicationAttemptID{ApplicationID{1700000000000, 7}, 2}, 3<<40 | 42}
	got, err := decodeContainerID(id.proto())
	if err != nil || got != id {
		t.Errorf("container id round trip: %+v, %v", got, err)
	}
	tok := Token{Identifier: []byte("i"), Password: []byte("p"), Kind: "ContainerToken", Service: "127.0.0.1:4444"}
	var node, c msg
	node.str(1, "nm-host")
	node.int(2, 4444)
	c.sub(1, id.proto())
	c.sub(2, node)
	c.str(3, "nm-host:8042")
	c.sub(4, Resource{MemoryMB: 1024, VCores: 2}.proto())
	var prio msg
	prio.int(1, 5)
	c.sub(5, prio)
	c.sub(6, tok.proto())
	c.int(7, 1) // execution_type, ignored
	ct, err := decodeContainer(c)
	if err != nil {
		t.Fatal(err)
	}
	want := Container{ID: id, NodeHost: "nm-host", NodePort: 4444, NodeHTTPAddress: "nm-host:8042",
		Resource: Resource{1024, 2}, Priority: 5, Token: tok}
	if ct.ID != want.ID || ct.NodeAddr() != "nm-host:4444" || ct.Resource != want.Resource || ct.Priority != 5 ||
		string(ct.Token.Password) != "p" || ct.Token.Service != tok.Service || ct.NodeHTTPAddress != want.NodeHTTPAddress {
		t.Errorf("decodeContainer = %+v", ct)
	}
	var st msg
	st.sub(1, id.proto())
	st.int(2, 3)
	st.str(3, "Container killed by the ApplicationMaster.")
	st.int(4, -105)
	s, err := decodeContainerStatus(st)
	if err != nil || s.ID != id || s.State != "COMPLETE" || s.ExitStatus != -105 || !strings.Contains(s.Diagnostics, "killed") {
		t.Errorf("decodeContainerStatus = %+v, %v", s, err)
	}
	// a wire type that does not match the field is an error, not a zero
	var wrong msg
	wrong.str(4, "not a number")
	if _, err := decodeContainerStatus(wrong); err == nil {
		t.Error("exit_status as a string was accepted")
	}
}

// FuzzDecodeRecords feeds server-sent messages to every decoder.
func FuzzDecodeRecords(f *testing.F) {
	id := ContainerID{ApplicationAttemptID{ApplicationID{1700000000000, 7}, 2}, 42}
	var st msg
	st.sub(1, id.proto())
	st.int(2, 3)
	st.int(4, -105)
	f.Add([]byte(st))
	f.Add([]byte(id.proto()))
	f.Fuzz(func(t *testing.T, b []byte) {
		decodeContainer(b)
		decodeContainerStatus(b)
		decodeContainerID(b)
		decodeToken(b)
		decodeSasl(b)
		decodeContainerException(b)
		containerResult(b, id, 2, 3)
		a := &AMRMClient{nmTokens: map[string]Token{}}
		a.cacheNMToken(b)
	})
}
