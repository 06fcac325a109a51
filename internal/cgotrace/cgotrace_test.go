package cgotrace

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// crashChild re-runs this test binary with SHOAL_CGOTRACE_CRASH set and returns its output.
func crashChild(t *testing.T, test string, env ...string) string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^"+test+"$")
	cmd.Env = append(append(os.Environ(), "SHOAL_CGOTRACE_CRASH=1", "GOTRACEBACK=crash"), env...)
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("the child did not crash:\n%s", out)
	}
	if !strings.Contains(string(out), "SIGSEGV") {
		t.Fatalf("no SIGSEGV in the crash output:\n%s", out)
	}
	return string(out)
}

// TestCrashInLoadedLibraryNamesTheCFunction crashes inside a C function of a library opened at
// run time (as NCCL and UCX are), and checks that the traceback names that function.
func TestCrashInLoadedLibraryNamesTheCFunction(t *testing.T) {
	if lib := os.Getenv("SHOAL_CGOTRACE_LIB"); lib != "" && os.Getenv("SHOAL_CGOTRACE_CRASH") == "1" {
		if err := callInLibrary(lib, "shoal_test_crash_here"); err != nil {
			t.Fatal(err)
		}
		return
	}
	cc, err := exec.LookPath("gcc")
	if err != nil {
		t.Skip("gcc is not installed; it builds the library that crashes")
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "crash.c")
	os.WriteFile(src, []byte(`
void shoal_test_crash_here(void) {
	volatile int* p = 0;
	*p = 42;
}
`), 0o644)
	lib := filepath.Join(dir, "libshoalcrash.so")
	if out, err := exec.Command(cc, "-shared", "-fPIC", "-O0", "-o", lib, src).CombinedOutput(); err != nil {
		t.Fatalf("build the test library: %v\n%s", err, out)
	}
	out := crashChild(t, "TestCrashInLoadedLibraryNamesTheCFunction", "SHOAL_CGOTRACE_LIB="+lib)
	if !strings.Contains(out, "shoal_test_crash_here") || !strings.Contains(out, "libshoalcrash.so") {
		t.Fatalf("the traceback does not name the C function:\n%s", firstLines(out, 40))
	}
}

// TestCrashInLibcShowsCFrames crashes inside libc's strlen: glibc resolves it to a local
// symbol, so the frame is named by library and offset.
func TestCrashInLibcShowsCFrames(t *testing.T) {
	if os.Getenv("SHOAL_CGOTRACE_CRASH") == "1" && os.Getenv("SHOAL_CGOTRACE_LIB") == "" {
		crashInLibc()
		return
	}
	out := crashChild(t, "TestCrashInLibcShowsCFrames")
	if !strings.Contains(out, "libc.so.6+0x") {
		t.Fatalf("the traceback shows no C frame in libc:\n%s", firstLines(out, 40))
	}
}

func firstLines(s string, n int) string {
	l := strings.SplitN(s, "\n", n+1)
	if len(l) > n {
		l = l[:n]
	}
	return strings.Join(l, "\n")
}
