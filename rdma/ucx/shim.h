// shim.h: what the Go side of rdma/ucx calls (implemented in shim.c).
#ifndef SHOAL_UCX_SHIM_H
#define SHOAL_UCX_SHIM_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <time.h>

#include "ucxabi.h"

#define SHOAL_LST_CAP 256

// shoal_lst is a listener and the connection requests it has not handed over yet.
typedef struct {
	sx_listener_h listener;
	sx_conn_request_h reqs[SHOAL_LST_CAP];
	int head, count;
	unsigned long rejected;
} shoal_lst;

// shoal_epstate holds what UCX's error handler reported for an endpoint (UCS_OK until then).
typedef struct {
	int status;
} shoal_epstate;

int shoal_ucx_open(const char* path, char* err, size_t errlen);
void shoal_ucx_version(unsigned* major, unsigned* minor, unsigned* release);
const char* shoal_ucx_status_string(int st);
int shoal_ucx_init(const char** keys, const char** vals, int n, const char* name, sx_context_h* ctx,
                   sx_worker_h* worker, int* efd, char* err, size_t errlen);
void shoal_ucx_fini(sx_context_h ctx, sx_worker_h worker);
unsigned shoal_ucx_progress(sx_worker_h w);
int shoal_ucx_arm(sx_worker_h w);
void shoal_ucx_sleep(int efd, int timeout_ms);
int shoal_ucx_signal(sx_worker_h w);
sx_conn_request_h shoal_lst_pop(shoal_lst* l);
void shoal_lst_reject(shoal_lst* l, sx_conn_request_h r);
int shoal_ucx_listen(sx_worker_h w, const struct sockaddr* sa, socklen_t salen, shoal_lst* l, int* port);
void shoal_ucx_unlisten(shoal_lst* l);
int shoal_ucx_connect(sx_worker_h w, const struct sockaddr* sa, socklen_t salen, sx_conn_request_h req,
                      shoal_epstate* s, sx_ep_h* ep);
int shoal_ucx_close(sx_ep_h ep, int force, void** req);
int shoal_ucx_send(sx_ep_h ep, const void* buf, size_t n, void** req);
int shoal_ucx_recv(sx_ep_h ep, void* buf, size_t n, void** req);
int shoal_ucx_test(void* req, int recv);
int shoal_ucx_client_addr(sx_conn_request_h req, char* buf, size_t len);
int shoal_ucx_sockaddr(const char* ip, int port, struct sockaddr_storage* ss, socklen_t* len);
#endif
