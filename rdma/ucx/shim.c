// shim.c: opens libucp at run time and calls it through a table of function pointers, so the
// shoal binary starts (and reports ErrNotSupported) on nodes without UCX. The worker runs in
// UCX's serialized thread mode: the Go side calls these functions under its worker mutex,
// except shoal_ucx_signal and shoal_ucx_sleep, which may run at any time.
#include <dlfcn.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shim.h"

static sx_lib_t lib;
static void* handle;

#define SYM(field, name)                                                       \
	do {                                                                       \
		*(void**)(&lib.field) = dlsym(handle, name);                            \
		if (lib.field == NULL) {                                                \
			snprintf(err, errlen, "symbol %s missing from %s", name, path);     \
			dlclose(handle);                                                    \
			handle = NULL;                                                      \
			memset(&lib, 0, sizeof lib);                                        \
			return -1;                                                          \
		}                                                                       \
	} while (0)

int shoal_ucx_open(const char* path, char* err, size_t errlen) {
	if (handle != NULL) return 0;
	handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (handle == NULL) {
		const char* e = dlerror();
		snprintf(err, errlen, "%s", e ? e : "dlopen failed");
		return -1;
	}
	SYM(config_read, "ucp_config_read");
	SYM(config_modify, "ucp_config_modify");
	SYM(config_release, "ucp_config_release");
	SYM(init_version, "ucp_init_version");
	SYM(cleanup, "ucp_cleanup");
	SYM(get_version, "ucp_get_version");
	SYM(worker_create, "ucp_worker_create");
	SYM(worker_destroy, "ucp_worker_destroy");
	SYM(worker_progress, "ucp_worker_progress");
	SYM(worker_get_efd, "ucp_worker_get_efd");
	SYM(worker_arm, "ucp_worker_arm");
	SYM(worker_signal, "ucp_worker_signal");
	SYM(listener_create, "ucp_listener_create");
	SYM(listener_destroy, "ucp_listener_destroy");
	SYM(listener_query, "ucp_listener_query");
	SYM(listener_reject, "ucp_listener_reject");
	SYM(conn_request_query, "ucp_conn_request_query");
	SYM(ep_create, "ucp_ep_create");
	SYM(ep_close_nbx, "ucp_ep_close_nbx");
	SYM(stream_send_nbx, "ucp_stream_send_nbx");
	SYM(stream_recv_nbx, "ucp_stream_recv_nbx");
	SYM(request_check_status, "ucp_request_check_status");
	SYM(stream_recv_request_test, "ucp_stream_recv_request_test");
	SYM(request_free, "ucp_request_free");
	SYM(status_string, "ucs_status_string"); // libucs, a dependency of libucp
	return 0;
}

void shoal_ucx_version(unsigned* major, unsigned* minor, unsigned* release) {
	lib.get_version(major, minor, release);
}

const char* shoal_ucx_status_string(int st) { return lib.status_string((sx_status_t)st); }

// ptr_status turns a ucs_status_ptr_t into a status: UCS_OK for NULL, the error for an error
// pointer, UCS_INPROGRESS for a request (which is then stored in *req).
static int ptr_status(sx_status_ptr_t p, void** req) {
	*req = NULL;
	if (p == NULL) return SX_OK;
	if ((uintptr_t)p >= (uintptr_t)(intptr_t)SX_ERR_LAST) return (int)(intptr_t)p;
	*req = p;
	return SX_INPROGRESS;
}

int shoal_ucx_init(const char** keys, const char** vals, int n, const char* name, sx_context_h* ctx,
                   sx_worker_h* worker, int* efd, char* err, size_t errlen) {
	sx_config_t* cfg = NULL;
	sx_params_t p;
	sx_worker_params_t wp;
	int st, i;
	unsigned major, minor, release;

	*ctx = NULL;
	*worker = NULL;
	*efd = -1;
	st = lib.config_read(NULL, NULL, &cfg);
	if (st != SX_OK) {
		snprintf(err, errlen, "read UCX configuration: %s", lib.status_string(st));
		return st;
	}
	for (i = 0; i < n; i++) {
		st = lib.config_modify(cfg, keys[i], vals[i]);
		if (st != SX_OK) {
			snprintf(err, errlen, "set UCX_%s=%s: %s", keys[i], vals[i], lib.status_string(st));
			lib.config_release(cfg);
			return st;
		}
	}
	memset(&p, 0, sizeof p);
	p.field_mask = SX_PARAM_FIELD_FEATURES | SX_PARAM_FIELD_NAME;
	p.features = SX_FEATURE_STREAM | SX_FEATURE_WAKEUP;
	p.name = name;
	lib.get_version(&major, &minor, &release);
	// ask for the API of the library found, at least 1.10 (the nbx calls).
	st = lib.init_version(major, minor, &p, cfg, ctx);
	lib.config_release(cfg);
	if (st != SX_OK) {
		snprintf(err, errlen, "init UCX context: %s", lib.status_string(st));
		return st;
	}
	memset(&wp, 0, sizeof wp);
	wp.field_mask = SX_WORKER_PARAM_FIELD_THREAD_MODE;
	wp.thread_mode = SX_THREAD_MODE_SERIALIZED;
	st = lib.worker_create(*ctx, &wp, worker);
	if (st != SX_OK) {
		snprintf(err, errlen, "create UCX worker: %s", lib.status_string(st));
		lib.cleanup(*ctx);
		*ctx = NULL;
		return st;
	}
	if (lib.worker_get_efd(*worker, efd) != SX_OK) *efd = -1;
	return SX_OK;
}

void shoal_ucx_fini(sx_context_h ctx, sx_worker_h worker) {
	if (worker) lib.worker_destroy(worker);
	if (ctx) lib.cleanup(ctx);
}

unsigned shoal_ucx_progress(sx_worker_h w) {
	unsigned n = 0, k;
	// drain: progress until a call does nothing, at most a few rounds so commands are not starved.
	for (int i = 0; i < 16 && (k = lib.worker_progress(w)) != 0; i++) n += k;
	return n;
}

// shoal_ucx_arm arms the worker's event fd: UCS_OK, or UCS_ERR_BUSY when events are waiting
// (progress again), or an error when the worker has no event fd.
int shoal_ucx_arm(sx_worker_h w) { return lib.worker_arm(w); }

// shoal_ucx_sleep waits until the event fd is readable or timeout_ms passes; without an event
// fd it sleeps 200 us.
void shoal_ucx_sleep(int efd, int timeout_ms) {
	struct pollfd pfd;
	if (efd < 0) {
		struct timespec ts = {0, 200000};
		nanosleep(&ts, NULL);
		return;
	}
	pfd.fd = efd;
	pfd.events = POLLIN;
	pfd.revents = 0;
	poll(&pfd, 1, timeout_ms);
}

int shoal_ucx_signal(sx_worker_h w) { return lib.worker_signal(w); }

// Listeners queue connection requests until the Go side takes them.
static void on_conn(sx_conn_request_h req, void* arg) {
	shoal_lst* l = (shoal_lst*)arg;
	if (l->count == SHOAL_LST_CAP) {
		lib.listener_reject(l->listener, req);
		l->rejected++;
		return;
	}
	l->reqs[(l->head + l->count) % SHOAL_LST_CAP] = req;
	l->count++;
}

void shoal_lst_reject(shoal_lst* l, sx_conn_request_h r) {
	lib.listener_reject(l->listener, r);
	l->rejected++;
}

sx_conn_request_h shoal_lst_pop(shoal_lst* l) {
	sx_conn_request_h r;
	if (l->count == 0) return NULL;
	r = l->reqs[l->head];
	l->head = (l->head + 1) % SHOAL_LST_CAP;
	l->count--;
	return r;
}

int shoal_ucx_listen(sx_worker_h w, const struct sockaddr* sa, socklen_t salen, shoal_lst* l, int* port) {
	sx_listener_params_t p;
	sx_listener_attr_t a;
	int st;
	memset(&p, 0, sizeof p);
	p.field_mask = SX_LISTENER_PARAM_FIELD_SOCK_ADDR | SX_LISTENER_PARAM_FIELD_CONN_HANDLER;
	p.sockaddr.addr = sa;
	p.sockaddr.addrlen = salen;
	p.conn_handler.cb = on_conn;
	p.conn_handler.arg = l;
	st = lib.listener_create(w, &p, &l->listener);
	if (st != SX_OK) return st;
	memset(&a, 0, sizeof a);
	a.field_mask = SX_LISTENER_ATTR_FIELD_SOCKADDR;
	st = lib.listener_query(l->listener, &a);
	if (st != SX_OK) {
		lib.listener_destroy(l->listener);
		l->listener = NULL;
		return st;
	}
	if (a.sockaddr.ss_family == AF_INET) *port = ntohs(((struct sockaddr_in*)&a.sockaddr)->sin_port);
	else *port = ntohs(((struct sockaddr_in6*)&a.sockaddr)->sin6_port);
	return SX_OK;
}

void shoal_ucx_unlisten(shoal_lst* l) {
	sx_conn_request_h r;
	while ((r = shoal_lst_pop(l)) != NULL) lib.listener_reject(l->listener, r);
	if (l->listener) lib.listener_destroy(l->listener);
	l->listener = NULL;
}

static void on_err(void* arg, sx_ep_h ep, sx_status_t st) {
	(void)ep;
	((shoal_epstate*)arg)->status = st;
}

// shoal_ucx_connect makes an endpoint to a listener's address (sa) or for a queued
// connection request (req); peer failures are reported in s->status.
int shoal_ucx_connect(sx_worker_h w, const struct sockaddr* sa, socklen_t salen, sx_conn_request_h req,
                      shoal_epstate* s, sx_ep_h* ep) {
	sx_ep_params_t p;
	memset(&p, 0, sizeof p);
	p.field_mask = SX_EP_PARAM_FIELD_ERR_HANDLING_MODE | SX_EP_PARAM_FIELD_ERR_HANDLER;
	p.err_mode = SX_ERR_HANDLING_MODE_PEER;
	p.err_handler.cb = on_err;
	p.err_handler.arg = s;
	if (req != NULL) {
		p.field_mask |= SX_EP_PARAM_FIELD_CONN_REQUEST;
		p.conn_request = req;
	} else {
		p.field_mask |= SX_EP_PARAM_FIELD_SOCK_ADDR | SX_EP_PARAM_FIELD_FLAGS;
		p.flags = SX_EP_PARAMS_FLAGS_CLIENT_SERVER;
		p.sockaddr.addr = sa;
		p.sockaddr.addrlen = salen;
	}
	return lib.ep_create(w, &p, ep);
}

int shoal_ucx_close(sx_ep_h ep, int force, void** req) {
	sx_request_param_t p;
	memset(&p, 0, sizeof p);
	p.op_attr_mask = SX_OP_ATTR_FIELD_FLAGS;
	p.flags = force ? SX_EP_CLOSE_FLAG_FORCE : 0;
	return ptr_status(lib.ep_close_nbx(ep, &p), req);
}

int shoal_ucx_send(sx_ep_h ep, const void* buf, size_t n, void** req) {
	sx_request_param_t p;
	memset(&p, 0, sizeof p);
	return ptr_status(lib.stream_send_nbx(ep, buf, n, &p), req);
}

int shoal_ucx_recv(sx_ep_h ep, void* buf, size_t n, void** req) {
	sx_request_param_t p;
	size_t len = 0;
	memset(&p, 0, sizeof p);
	p.op_attr_mask = SX_OP_ATTR_FIELD_FLAGS;
	p.flags = SX_STREAM_RECV_FLAG_WAITALL;
	return ptr_status(lib.stream_recv_nbx(ep, buf, n, &len, &p), req);
}

// shoal_ucx_test returns the status of a request (UCS_INPROGRESS while it runs) and frees it
// once it has completed.
int shoal_ucx_test(void* req, int recv) {
	size_t len;
	int st = recv ? lib.stream_recv_request_test(req, &len) : lib.request_check_status(req);
	if (st != SX_INPROGRESS) lib.request_free(req);
	return st;
}

// shoal_ucx_sockaddr fills ss with ip (a numeric IPv4 or IPv6 address) and port.
int shoal_ucx_sockaddr(const char* ip, int port, struct sockaddr_storage* ss, socklen_t* len) {
	memset(ss, 0, sizeof *ss);
	struct sockaddr_in* a4 = (struct sockaddr_in*)ss;
	struct sockaddr_in6* a6 = (struct sockaddr_in6*)ss;
	if (inet_pton(AF_INET, ip, &a4->sin_addr) == 1) {
		a4->sin_family = AF_INET;
		a4->sin_port = htons((uint16_t)port);
		*len = sizeof *a4;
		return 0;
	}
	if (inet_pton(AF_INET6, ip, &a6->sin6_addr) == 1) {
		a6->sin6_family = AF_INET6;
		a6->sin6_port = htons((uint16_t)port);
		*len = sizeof *a6;
		return 0;
	}
	return -1;
}

// shoal_ucx_client_addr writes a connection request's client address as "ip:port".
int shoal_ucx_client_addr(sx_conn_request_h req, char* buf, size_t len) {
	sx_conn_request_attr_t a;
	char ip[INET6_ADDRSTRLEN];
	memset(&a, 0, sizeof a);
	a.field_mask = SX_CONN_REQUEST_ATTR_FIELD_CLIENT_ADDR;
	if (lib.conn_request_query(req, &a) != SX_OK) return -1;
	if (a.client_address.ss_family == AF_INET) {
		struct sockaddr_in* s = (struct sockaddr_in*)&a.client_address;
		if (!inet_ntop(AF_INET, &s->sin_addr, ip, sizeof ip)) return -1;
		snprintf(buf, len, "%s:%d", ip, ntohs(s->sin_port));
	} else if (a.client_address.ss_family == AF_INET6) {
		struct sockaddr_in6* s = (struct sockaddr_in6*)&a.client_address;
		if (!inet_ntop(AF_INET6, &s->sin6_addr, ip, sizeof ip)) return -1;
		snprintf(buf, len, "[%s]:%d", ip, ntohs(s->sin6_port));
	} else {
		return -1;
	}
	return 0;
}
