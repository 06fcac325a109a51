package ucx

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestABI compiles testdata/abi_check.c, which sets shoal's declarations of the ucp API
// (ucxabi.h) beside UCX's own headers, and fails on any size, offset or constant that
// differs. It needs the headers (Debian's libucx-dev, installed by scripts/deps.sh) and a C
// compiler; shoal itself builds without either.
func TestABI(t *testing.T) {
	if _, err := os.Stat("/usr/include/ucp/api/ucp.h"); err != nil {
		t.Skip("UCX headers are not installed (libucx-dev); nothing to compare ucxabi.h with")
	}
	cc, err := exec.LookPath("gcc")
	if err != nil {
		t.Skip("no C compiler (gcc) to build the ABI check")
	}
	bin := filepath.Join(t.TempDir(), "abi_check")
	if out, err := exec.Command(cc, "-Wall", "-o", bin, "testdata/abi_check.c").CombinedOutput(); err != nil {
		t.Fatalf("compile testdata/abi_check.c against UCX's headers: %v\n%s", err, out)
	}
	if out, err := exec.Command(bin).CombinedOutput(); err != nil {
		t.Fatalf("ucxabi.h differs from UCX's headers:\n%s", out)
	}
}
