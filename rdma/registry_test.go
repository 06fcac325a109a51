package rdma

import (
	"errors"
	"testing"
)

func TestChoose(t *testing.T) {
	all := []string{"shm", "tcp", "ucx"}
	cases := []struct {
		name         string
		same         bool
		mine, theirs []string
		sys, want    string
		insecure     bool
	}{
		{"same node uses shm", true, all, all, "testdata/sys-ib", "shm", false},
		{"other node with an active IB port uses ucx when the data plane is insecure", false, all, all, "testdata/sys-ib", "ucx", true},
		{"ucx is never chosen for an encrypted data plane", false, all, all, "testdata/sys-ib", "tcp", false},
		{"a down port means tcp", false, all, all, "testdata/sys-ib-down", "tcp", true},
		{"no ucx on the peer means tcp", false, all, []string{"shm", "tcp"}, "testdata/sys-ib", "tcp", true},
		{"peer without shm on this node means tcp", true, all, []string{"tcp"}, "testdata/sys-ib-down", "tcp", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := Choose(c.same, c.mine, c.theirs, c.sys, c.insecure); got != c.want {
				t.Fatalf("Choose = %s, want %s", got, c.want)
			}
		})
	}
}

func TestRegistry(t *testing.T) {
	if _, err := New("nosuch", Config{Secret: "s"}); err == nil {
		t.Fatal("an unknown backend was built")
	}
	Register("test-absent", func(Config) (Transport, error) { return nil, ErrNotSupported })
	if _, err := New("test-absent", Config{}); !errors.Is(err, ErrNotSupported) {
		t.Fatalf("a backend that cannot run: %v, want ErrNotSupported", err)
	}
	tr, err := New("tcp", Config{Secret: "s"})
	if err != nil || tr.Name() != "tcp" {
		t.Fatalf("New(tcp) = %v, %v", tr, err)
	}
}
