// shim.h: what the Go side of rdma/nccl calls (implemented in shim.c). Every function that
// touches a GPU takes the device and makes it current first, in the same call, because CUDA's
// current device belongs to the OS thread.
#ifndef SHOAL_NCCL_SHIM_H
#define SHOAL_NCCL_SHIM_H

#include "ncclabi.h"

int shoal_nccl_open(const char* nccl_path, const char* cudart_paths, char* err, size_t errlen);
int shoal_nccl_version(void);
const char* shoal_nccl_error(int r);
const char* shoal_cuda_error(int e);
int shoal_cuda_device_count(int* n);
int shoal_nccl_unique_id(nx_unique_id_t* id);
int shoal_nccl_init(int dev, nx_comm_t* comm, int nranks, const nx_unique_id_t* id, int rank, int* cuda_err);
int shoal_nccl_async_error(nx_comm_t comm, int* async_err);
int shoal_nccl_abort(int dev, nx_comm_t comm);
int shoal_nccl_destroy(int dev, nx_comm_t comm);
int shoal_nccl_all_reduce(int dev, const void* send, void* recv, size_t count, int dtype, int op, nx_comm_t comm, nx_stream_t s);
int shoal_nccl_all_gather(int dev, const void* send, void* recv, size_t count, int dtype, nx_comm_t comm, nx_stream_t s);
int shoal_nccl_reduce_scatter(int dev, const void* send, void* recv, size_t count, int dtype, int op, nx_comm_t comm, nx_stream_t s);
int shoal_nccl_broadcast(int dev, const void* send, void* recv, size_t count, int dtype, int root, nx_comm_t comm, nx_stream_t s);
int shoal_cuda_malloc(int dev, void** p, size_t n);
int shoal_cuda_free(int dev, void* p);
int shoal_cuda_copy(int dev, void* dst, const void* src, size_t n, int kind);
int shoal_cuda_stream_create(int dev, nx_stream_t* s);
int shoal_cuda_stream_destroy(int dev, nx_stream_t s);
int shoal_cuda_stream_query(int dev, nx_stream_t s);
void shoal_nccl_fill_config(nx_config_t* c);

#endif
