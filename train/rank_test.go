package train

import (
	"errors"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func pollDone(t *testing.T, r *RankActor) Status {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		st, err := r.Poll(200, 0)
		if err != nil {
			t.Fatal(err)
		}
		if st.Done {
			return st
		}
	}
	t.Fatal("the rank's process did not exit")
	return Status{}
}

func TestRankActorRunsReportsAndRestarts(t *testing.T) {
	r, err := NewRankActor()
	if err != nil {
		t.Fatal(err)
	}
	script := `echo "rank $RANK up"; echo '{"metrics":{"step":3},"checkpoint":"/ck/3"}' >&$SHOAL_TRAIN_REPORT_FD; ` +
		`echo '{"metrics":{"step":4}}' >&$SHOAL_TRAIN_REPORT_FD; test -z "$SLURM_PROCID" || echo leaked; exit 3`
	spec := StartSpec{Argv: []string{"sh", "-c", script}, Env: []string{"RANK=5"}, Prefix: "[rank5]: "}
	t.Setenv("SLURM_PROCID", "7") // the worker's own environment: the rank must not inherit it
	if _, err := r.Start(spec); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Start(spec); err == nil {
		t.Fatal("a second Start while the process runs must fail")
	}
	st := pollDone(t, r)
	if st.Code != 3 || st.Tail != "rank 5 up" || st.Reports != 2 || st.Last == nil || st.Last.Checkpoint != "/ck/3" {
		t.Fatalf("status = %+v (last %+v), want exit 3, tail %q, 2 reports, checkpoint /ck/3", st, st.Last, "rank 5 up")
	}
	// the next attempt on the same actor
	if _, err := r.Start(StartSpec{Argv: []string{"sh", "-c", "echo again"}}); err != nil {
		t.Fatal(err)
	}
	st = pollDone(t, r)
	if st.Code != 0 || st.Tail != "again" || st.Last != nil {
		t.Fatalf("second attempt: %+v", st)
	}
}

func TestRankActorStop(t *testing.T) {
	r, _ := NewRankActor()
	// a rank that saves on SIGTERM
	if _, err := r.Start(StartSpec{Argv: []string{"sh", "-c", `trap 'echo saved; exit 0' TERM; echo up; while :; do sleep 0.05; done`}}); err != nil {
		t.Fatal(err)
	}
	for st, _ := r.Poll(50, 0); st.Tail != "up"; st, _ = r.Poll(50, 0) {
	}
	st, _ := r.Stop(5000)
	if !st.Done || st.Code != 0 || !strings.HasSuffix(st.Tail, "saved") {
		t.Fatalf("SIGTERM: %+v, want a clean exit after saving", st)
	}
	// one that ignores SIGTERM is killed after the grace period
	if _, err := r.Start(StartSpec{Argv: []string{"sh", "-c", `trap '' TERM; echo up; while :; do sleep 0.05; done`}}); err != nil {
		t.Fatal(err)
	}
	for st, _ := r.Poll(50, 0); st.Tail != "up"; st, _ = r.Poll(50, 0) {
	}
	st, _ = r.Stop(200)
	if !st.Done || st.Code != 128+int(syscall.SIGKILL) || st.Signal != "SIGKILL" {
		t.Fatalf("a rank ignoring SIGTERM: %+v, want killed by SIGKILL", st)
	}
}

func TestReservePortHoldsThePortForTheRank(t *testing.T) {
	r, _ := NewRankActor()
	port, err := r.ReservePort()
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := r.ReservePort(); again != port {
		t.Fatalf("ReservePort twice: %d then %d", port, again)
	}
	// another program's plain bind fails
	fd, _ := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
	err = unix.Bind(fd, &unix.SockaddrInet4{Port: port})
	unix.Close(fd)
	if !errors.Is(err, unix.EADDRINUSE) {
		t.Fatalf("plain bind of the reserved port %d: %v, want EADDRINUSE", port, err)
	}
	// the rank's listener (SO_REUSEADDR, as torch's TCPStore) binds and listens
	fd, _ = unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
	unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
	if err := unix.Bind(fd, &unix.SockaddrInet4{Port: port}); err != nil {
		t.Fatalf("SO_REUSEADDR bind of the reserved port: %v", err)
	}
	if err := unix.Listen(fd, 1); err != nil {
		t.Fatalf("listen on the reserved port: %v", err)
	}
	c, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", itoa(port)))
	if err != nil {
		t.Fatalf("connect to the rank's listener: %v", err)
	}
	c.Close()
	unix.Close(fd)
	r.Stop(100)
	if r.portFD != -1 {
		t.Fatal("Stop must give the port back")
	}
}

func TestSignalIsNotPassedTwice(t *testing.T) {
	r, _ := NewRankActor()
	if _, err := r.Start(StartSpec{Argv: []string{"sh", "-c", `trap 'echo usr1' USR1; echo up; while :; do sleep 0.05; done`}}); err != nil {
		t.Fatal(err)
	}
	defer r.Stop(100)
	for st, _ := r.Poll(50, 0); st.Tail != "up"; st, _ = r.Poll(50, 0) {
	}
	if sent, _ := r.Signal(int(syscall.SIGUSR1)); !sent {
		t.Fatal("a signal from shoal train alone must reach the rank")
	}
	r.mu.Lock()
	r.direct[syscall.SIGUSR1] = time.Now() // as when Slurm signalled the whole step
	r.mu.Unlock()
	if sent, _ := r.Signal(int(syscall.SIGUSR1)); sent {
		t.Fatal("a signal the worker just got from Slurm itself must not be passed on again")
	}
	// Slurm's own copy may come a little after the one shoal train passes on
	r.mu.Lock()
	delete(r.direct, syscall.SIGUSR1)
	r.mu.Unlock()
	go func() {
		time.Sleep(50 * time.Millisecond)
		r.mu.Lock()
		r.direct[syscall.SIGUSR1] = time.Now()
		r.mu.Unlock()
	}()
	if sent, _ := r.Signal(int(syscall.SIGUSR1)); sent {
		t.Fatal("a signal Slurm delivered to the worker just after shoal train's copy must not be passed on again")
	}
	for st, _ := r.Poll(50, 0); !strings.Contains(st.Tail, "usr1"); st, _ = r.Poll(50, 0) {
	}
}
