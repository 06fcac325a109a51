// fakenccl.c: a stand-in for libnccl.so.2 and libcudart.so (both in one library) for machines
// without a GPU. It reads ncclConfig_t as NCCL 2.17+ does (declared here from nccl.h's
// facts, independently of ../ncclabi.h), keeps "device memory" in host memory, and behaves as
// the environment says:
//   FAKE_NCCL_INIT_POLLS=n   ncclCommGetAsyncError reports ncclInProgress n times after init
//   FAKE_NCCL_INIT_HANG=1    the init never completes (a rank that never arrives)
//   FAKE_NCCL_COLL_ERROR=r   the next collective ends with async error r (6 = ncclRemoteError)
// Every call worth checking is appended to the file named by FAKE_NCCL_LOG.
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
	size_t size;
	unsigned int magic;
	unsigned int version;
	int blocking;
	int cgaClusterSize;
	int minCTAs;
	int maxCTAs;
	const char* netName;
} realConfig; // the first fields of ncclConfig_t

typedef struct { char internal[128]; } uid;

struct comm {
	int rank, nranks, polls, hang, err;
};

static void logf_(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
#include <stdarg.h>
static void logf_(const char* fmt, ...) {
	const char* path = getenv("FAKE_NCCL_LOG");
	FILE* f;
	va_list ap;
	if (!path || !(f = fopen(path, "a"))) return;
	va_start(ap, fmt);
	vfprintf(f, fmt, ap);
	va_end(ap);
	fputc('\n', f);
	fclose(f);
}

static int envint(const char* k) {
	const char* v = getenv(k);
	return v ? atoi(v) : 0;
}

int ncclGetVersion(int* v) { *v = 22105; return 0; }
int ncclGetUniqueId(uid* id) {
	for (int i = 0; i < 128; i++) id->internal[i] = (char)(i * 7 + 3);
	return 0;
}
const char* ncclGetErrorString(int r) {
	static const char* s[] = {"no error", "unhandled cuda error", "unhandled system error", "internal error",
	                          "invalid argument", "invalid usage", "remote process exited or there was a network error",
	                          "NCCL operation in progress", "timeout"};
	return r >= 0 && r <= 8 ? s[r] : "unknown result";
}

int ncclCommInitRankConfig(struct comm** out, int nranks, uid id, int rank, realConfig* c) {
	unsigned sum = 0;
	for (int i = 0; i < 128; i++) sum = sum * 31 + (unsigned char)id.internal[i];
	logf_("init rank=%d nranks=%d size=%zu magic=%#x version=%u blocking=%d cga=%d netName=%s id=%08x", rank, nranks,
	      c->size, c->magic, c->version, c->blocking, c->cgaClusterSize, c->netName ? c->netName : "(null)", sum);
	if (c->magic != 0xcafebeef || c->size < 24) return 4; // ncclInvalidArgument, as NCCL does
	struct comm* m = calloc(1, sizeof *m);
	m->rank = rank;
	m->nranks = nranks;
	m->polls = envint("FAKE_NCCL_INIT_POLLS");
	m->hang = envint("FAKE_NCCL_INIT_HANG");
	*out = m;
	return c->blocking == 0 ? 7 : 0;
}

int ncclCommGetAsyncError(struct comm* m, int* e) {
	if (m->err) { *e = m->err; return 0; }
	if (m->hang) { *e = 7; return 0; }
	if (m->polls > 0) { m->polls--; *e = 7; return 0; }
	*e = 0;
	return 0;
}

int ncclCommAbort(struct comm* m) {
	logf_("abort rank=%d", m->rank);
	free(m);
	return 0;
}

int ncclCommDestroy(struct comm* m) {
	logf_("destroy rank=%d", m->rank);
	free(m);
	return 0;
}

static int coll(struct comm* m, const char* name, const void* s, void* r, size_t n, int dt) {
	size_t es = dt == 7 || dt == 2 || dt == 3 ? 4 : dt == 6 || dt == 9 ? 2 : dt >= 4 && dt <= 8 ? 8 : 1;
	logf_("%s rank=%d count=%zu dtype=%d", name, m->rank, n, dt);
	if (r != s) memmove(r, s, n * es); // one rank: every collective is a copy
	m->err = envint("FAKE_NCCL_COLL_ERROR");
	m->polls = 2;
	return 0;
}

int ncclAllReduce(const void* s, void* r, size_t n, int dt, int op, struct comm* m, void* st) {
	(void)op; (void)st;
	return coll(m, "allreduce", s, r, n, dt);
}
int ncclAllGather(const void* s, void* r, size_t n, int dt, struct comm* m, void* st) {
	(void)st;
	return coll(m, "allgather", s, r, n, dt);
}
int ncclReduceScatter(const void* s, void* r, size_t n, int dt, int op, struct comm* m, void* st) {
	(void)op; (void)st;
	return coll(m, "reducescatter", s, r, n, dt);
}
int ncclBroadcast(const void* s, void* r, size_t n, int dt, int root, struct comm* m, void* st) {
	(void)root; (void)st;
	return coll(m, "broadcast", s, r, n, dt);
}

// CUDA runtime
static int queries;
int cudaSetDevice(int d) { return d == 0 ? 0 : 101; } // cudaErrorInvalidDevice
int cudaGetDeviceCount(int* n) { *n = 1; return 0; }
int cudaMalloc(void** p, size_t n) { *p = malloc(n ? n : 1); return *p ? 0 : 2; }
int cudaFree(void* p) { free(p); return 0; }
int cudaMemcpy(void* d, const void* s, size_t n, int kind) {
	logf_("memcpy kind=%d n=%zu", kind, n);
	memcpy(d, s, n);
	return 0;
}
int cudaStreamCreate(void** s) { *s = malloc(1); return 0; }
int cudaStreamDestroy(void* s) { free(s); return 0; }
int cudaStreamQuery(void* s) { (void)s; return (queries++ % 3 == 2) ? 0 : 600; }
const char* cudaGetErrorString(int e) { return e == 101 ? "invalid device ordinal" : "fake cuda error"; }
