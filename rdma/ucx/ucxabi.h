// ucxabi.h: the subset of UCX's ucp API (1.x, checked against 1.13.1) that shoal calls,
// declared here so that shoal builds without UCX's headers. The layouts are facts from
// ucp/api/ucp.h and ucp_def.h; abi_test.go compiles abi_check.c against the real headers,
// where they are installed, and compares every size and offset used below.
//
// Every struct of the ucp API starts with a field_mask, and UCX reads only the fields whose
// bit is set, so a caller may leave later fields zero; the structs are declared whole anyway.
#ifndef SHOAL_UCXABI_H
#define SHOAL_UCXABI_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

typedef int8_t sx_status_t; // ucs_status_t: an enum that fits in int8 (UCS_ERR_LAST = -100)
typedef void* sx_status_ptr_t;
typedef struct sx_context* sx_context_h;
typedef struct sx_config sx_config_t;
typedef struct sx_worker* sx_worker_h;
typedef struct sx_listener* sx_listener_h;
typedef struct sx_ep* sx_ep_h;
typedef struct sx_conn_request* sx_conn_request_h;

enum {
	SX_OK = 0,
	SX_INPROGRESS = 1,
	SX_ERR_BUSY = -15,
	SX_ERR_CANCELED = -16,
	SX_ERR_NOT_CONNECTED = -24,
	SX_ERR_CONNECTION_RESET = -25,
	SX_ERR_LAST = -100,
};

// ucp_params_t
typedef struct {
	uint64_t field_mask;
	uint64_t features;
	size_t request_size;
	void (*request_init)(void*);
	void (*request_cleanup)(void*);
	uint64_t tag_sender_mask;
	int mt_workers_shared;
	size_t estimated_num_eps;
	size_t estimated_num_ppn;
	const char* name;
} sx_params_t;

#define SX_PARAM_FIELD_FEATURES (1ull << 0)
#define SX_PARAM_FIELD_NAME (1ull << 8)
#define SX_FEATURE_WAKEUP (1ull << 4)
#define SX_FEATURE_STREAM (1ull << 5)

// ucs_cpu_set_t is 1024 bits.
typedef struct {
	unsigned long bits[1024 / (8 * sizeof(unsigned long))];
} sx_cpu_set_t;

// ucp_worker_params_t
typedef struct {
	uint64_t field_mask;
	int thread_mode; // ucs_thread_mode_t
	sx_cpu_set_t cpu_mask;
	unsigned events;
	void* user_data;
	int event_fd;
	uint64_t flags;
	const char* name;
	size_t am_alignment;
	uint64_t client_id;
} sx_worker_params_t;

#define SX_WORKER_PARAM_FIELD_THREAD_MODE (1ull << 0)
#define SX_THREAD_MODE_SERIALIZED 1

// ucs_sock_addr_t
typedef struct {
	const struct sockaddr* addr;
	socklen_t addrlen;
} sx_sock_addr_t;

typedef void (*sx_conn_cb_t)(sx_conn_request_h req, void* arg);
typedef void (*sx_err_cb_t)(void* arg, sx_ep_h ep, sx_status_t status);

// ucp_listener_params_t
typedef struct {
	uint64_t field_mask;
	sx_sock_addr_t sockaddr;
	struct {
		void (*cb)(sx_ep_h, void*);
		void* arg;
	} accept_handler;
	struct {
		sx_conn_cb_t cb;
		void* arg;
	} conn_handler;
} sx_listener_params_t;

#define SX_LISTENER_PARAM_FIELD_SOCK_ADDR (1ull << 0)
#define SX_LISTENER_PARAM_FIELD_CONN_HANDLER (1ull << 2)

// ucp_listener_attr_t
typedef struct {
	uint64_t field_mask;
	struct sockaddr_storage sockaddr;
} sx_listener_attr_t;

#define SX_LISTENER_ATTR_FIELD_SOCKADDR (1ull << 0)

// ucp_conn_request_attr_t
typedef struct {
	uint64_t field_mask;
	struct sockaddr_storage client_address;
	uint64_t client_id;
} sx_conn_request_attr_t;

#define SX_CONN_REQUEST_ATTR_FIELD_CLIENT_ADDR (1ull << 0)

// ucp_ep_params_t
typedef struct {
	uint64_t field_mask;
	const void* address;
	int err_mode; // ucp_err_handling_mode_t
	struct {
		sx_err_cb_t cb;
		void* arg;
	} err_handler;
	void* user_data;
	unsigned flags;
	sx_sock_addr_t sockaddr;
	sx_conn_request_h conn_request;
	const char* name;
	sx_sock_addr_t local_sockaddr;
} sx_ep_params_t;

#define SX_EP_PARAM_FIELD_ERR_HANDLING_MODE (1ull << 1)
#define SX_EP_PARAM_FIELD_ERR_HANDLER (1ull << 2)
#define SX_EP_PARAM_FIELD_SOCK_ADDR (1ull << 4)
#define SX_EP_PARAM_FIELD_FLAGS (1ull << 5)
#define SX_EP_PARAM_FIELD_CONN_REQUEST (1ull << 6)
#define SX_EP_PARAMS_FLAGS_CLIENT_SERVER (1u << 0)
#define SX_ERR_HANDLING_MODE_PEER 1

// ucp_request_param_t
typedef struct {
	uint32_t op_attr_mask;
	uint32_t flags;
	void* request;
	void* cb;
	uintptr_t datatype; // ucp_datatype_t
	void* user_data;
	void* reply_buffer;
	int memory_type; // ucs_memory_type_t
	union {
		size_t* length;
		void* tag_info;
	} recv_info;
	void* memh;
} sx_request_param_t;

#define SX_OP_ATTR_FIELD_FLAGS (1u << 4)
#define SX_OP_ATTR_FIELD_RECV_INFO (1u << 7)
#define SX_STREAM_RECV_FLAG_WAITALL (1u << 0)
#define SX_EP_CLOSE_FLAG_FORCE (1u << 0)

// The table of functions shoal takes from libucp (and, through its dependencies, libucs).
typedef struct {
	sx_status_t (*config_read)(const char* env_prefix, const char* filename, sx_config_t** config_p);
	sx_status_t (*config_modify)(sx_config_t* config, const char* name, const char* value);
	void (*config_release)(sx_config_t* config);
	sx_status_t (*init_version)(unsigned major, unsigned minor, const sx_params_t* params,
	                            const sx_config_t* config, sx_context_h* context_p);
	void (*cleanup)(sx_context_h context);
	void (*get_version)(unsigned* major, unsigned* minor, unsigned* release);
	sx_status_t (*worker_create)(sx_context_h context, const sx_worker_params_t* params, sx_worker_h* worker_p);
	void (*worker_destroy)(sx_worker_h worker);
	unsigned (*worker_progress)(sx_worker_h worker);
	sx_status_t (*worker_get_efd)(sx_worker_h worker, int* fd);
	sx_status_t (*worker_arm)(sx_worker_h worker);
	sx_status_t (*worker_signal)(sx_worker_h worker);
	sx_status_t (*listener_create)(sx_worker_h worker, const sx_listener_params_t* params, sx_listener_h* listener_p);
	void (*listener_destroy)(sx_listener_h listener);
	sx_status_t (*listener_query)(sx_listener_h listener, sx_listener_attr_t* attr);
	sx_status_t (*listener_reject)(sx_listener_h listener, sx_conn_request_h req);
	sx_status_t (*conn_request_query)(sx_conn_request_h req, sx_conn_request_attr_t* attr);
	sx_status_t (*ep_create)(sx_worker_h worker, const sx_ep_params_t* params, sx_ep_h* ep_p);
	sx_status_ptr_t (*ep_close_nbx)(sx_ep_h ep, const sx_request_param_t* param);
	sx_status_ptr_t (*stream_send_nbx)(sx_ep_h ep, const void* buffer, size_t count, const sx_request_param_t* param);
	sx_status_ptr_t (*stream_recv_nbx)(sx_ep_h ep, void* buffer, size_t count, size_t* length, const sx_request_param_t* param);
	sx_status_t (*request_check_status)(void* request);
	sx_status_t (*stream_recv_request_test)(void* request, size_t* length_p);
	void (*request_free)(void* request);
	const char* (*status_string)(sx_status_t status);
} sx_lib_t;

#endif
