// Package cgotrace makes crash tracebacks show C frames: it installs a runtime.SetCgoTraceback
// hook whose unwinder is glibc's backtrace(3) and whose symbolizer is dladdr(3). It stands in
// for github.com/ianlancetaylor/cgosymbolizer, which the module proxy refuses.
//
// Import it for its side effect, in main only:
//
//	import _ "github.com/shoal-hpc/shoal/internal/cgotrace"
//
// Names come from the dynamic symbol table, so functions of shared libraries (libc,
// libsqlite3, libnccl) are named; static functions of the binary show as addresses.
package cgotrace

/*
#cgo LDFLAGS: -ldl
#define _GNU_SOURCE
#include <dlfcn.h>
#include <execinfo.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct cgoTracebackArg {
	uintptr_t  Context;
	uintptr_t  SigContext;
	uintptr_t* Buf;
	uintptr_t  Max;
};

struct cgoSymbolizerArg {
	uintptr_t   PC;
	const char* File;
	uintptr_t   Lineno;
	const char* Func;
	uintptr_t   Entry;
	uintptr_t   More;
	uintptr_t   Data;
};

// shoalCgoTraceback unwinds the C stack of the current thread. backtrace() was called once at
// init, so its lazy loading of libgcc_s already happened and it is safe in a signal handler.
static void shoalCgoTraceback(void* parg) {
	struct cgoTracebackArg* arg = (struct cgoTracebackArg*)parg;
	void* pcs[64];
	int n, i, skip = 1; // this function
	if (arg->Context != 0 || arg->Max == 0) {
		if (arg->Max > 0) arg->Buf[0] = 0;
		return;
	}
	n = backtrace(pcs, 64);
	for (i = 0; i + skip < n && (uintptr_t)i < arg->Max; i++) {
		arg->Buf[i] = (uintptr_t)pcs[i + skip];
	}
	if ((uintptr_t)i < arg->Max) arg->Buf[i] = 0;
}

static void shoalCgoSymbolizer(void* parg) {
	struct cgoSymbolizerArg* arg = (struct cgoSymbolizerArg*)parg;
	Dl_info info;
	memset(&info, 0, sizeof info);
	arg->More = 0;
	if (arg->PC != 0 && dladdr((void*)arg->PC, &info) != 0) {
		arg->Func = info.dli_sname;
		arg->Entry = (uintptr_t)info.dli_saddr;
		arg->File = info.dli_fname;
		arg->Lineno = 0;
		if (arg->Func == 0 && info.dli_fname != 0) {
			// a local symbol (glibc's __strlen_avx2, say): name the frame "lib.so+0xOFFSET".
			// The runtime prints each frame before symbolizing the next, so one buffer will do.
			static char name[256];
			const char* base = strrchr(info.dli_fname, '/');
			uintptr_t off = arg->PC - (uintptr_t)info.dli_fbase;
			char hex[2 + 2 * sizeof(uintptr_t) + 1];
			int h = sizeof hex - 1, k;
			hex[h] = 0;
			do { hex[--h] = "0123456789abcdef"[off & 15]; off >>= 4; } while (off != 0 && h > 2);
			hex[--h] = 'x'; hex[--h] = '0';
			base = base ? base + 1 : info.dli_fname;
			k = 0;
			while (base[k] && k < 200) { name[k] = base[k]; k++; }
			name[k++] = '+';
			strcpy(name + k, hex + h);
			arg->Func = name;
		}
	}
}

static void shoalWarmBacktrace(void) {
	void* pcs[2];
	backtrace(pcs, 2);
}

static void* shoalTracebackFn(void) { return (void*)shoalCgoTraceback; }
static void* shoalSymbolizerFn(void) { return (void*)shoalCgoSymbolizer; }

// shoalCrashInLibc dereferences NULL inside libc (strlen), for tests.
static size_t shoalCrashInLibc(void) {
	volatile const char* p = 0;
	return strlen((const char*)p);
}

// shoalCallInLibrary calls a void(void) function of a library opened at run time, the way
// shoal reaches NCCL and UCX; for tests. It returns -1 when the library or symbol is missing.
static int shoalCallInLibrary(const char* path, const char* sym) {
	void* h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	void (*fn)(void);
	if (h == 0) return -1;
	fn = (void (*)(void))dlsym(h, sym);
	if (fn == 0) return -1;
	fn();
	return 0;
}
*/
import "C"

import (
	"fmt"
	"runtime"
	"unsafe"
)

func init() {
	C.shoalWarmBacktrace()
	runtime.SetCgoTraceback(0, C.shoalTracebackFn(), nil, C.shoalSymbolizerFn())
}

// crashInLibc crashes inside libc's strlen; the test uses it to see C frames in a traceback.
func crashInLibc() { C.shoalCrashInLibc() }

// callInLibrary dlopens path and calls its void(void) function sym; the test uses it to crash
// inside a library loaded at run time.
func callInLibrary(path, sym string) error {
	p, s := C.CString(path), C.CString(sym)
	defer C.free(unsafe.Pointer(p))
	defer C.free(unsafe.Pointer(s))
	if C.shoalCallInLibrary(p, s) != 0 {
		return fmt.Errorf("call %s in %s: library or symbol not found", sym, path)
	}
	return nil
}
