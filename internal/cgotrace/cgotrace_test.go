package cgotrace

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestCrashShowsCFrames crashes a child process inside libc and checks that the Go runtime's
// traceback names the C function, as a user debugging a crash in a C library would need.
func TestCrashShowsCFrames(t *testing.T) {
	if os.Getenv("SHOAL_CGOTRACE_CRASH") == "1" {
		crashInLibc()
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashShowsCFrames$")
	cmd.Env = append(os.Environ(), "SHOAL_CGOTRACE_CRASH=1", "GOTRACEBACK=crash")
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatal("the child did not crash")
	}
	s := string(out)
	if !strings.Contains(s, "SIGSEGV") {
		t.Fatalf("no SIGSEGV in the crash output:\n%s", s)
	}
	// glibc's strlen is an IFUNC resolved to a local symbol, so the frame is named by library
	// and offset; what matters is that the C frames are there, below the Go ones.
	if !strings.Contains(s, "libc.so.6+0x") {
		t.Fatalf("the traceback shows no C frame in libc:\n%s", firstLines(s, 40))
	}
}

func firstLines(s string, n int) string {
	l := strings.SplitN(s, "\n", n+1)
	if len(l) > n {
		l = l[:n]
	}
	return strings.Join(l, "\n")
}
