package ucx

/*
#cgo LDFLAGS: -ldl
#include <stdlib.h>
#include "shim.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"sync"
	"unsafe"

	"github.com/shoal-hpc/shoal/rdma"
)

// DefaultLibrary is the soname opened when SHOAL_UCX_LIB is not set.
const DefaultLibrary = "libucp.so.0"

var (
	openOnce sync.Once
	openErr  error
	openPath string
)

// getenv reads the C library's environment, not the copy the Go runtime took at start-up: in
// a Go library loaded into another program (libshoalcoll in Python), variables set after the
// load are visible only there.
func getenv(key string) string {
	k := C.CString(key)
	defer C.free(unsafe.Pointer(k))
	if v := C.getenv(k); v != nil {
		return C.GoString(v)
	}
	return ""
}

// libraryPath is what Open loads: $SHOAL_UCX_LIB or DefaultLibrary.
func libraryPath() string {
	if p := getenv("SHOAL_UCX_LIB"); p != "" {
		return p
	}
	return DefaultLibrary
}

// Open loads libucp once per process and reports the library's version. Without the library
// (or with one lacking a symbol shoal needs) it returns an error wrapping
// rdma.ErrNotSupported that names the library and the reason. The first call decides: the
// dynamic loader cannot unload UCX safely, so a later call with another SHOAL_UCX_LIB
// returns the first result.
func Open() (version string, err error) {
	openOnce.Do(func() {
		openPath = libraryPath()
		p := C.CString(openPath)
		defer C.free(unsafe.Pointer(p))
		var buf [512]C.char
		if C.shoal_ucx_open(p, &buf[0], C.size_t(len(buf))) != 0 {
			openErr = fmt.Errorf("open UCX library %s: %s (install libucx0, or point SHOAL_UCX_LIB at libucp.so): %w",
				openPath, C.GoString(&buf[0]), rdma.ErrNotSupported)
			return
		}
		var maj, min, rel C.uint
		C.shoal_ucx_version(&maj, &min, &rel)
		if maj != 1 || min < 10 {
			openErr = fmt.Errorf("UCX %d.%d.%d at %s is too old, shoal needs 1.10 or later: %w",
				maj, min, rel, openPath, rdma.ErrNotSupported)
		}
	})
	if openErr != nil {
		return "", openErr
	}
	var maj, min, rel C.uint
	C.shoal_ucx_version(&maj, &min, &rel)
	return fmt.Sprintf("%d.%d.%d", maj, min, rel), nil
}

// ucsError is a failed UCX call: the action and UCX's status.
type ucsError struct {
	action string
	status int
}

func (e *ucsError) Error() string {
	return fmt.Sprintf("%s: %s", e.action, C.GoString(C.shoal_ucx_status_string(C.int(e.status))))
}

func statusErr(action string, st C.int) error {
	if st == C.SX_OK {
		return nil
	}
	return &ucsError{action: action, status: int(st)}
}

// isPeerGone reports whether err is UCX saying the peer went away.
func isPeerGone(err error) bool {
	var u *ucsError
	if !errors.As(err, &u) {
		return false
	}
	return u.status == C.SX_ERR_CONNECTION_RESET || u.status == C.SX_ERR_NOT_CONNECTED ||
		(u.status <= -40 && u.status > C.SX_ERR_LAST)
}
