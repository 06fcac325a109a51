// ncclabi.h: the subset of the NCCL (2.14 and later) and CUDA runtime (11.x, 12.x) ABIs that
// shoal calls, declared here so that shoal builds without CUDA or NCCL headers. The values are
// facts from nccl.h and cuda_runtime_api.h; abi_test.go holds the golden sizes, offsets and
// enum values.
#ifndef SHOAL_NCCLABI_H
#define SHOAL_NCCLABI_H

#include <limits.h>
#include <stddef.h>

typedef struct nx_comm* nx_comm_t;   // ncclComm_t
typedef struct nx_stream* nx_stream_t; // cudaStream_t

// ncclUniqueId: 128 opaque bytes, passed by value.
#define NX_UNIQUE_ID_BYTES 128
typedef struct {
	char internal[NX_UNIQUE_ID_BYTES];
} nx_unique_id_t;

// ncclResult_t
enum {
	NX_SUCCESS = 0,
	NX_UNHANDLED_CUDA_ERROR = 1,
	NX_SYSTEM_ERROR = 2,
	NX_INTERNAL_ERROR = 3,
	NX_INVALID_ARGUMENT = 4,
	NX_INVALID_USAGE = 5,
	NX_REMOTE_ERROR = 6,
	NX_IN_PROGRESS = 7,
	NX_TIMEOUT = 8,
};

// ncclDataType_t
enum {
	NX_INT8 = 0,
	NX_UINT8 = 1,
	NX_INT32 = 2,
	NX_UINT32 = 3,
	NX_INT64 = 4,
	NX_UINT64 = 5,
	NX_FLOAT16 = 6,
	NX_FLOAT32 = 7,
	NX_FLOAT64 = 8,
	NX_BFLOAT16 = 9,     // NCCL 2.10 and later, with CUDA 11
	NX_FLOAT8E4M3 = 10,  // NCCL 2.24 and later
	NX_FLOAT8E5M2 = 11,  // NCCL 2.24 and later
};

// ncclRedOp_t
enum {
	NX_SUM = 0,
	NX_PROD = 1,
	NX_MAX = 2,
	NX_MIN = 3,
	NX_AVG = 4, // NCCL 2.10 and later
};

#define NX_API_MAGIC 0xcafebeefu
#define NX_CONFIG_UNDEF_INT INT_MIN
// NCCL_VERSION(2,17,0): the ncclConfig_t layout declared below. NCCL copies
// min(size, its own sizeof) bytes, fills what is missing with its defaults, and ignores fields
// newer than version, so this prefix is valid for every NCCL from 2.14 on (2.14-2.16 read
// only up to blocking).
#define NX_CONFIG_VERSION 21700

// ncclConfig_t, as of NCCL 2.17: later versions only append fields.
typedef struct {
	size_t size;
	unsigned int magic;
	unsigned int version;
	int blocking;
	int cgaClusterSize;
	int minCTAs;
	int maxCTAs;
	const char* netName;
} nx_config_t;

// cudaMemcpyKind
enum {
	NX_MEMCPY_HOST_TO_DEVICE = 1,
	NX_MEMCPY_DEVICE_TO_HOST = 2,
};

// cudaError_t values shoal looks at
enum {
	NX_CUDA_SUCCESS = 0,
	NX_CUDA_ERROR_NOT_READY = 600,
};

typedef struct {
	// libnccl.so.2
	int (*get_version)(int* version);
	int (*get_unique_id)(nx_unique_id_t* id);
	int (*comm_init_rank_config)(nx_comm_t* comm, int nranks, nx_unique_id_t id, int rank, nx_config_t* config);
	int (*comm_get_async_error)(nx_comm_t comm, int* async_error);
	int (*comm_abort)(nx_comm_t comm);
	int (*comm_destroy)(nx_comm_t comm);
	const char* (*get_error_string)(int result);
	int (*all_reduce)(const void* send, void* recv, size_t count, int dtype, int op, nx_comm_t comm, nx_stream_t stream);
	int (*all_gather)(const void* send, void* recv, size_t sendcount, int dtype, nx_comm_t comm, nx_stream_t stream);
	int (*reduce_scatter)(const void* send, void* recv, size_t recvcount, int dtype, int op, nx_comm_t comm, nx_stream_t stream);
	int (*broadcast)(const void* send, void* recv, size_t count, int dtype, int root, nx_comm_t comm, nx_stream_t stream);
	// libcudart
	int (*cuda_set_device)(int device);
	int (*cuda_get_device_count)(int* count);
	int (*cuda_malloc)(void** ptr, size_t size);
	int (*cuda_free)(void* ptr);
	int (*cuda_memcpy)(void* dst, const void* src, size_t count, int kind);
	int (*cuda_stream_create)(nx_stream_t* stream);
	int (*cuda_stream_destroy)(nx_stream_t stream);
	int (*cuda_stream_query)(nx_stream_t stream);
	const char* (*cuda_get_error_string)(int err);
} nx_lib_t;

#endif
