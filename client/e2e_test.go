package client_test

// End-to-end tests: real `shoal run` clusters, real worker processes. The example program is
// built and run as a user would; the other scenarios run this test binary as the driver
// (selected by scenarioEnv), and the agent starts its workers by exec'ing this same binary,
// which TestMain turns into a worker through client.Init.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shoal-hpc/shoal/client"
)

const scenarioEnv = "SHOAL_GOSDK_TEST_SCENARIO"

// Acc is the test actor.
type Acc struct{ items []string }

func (a *Acc) Push(s string) (int, error) { a.items = append(a.items, s); return len(a.items), nil }
func (a *Acc) Items() []string            { return a.items }
func (a *Acc) Fail(msg string) error      { return errors.New(msg) }

func register() {
	client.Register("fail", func(msg string) (int, error) { return 0, errors.New(msg) })
	client.Register("panic", func(msg string) int { panic(msg) })
	client.Register("inc", func(x int) int { return x + 1 })
	client.Register("sum", func(xs ...int) int {
		n := 0
		for _, x := range xs {
			n += x
		}
		return n
	})
	client.Register("digest", func(b []byte) string { return fmt.Sprintf("%d:%x", len(b), sha256.Sum256(b)) })
	client.Register("pattern", func(n int) []byte { return pattern(n) })
	client.Register("block", func() int { select {} })
	client.Register("nested", func(ctx context.Context, x int) (int, error) {
		c, ok := client.FromContext(ctx)
		if !ok {
			return 0, errors.New("no client in the task's context")
		}
		ref, err := c.Submit("inc", x)
		if err != nil {
			return 0, err
		}
		var out int
		err = c.Get(ctx, ref, &out)
		return out * 10, err
	})
	client.Register("deref", func(ctx context.Context, refs []client.ObjectRef) (int, error) {
		c, _ := client.FromContext(ctx)
		var vals []int
		if err := c.GetAll(ctx, refs, &vals); err != nil {
			return 0, err
		}
		n := 0
		for _, v := range vals {
			n += v
		}
		return n, nil
	})
	client.RegisterActor("Acc", func(first string) (*Acc, error) {
		if first == "" {
			return nil, errors.New("Acc needs a first item")
		}
		return &Acc{items: []string{first}}, nil
	})
}

func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i/4096)
	}
	return b
}

var build struct {
	once sync.Once
	dir  string
	err  error
}

func TestMain(m *testing.M) {
	register()
	if os.Getenv("SHOAL_WORKER_ID") != "" {
		client.Init() // serves tasks; never returns
	}
	if s := os.Getenv(scenarioEnv); s != "" {
		os.Exit(runScenario(s))
	}
	code := m.Run()
	if build.dir != "" {
		os.RemoveAll(build.dir)
	}
	os.Exit(code)
}

// binaries builds bin/shoal and the example once for all tests.
func binaries(t *testing.T) (shoal, example string) {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("the go tool is not on PATH; these tests build shoal and the example with it")
	}
	build.once.Do(func() {
		build.dir, build.err = os.MkdirTemp("", "shoal-gosdk-test-")
		if build.err != nil {
			return
		}
		for _, b := range [][2]string{{"shoal", "github.com/shoal-hpc/shoal/cmd/shoal"}, {"shoal-go-example", "github.com/shoal-hpc/shoal/examples/go"}} {
			out, err := exec.Command(goTool, "build", "-o", filepath.Join(build.dir, b[0]), b[1]).CombinedOutput()
			if err != nil {
				build.err = fmt.Errorf("go build %s: %v\n%s", b[1], err, out)
				return
			}
		}
	})
	if build.err != nil {
		t.Fatal(build.err)
	}
	return filepath.Join(build.dir, "shoal"), filepath.Join(build.dir, "shoal-go-example")
}

// shoalRun runs `shoal run -- argv...` on a fresh 4-CPU cluster and returns the combined
// output and the exit code.
func shoalRun(t *testing.T, env []string, argv ...string) (string, int) {
	t.Helper()
	shoal, _ := binaries(t)
	ctx := context.Background()
	if dl, ok := t.Deadline(); ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, dl.Add(-10*time.Second))
		defer cancel()
	}
	args := append([]string{"run", "--num-cpus", "4", "--object-store-memory", "268435456", "--tmpdir", t.TempDir(), "--"}, argv...)
	cmd := exec.CommandContext(ctx, shoal, args...)
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "SHOAL_") { // not the cluster this test may itself run in
			cmd.Env = append(cmd.Env, e)
		}
	}
	cmd.Env = append(cmd.Env, env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	code := 0
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatalf("shoal run: %v\n%s", err, out.String())
		}
		code = ee.ExitCode()
	}
	return out.String(), code
}

// scenario runs this test binary as the driver of scenario name and checks that it passed.
func scenario(t *testing.T, name string) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	out, code := shoalRun(t, []string{scenarioEnv + "=" + name}, self)
	if code != 0 || !strings.Contains(out, "scenario "+name+": passed") || strings.Contains(out, "DATA RACE") {
		t.Fatalf("scenario %s exited %d:\n%s", name, code, out)
	}
	return out
}

func TestExampleEndToEnd(t *testing.T) {
	_, example := binaries(t)
	out, code := shoalRun(t, nil, example)
	if code != 0 || strings.Contains(out, "DATA RACE") {
		t.Fatalf("the example exited %d:\n%s", code, out)
	}
	for _, want := range []string{
		"squares of 0..19: [0 1 4 9 16 25 36 49 64 81 100 121 144 169 196 225 256 289 324 361]",
		"sum of squares: 2470",
		"square(square(7)): 2401",
		"counter: 25 after adding 1..5 to 10 (looked up by name: 25)",
		"summary: 20 tasks, 1 chained task, 1 actor with 6 calls: ok",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the example's output lacks %q:\n%s", want, out)
		}
	}
}

func TestTaskErrorEndToEnd(t *testing.T) { scenario(t, "task_error") }

func TestLargeObjectsEndToEnd(t *testing.T) { scenario(t, "large") }

func TestTasksAndActorsEndToEnd(t *testing.T) { scenario(t, "api") }

// TestSmallPutsPastAFullStoreEndToEnd: small puts past the store's budget (256 MiB) with a
// 1 MiB spill directory (a tmpfs the test mounts: root only) are refused, and the putter's
// own gets say so (ErrStoreFull) instead of answering from the bytes it kept.
func TestSmallPutsPastAFullStoreEndToEnd(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs as the spill directory needs root")
	}
	spill := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m,mode=0755", "tmpfs", spill).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs here: %v %s", err, out)
	}
	defer exec.Command("umount", "-l", spill).Run()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	out, code := shoalRun(t, []string{scenarioEnv + "=store_full", "SHOAL_SPILL_DIR=" + spill}, self)
	if code != 0 || !strings.Contains(out, "scenario store_full: passed") {
		t.Fatalf("scenario store_full exited %d:\n%s", code, out)
	}
}

// runScenario is the driver side of a scenario; it prints what it checked and returns the
// exit code.
func runScenario(name string) int {
	c, err := client.Init()
	if err != nil {
		fmt.Println("FAIL:", err)
		return 1
	}
	defer c.Close()
	// A generous bound so that a bug hangs no test run; no check depends on it.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	run := map[string]func(context.Context, *client.Client) error{
		"task_error": scenarioTaskError,
		"large":      scenarioLarge,
		"api":        scenarioAPI,
		"pg":         scenarioPG,
		"store_full": scenarioStoreFull,
	}[name]
	if run == nil {
		fmt.Println("FAIL: unknown scenario", name)
		return 1
	}
	if err := run(ctx, c); err != nil {
		fmt.Printf("FAIL: scenario %s: %v\n", name, err)
		return 1
	}
	fmt.Printf("scenario %s: passed\n", name)
	return 0
}

func scenarioTaskError(ctx context.Context, c *client.Client) error {
	ref, err := c.Submit("fail", "the disk is on fire")
	if err != nil {
		return err
	}
	var out int
	err = c.Get(ctx, ref, &out)
	var te *client.TaskError
	if !errors.As(err, &te) || te.Kind != client.KindTaskError || !strings.Contains(te.Msg, "the disk is on fire") {
		return fmt.Errorf("get of a failing task returned %v, want a *client.TaskError with the message", err)
	}
	fmt.Println("task error:", err)

	// A task whose argument failed fails with the same error, without running.
	dep, err := c.Submit("inc", ref)
	if err != nil {
		return err
	}
	if err := c.Get(ctx, dep, &out); !errors.As(err, &te) || !strings.Contains(te.Msg, "the disk is on fire") {
		return fmt.Errorf("a task on a failed argument returned %v", err)
	}

	ref, err = c.Submit("panic", "unexpected state")
	if err != nil {
		return err
	}
	if err := c.Get(ctx, ref, &out); !errors.As(err, &te) || !strings.Contains(te.Msg, "panic: unexpected state") {
		return fmt.Errorf("a panicking task returned %v", err)
	}

	// A wrong argument type is the task's error, named.
	ref, err = c.Submit("inc", "seven")
	if err != nil {
		return err
	}
	if err := c.Get(ctx, ref, &out); !errors.As(err, &te) || !strings.Contains(te.Msg, "argument 1") {
		return fmt.Errorf("a badly typed argument returned %v", err)
	}

	// Errors found before submitting.
	if _, err := c.Submit("no-such-function"); err == nil {
		return errors.New("submitting an unregistered function succeeded")
	}
	if _, err := c.Submit("inc", 1, 2); err == nil {
		return errors.New("submitting with too many arguments succeeded")
	}

	// An infeasible task fails at once with ErrInfeasible.
	ref, err = c.Task("inc").Options(client.CPUs(1000)).Remote(1)
	if err != nil {
		return err
	}
	if err := c.Get(ctx, ref, &out); !errors.Is(err, client.ErrInfeasible) {
		return fmt.Errorf("an infeasible task returned %v", err)
	}

	// A value that never comes: Get gives up when its context ends.
	never, err := c.Submit("block")
	if err != nil {
		return err
	}
	expired, cancel := context.WithDeadline(ctx, time.Now().Add(-time.Second))
	defer cancel()
	if err := c.Get(expired, never, &out); !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("get with an expired context returned %v", err)
	}
	ready, notReady, err := c.Wait(expired, []client.ObjectRef{never}, 1)
	if !errors.Is(err, context.DeadlineExceeded) || len(ready) != 0 || len(notReady) != 1 {
		return fmt.Errorf("wait with an expired context returned %v, %v, %v", ready, notReady, err)
	}
	return nil
}

func scenarioStoreFull(ctx context.Context, c *client.Client) error {
	const n, size = 3400, 90 << 10 // 300 MiB of small objects into a 256 MiB store
	refs := make([]client.ObjectRef, n)
	for i := range refs {
		b := bytes.Repeat([]byte{byte(i)}, size)
		ref, err := c.Put(b)
		if err != nil {
			return fmt.Errorf("put %d: %w", i, err)
		}
		refs[i] = ref
	}
	// answered after the READY pushes of the puts the agent refused
	ref, err := c.Submit("inc", 1)
	if err != nil {
		return err
	}
	var x int
	if err := c.Get(ctx, ref, &x); err != nil {
		return err
	}
	readable, refused := 0, 0
	var msg string
	for i, ref := range refs {
		var b []byte
		err := c.Get(ctx, ref, &b)
		switch {
		case err == nil && len(b) == size && b[0] == byte(i):
			readable++
		case errors.Is(err, client.ErrStoreFull):
			refused++
			msg = err.Error()
		default:
			return fmt.Errorf("get %d: %d bytes, %v", i, len(b), err)
		}
	}
	fmt.Printf("%d readable, %d refused: %s\n", readable, refused, msg)
	if readable == 0 || refused == 0 || !strings.Contains(msg, "--spill-dir") {
		return fmt.Errorf("want some readable and some refused with an error naming --spill-dir")
	}
	return nil
}

func scenarioLarge(ctx context.Context, c *client.Client) error {
	const size = 2 << 20
	in := pattern(size)
	ref, err := c.Put(in)
	if err != nil {
		return err
	}
	var out []byte
	if err := c.Get(ctx, ref, &out); err != nil {
		return err
	}
	if !bytes.Equal(in, out) {
		return fmt.Errorf("put %d bytes, got back %d different bytes", len(in), len(out))
	}
	fmt.Printf("put and got %d bytes\n", len(out))

	want := fmt.Sprintf("%d:%x", size, sha256.Sum256(in))
	var digest string
	// The stored object as a task's argument: the worker maps it.
	d1, err := c.Submit("digest", ref)
	if err != nil {
		return err
	}
	if err := c.Get(ctx, d1, &digest); err != nil || digest != want {
		return fmt.Errorf("digest of the put object = %q, %v; want %q", digest, err, want)
	}
	// Large arguments travel as an argument object.
	d2, err := c.Submit("digest", in)
	if err != nil {
		return err
	}
	if err := c.Get(ctx, d2, &digest); err != nil || digest != want {
		return fmt.Errorf("digest of a large argument = %q, %v; want %q", digest, err, want)
	}
	// A large return value is written into the store by the worker.
	big, err := c.Submit("pattern", 3<<20)
	if err != nil {
		return err
	}
	if err := c.Get(ctx, big, &out); err != nil {
		return err
	}
	if !bytes.Equal(out, pattern(3<<20)) {
		return fmt.Errorf("a task's large result came back different (%d bytes)", len(out))
	}
	// GetAll mixes stored and inline objects.
	small, err := c.Put([]byte("small"))
	if err != nil {
		return err
	}
	var both [][]byte
	if err := c.GetAll(ctx, []client.ObjectRef{ref, small}, &both); err != nil {
		return err
	}
	if len(both) != 2 || !bytes.Equal(both[0], in) || string(both[1]) != "small" {
		return errors.New("get all of a large and a small object came back different")
	}
	// After Release the object is freed.
	ref.Release()
	small.Release()
	if err := c.Get(ctx, ref, &out); !errors.Is(err, client.ErrObjectLost) {
		return fmt.Errorf("get after release returned %v, want ErrObjectLost", err)
	}
	return nil
}

func scenarioAPI(ctx context.Context, c *client.Client) error {
	res, err := c.ClusterResources()
	if err != nil {
		return err
	}
	if res["CPU"] != 4 {
		return fmt.Errorf("cluster resources = %v, want 4 CPUs", res)
	}

	// Chains, variadic functions, and refs mixed with values.
	a, err := c.Submit("inc", 1)
	if err != nil {
		return err
	}
	b, err := c.Submit("inc", a)
	if err != nil {
		return err
	}
	p, err := c.Put(100)
	if err != nil {
		return err
	}
	s, err := c.Submit("sum", a, b, p, 1000)
	if err != nil {
		return err
	}
	var n int
	if err := c.Get(ctx, s, &n); err != nil || n != 2+3+100+1000 {
		return fmt.Errorf("sum = %d, %v; want 1105", n, err)
	}
	// A task that submits a task.
	nested, err := c.Submit("nested", 4)
	if err != nil {
		return err
	}
	if err := c.Get(ctx, nested, &n); err != nil || n != 50 {
		return fmt.Errorf("nested = %d, %v; want 50", n, err)
	}
	// More tasks that wait for tasks than there are CPUs: a waiting worker gives its CPU back.
	fan := make([]client.ObjectRef, 8)
	for i := range fan {
		if fan[i], err = c.Submit("nested", i); err != nil {
			return err
		}
	}
	var fanOut []int
	if err := c.GetAll(ctx, fan, &fanOut); err != nil || fmt.Sprint(fanOut) != "[10 20 30 40 50 60 70 80]" {
		return fmt.Errorf("nested fan-out = %v, %v", fanOut, err)
	}
	// Refs inside values are borrowed by whoever decodes them, and kept alive by the object
	// that holds them.
	v1, err := c.Put(5)
	if err != nil {
		return err
	}
	v2, err := c.Submit("inc", 6)
	if err != nil {
		return err
	}
	box, err := c.Put([]client.ObjectRef{v1, v2})
	if err != nil {
		return err
	}
	v1.Release()
	total, err := c.Submit("deref", box)
	if err != nil {
		return err
	}
	if err := c.Get(ctx, total, &n); err != nil || n != 12 {
		return fmt.Errorf("sum of boxed refs = %d, %v; want 12", n, err)
	}
	var boxed []client.ObjectRef
	if err := c.Get(ctx, box, &boxed); err != nil || len(boxed) != 2 {
		return fmt.Errorf("boxed refs = %v, %v", boxed, err)
	}
	if ready, _, err := c.Wait(ctx, boxed, 2); err != nil || len(ready) != 2 {
		return fmt.Errorf("wait on borrowed refs = %v, %v", ready, err)
	}
	if err := c.Get(ctx, boxed[0], &n); err != nil || n != 5 {
		return fmt.Errorf("borrowed ref = %d, %v; want 5", n, err)
	}

	// Wait: all of some finished tasks.
	refs := make([]client.ObjectRef, 6)
	for i := range refs {
		if refs[i], err = c.Submit("inc", i); err != nil {
			return err
		}
	}
	ready, notReady, err := c.Wait(ctx, refs, 6)
	if err != nil || len(ready) != 6 || len(notReady) != 0 {
		return fmt.Errorf("wait for 6 of 6 = %d ready, %d not, %v", len(ready), len(notReady), err)
	}
	never, err := c.Submit("block")
	if err != nil {
		return err
	}
	ready, notReady, err = c.Wait(ctx, append(refs[:2:2], never), 2)
	if err != nil || len(ready) != 2 || len(notReady) != 1 || notReady[0] != never {
		return fmt.Errorf("wait for 2 of 3 = %v ready, %v not, %v", ready, notReady, err)
	}

	// Actors: named, looked up, called in order, killed.
	acc, err := c.NewActor("Acc", "a", client.Name("acc"), client.Namespace("test"))
	if err != nil {
		return err
	}
	if err := acc.Ready(ctx); err != nil {
		return err
	}
	if _, err := c.NewActor("Acc", "b", client.Name("acc"), client.Namespace("test")); err == nil {
		return errors.New("a second actor got a taken name")
	}
	same, err := c.GetActor("acc", client.Namespace("test"))
	if err != nil {
		return err
	}
	for _, item := range []string{"b", "c", "d"} {
		if _, err := same.Call("Push", item); err != nil {
			return err
		}
	}
	items, err := acc.Call("Items")
	if err != nil {
		return err
	}
	var got []string
	if err := c.Get(ctx, items, &got); err != nil || strings.Join(got, "") != "abcd" {
		return fmt.Errorf("actor items = %v, %v; want [a b c d]", got, err)
	}
	failed, err := acc.Call("Fail", "method said no")
	if err != nil {
		return err
	}
	var te *client.TaskError
	if err := c.Get(ctx, failed, nil); !errors.As(err, &te) || !strings.Contains(te.Msg, "method said no") {
		return fmt.Errorf("a failing method returned %v", err)
	}
	if _, err := acc.Call("NoSuchMethod"); err == nil {
		return errors.New("calling a missing method succeeded")
	}
	if _, err := c.GetActor("nobody", client.Namespace("test")); !errors.Is(err, client.ErrNotFound) {
		return fmt.Errorf("get actor of an unknown name returned %v, want ErrNotFound", err)
	}
	if err := c.Kill(acc); err != nil {
		return err
	}
	after, err := acc.Call("Items")
	if err != nil {
		return err
	}
	if err := c.Get(ctx, after, &got); !errors.Is(err, client.ErrActorDied) {
		return fmt.Errorf("a call after kill returned %v, want ErrActorDied", err)
	}
	// A constructor that fails: the actor is dead and its calls fail.
	bad, err := c.NewActor("Acc", "")
	if err != nil {
		return err
	}
	if err := bad.Ready(ctx); err == nil || !strings.Contains(err.Error(), "needs a first item") && !errors.Is(err, client.ErrActorDied) {
		return fmt.Errorf("a failing constructor gave %v", err)
	}
	call, err := bad.Call("Items")
	if err != nil {
		return err
	}
	if err := c.Get(ctx, call, &got); !errors.Is(err, client.ErrActorDied) {
		return fmt.Errorf("a call on an actor whose constructor failed returned %v", err)
	}
	return nil
}
