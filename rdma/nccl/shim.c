// shim.c: opens libnccl.so.2 and the CUDA runtime at run time and calls them through a table
// of function pointers, so shoal builds and starts without CUDA.
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

#include "shim.h"

static nx_lib_t lib;
static void* nccl_handle;
static void* cudart_handle;

static int sym(void* h, void** field, const char* name, const char* path, char* err, size_t errlen) {
	*field = dlsym(h, name);
	if (*field == NULL) {
		snprintf(err, errlen, "symbol %s missing from %s", name, path);
		return -1;
	}
	return 0;
}

#define NSYM(f, name) if (sym(nh, (void**)&l.f, name, nccl_path, err, errlen)) goto fail
#define CSYM(f, name) if (sym(ch, (void**)&l.f, name, cpath, err, errlen)) goto fail

// shoal_nccl_open loads NCCL from nccl_path and the CUDA runtime from the first loadable path
// of cudart_paths (colon separated). It may be called again after a failure.
int shoal_nccl_open(const char* nccl_path, const char* cudart_paths, char* err, size_t errlen) {
	nx_lib_t l;
	void *nh = NULL, *ch = NULL;
	char paths[1024], *save = NULL, *p;
	const char* cpath = NULL;
	const char* e;

	memset(&l, 0, sizeof l);
	snprintf(paths, sizeof paths, "%s", cudart_paths);
	err[0] = 0;
	for (p = strtok_r(paths, ":", &save); p != NULL; p = strtok_r(NULL, ":", &save)) {
		ch = dlopen(p, RTLD_NOW | RTLD_GLOBAL);
		if (ch != NULL) {
			cpath = p;
			break;
		}
		e = dlerror();
		snprintf(err, errlen, "%s", e ? e : "dlopen failed");
	}
	if (ch == NULL) {
		char tmp[512];
		snprintf(tmp, sizeof tmp, "no CUDA runtime (tried %s): %s", cudart_paths, err);
		snprintf(err, errlen, "%s", tmp);
		return -1;
	}
	CSYM(cuda_set_device, "cudaSetDevice");
	CSYM(cuda_get_device_count, "cudaGetDeviceCount");
	CSYM(cuda_malloc, "cudaMalloc");
	CSYM(cuda_free, "cudaFree");
	CSYM(cuda_memcpy, "cudaMemcpy");
	CSYM(cuda_stream_create, "cudaStreamCreate");
	CSYM(cuda_stream_destroy, "cudaStreamDestroy");
	CSYM(cuda_stream_query, "cudaStreamQuery");
	CSYM(cuda_get_error_string, "cudaGetErrorString");

	nh = dlopen(nccl_path, RTLD_NOW | RTLD_LOCAL);
	if (nh == NULL) {
		e = dlerror();
		snprintf(err, errlen, "%s", e ? e : "dlopen failed");
		goto fail;
	}
	NSYM(get_version, "ncclGetVersion");
	NSYM(get_unique_id, "ncclGetUniqueId");
	NSYM(comm_init_rank_config, "ncclCommInitRankConfig"); // 2.14 and later
	NSYM(comm_get_async_error, "ncclCommGetAsyncError");
	NSYM(comm_abort, "ncclCommAbort");
	NSYM(comm_destroy, "ncclCommDestroy");
	NSYM(get_error_string, "ncclGetErrorString");
	NSYM(all_reduce, "ncclAllReduce");
	NSYM(all_gather, "ncclAllGather");
	NSYM(reduce_scatter, "ncclReduceScatter");
	NSYM(broadcast, "ncclBroadcast");
	lib = l;
	nccl_handle = nh;
	cudart_handle = ch;
	return 0;
fail:
	if (nh) dlclose(nh);
	if (ch) dlclose(ch);
	return -1;
}

int shoal_nccl_version(void) {
	int v = 0;
	if (lib.get_version(&v) != NX_SUCCESS) return -1;
	return v;
}

const char* shoal_nccl_error(int r) { return lib.get_error_string(r); }
const char* shoal_cuda_error(int e) { return lib.cuda_get_error_string(e); }
int shoal_cuda_device_count(int* n) { return lib.cuda_get_device_count(n); }
int shoal_nccl_unique_id(nx_unique_id_t* id) { return lib.get_unique_id(id); }

// shoal_nccl_fill_config sets c as NCCL_CONFIG_INITIALIZER would for NCCL 2.17, with
// blocking = 0 so that init and collectives return at once and are polled.
void shoal_nccl_fill_config(nx_config_t* c) {
	memset(c, 0, sizeof *c);
	c->size = sizeof *c;
	c->magic = NX_API_MAGIC;
	c->version = NX_CONFIG_VERSION;
	c->blocking = 0;
	c->cgaClusterSize = NX_CONFIG_UNDEF_INT;
	c->minCTAs = NX_CONFIG_UNDEF_INT;
	c->maxCTAs = NX_CONFIG_UNDEF_INT;
	c->netName = NULL;
}

// shoal_nccl_init starts a non-blocking ncclCommInitRankConfig on dev. It returns NCCL's
// result (ncclInProgress while the init runs on), or -1 with *cuda_err set when the device
// cannot be made current.
int shoal_nccl_init(int dev, nx_comm_t* comm, int nranks, const nx_unique_id_t* id, int rank, int* cuda_err) {
	nx_config_t c;
	*cuda_err = lib.cuda_set_device(dev);
	if (*cuda_err != NX_CUDA_SUCCESS) return -1;
	shoal_nccl_fill_config(&c);
	return lib.comm_init_rank_config(comm, nranks, *id, rank, &c);
}

int shoal_nccl_async_error(nx_comm_t comm, int* async_err) { return lib.comm_get_async_error(comm, async_err); }

int shoal_nccl_abort(int dev, nx_comm_t comm) {
	lib.cuda_set_device(dev);
	return lib.comm_abort(comm);
}

int shoal_nccl_destroy(int dev, nx_comm_t comm) {
	lib.cuda_set_device(dev);
	return lib.comm_destroy(comm);
}

// ON makes dev current; a failure returns the CUDA error, negated in NCCL calls so that it
// cannot be taken for an ncclResult_t.
#define ON(dev, sign)                              \
	do {                                           \
		int e_ = lib.cuda_set_device(dev);         \
		if (e_ != NX_CUDA_SUCCESS) return sign e_; \
	} while (0)

int shoal_nccl_all_reduce(int dev, const void* send, void* recv, size_t count, int dtype, int op, nx_comm_t comm, nx_stream_t s) {
	ON(dev, -);
	return lib.all_reduce(send, recv, count, dtype, op, comm, s);
}

int shoal_nccl_all_gather(int dev, const void* send, void* recv, size_t count, int dtype, nx_comm_t comm, nx_stream_t s) {
	ON(dev, -);
	return lib.all_gather(send, recv, count, dtype, comm, s);
}

int shoal_nccl_reduce_scatter(int dev, const void* send, void* recv, size_t count, int dtype, int op, nx_comm_t comm, nx_stream_t s) {
	ON(dev, -);
	return lib.reduce_scatter(send, recv, count, dtype, op, comm, s);
}

int shoal_nccl_broadcast(int dev, const void* send, void* recv, size_t count, int dtype, int root, nx_comm_t comm, nx_stream_t s) {
	ON(dev, -);
	return lib.broadcast(send, recv, count, dtype, root, comm, s);
}

int shoal_cuda_malloc(int dev, void** p, size_t n) {
	ON(dev, +);
	return lib.cuda_malloc(p, n);
}

int shoal_cuda_free(int dev, void* p) {
	ON(dev, +);
	return lib.cuda_free(p);
}

int shoal_cuda_copy(int dev, void* dst, const void* src, size_t n, int kind) {
	ON(dev, +);
	return lib.cuda_memcpy(dst, src, n, kind);
}

int shoal_cuda_stream_create(int dev, nx_stream_t* s) {
	ON(dev, +);
	return lib.cuda_stream_create(s);
}

int shoal_cuda_stream_destroy(int dev, nx_stream_t s) {
	ON(dev, +);
	return lib.cuda_stream_destroy(s);
}

int shoal_cuda_stream_query(int dev, nx_stream_t s) {
	ON(dev, +);
	return lib.cuda_stream_query(s);
}
