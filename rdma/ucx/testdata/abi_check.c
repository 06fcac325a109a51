// abi_check.c: compares ucxabi.h, shoal's own declaration of the ucp API subset, with UCX's
// headers. abi_test.go compiles and runs it where libucx-dev is installed. It prints one line
// per mismatch and exits 1 if there is any.
#include <stddef.h>
#include <stdio.h>
#include <ucp/api/ucp.h>

#include "../ucxabi.h"

static int bad;

#define SAME(what, a, b)                                                              \
	do {                                                                              \
		long long x_ = (long long)(a), y_ = (long long)(b);                           \
		if (x_ != y_) {                                                               \
			printf("%s: shoal has %lld, UCX has %lld\n", what, x_, y_);               \
			bad = 1;                                                                  \
		}                                                                             \
	} while (0)
#define SIZE(ours, theirs) SAME("sizeof " #theirs, sizeof(ours), sizeof(theirs))
#define OFF(ours, theirs, f) SAME("offsetof " #theirs "." #f, offsetof(ours, f), offsetof(theirs, f))
#define VAL(ours, theirs) SAME(#theirs, ours, theirs)

int main(void) {
	SIZE(sx_status_t, ucs_status_t);
	VAL(SX_OK, UCS_OK);
	VAL(SX_INPROGRESS, UCS_INPROGRESS);
	VAL(SX_ERR_BUSY, UCS_ERR_BUSY);
	VAL(SX_ERR_CANCELED, UCS_ERR_CANCELED);
	VAL(SX_ERR_NOT_CONNECTED, UCS_ERR_NOT_CONNECTED);
	VAL(SX_ERR_CONNECTION_RESET, UCS_ERR_CONNECTION_RESET);
	VAL(SX_ERR_LAST, UCS_ERR_LAST);
	VAL(-40, UCS_ERR_FIRST_LINK_FAILURE);

	SIZE(sx_params_t, ucp_params_t);
	OFF(sx_params_t, ucp_params_t, features);
	OFF(sx_params_t, ucp_params_t, name);
	VAL(SX_PARAM_FIELD_FEATURES, UCP_PARAM_FIELD_FEATURES);
	VAL(SX_PARAM_FIELD_NAME, UCP_PARAM_FIELD_NAME);
	VAL(SX_FEATURE_WAKEUP, UCP_FEATURE_WAKEUP);
	VAL(SX_FEATURE_STREAM, UCP_FEATURE_STREAM);

	SIZE(sx_cpu_set_t, ucs_cpu_set_t);
	SIZE(sx_worker_params_t, ucp_worker_params_t);
	OFF(sx_worker_params_t, ucp_worker_params_t, thread_mode);
	OFF(sx_worker_params_t, ucp_worker_params_t, client_id);
	SIZE(((sx_worker_params_t*)0)->thread_mode, ucs_thread_mode_t);
	VAL(SX_WORKER_PARAM_FIELD_THREAD_MODE, UCP_WORKER_PARAM_FIELD_THREAD_MODE);
	VAL(SX_THREAD_MODE_SERIALIZED, UCS_THREAD_MODE_SERIALIZED);

	SIZE(sx_sock_addr_t, ucs_sock_addr_t);
	OFF(sx_sock_addr_t, ucs_sock_addr_t, addrlen);

	SIZE(sx_listener_params_t, ucp_listener_params_t);
	OFF(sx_listener_params_t, ucp_listener_params_t, sockaddr);
	OFF(sx_listener_params_t, ucp_listener_params_t, conn_handler);
	OFF(sx_listener_params_t, ucp_listener_params_t, conn_handler.arg);
	VAL(SX_LISTENER_PARAM_FIELD_SOCK_ADDR, UCP_LISTENER_PARAM_FIELD_SOCK_ADDR);
	VAL(SX_LISTENER_PARAM_FIELD_CONN_HANDLER, UCP_LISTENER_PARAM_FIELD_CONN_HANDLER);

	SIZE(sx_listener_attr_t, ucp_listener_attr_t);
	OFF(sx_listener_attr_t, ucp_listener_attr_t, sockaddr);
	VAL(SX_LISTENER_ATTR_FIELD_SOCKADDR, UCP_LISTENER_ATTR_FIELD_SOCKADDR);

	SIZE(sx_conn_request_attr_t, ucp_conn_request_attr_t);
	OFF(sx_conn_request_attr_t, ucp_conn_request_attr_t, client_address);
	VAL(SX_CONN_REQUEST_ATTR_FIELD_CLIENT_ADDR, UCP_CONN_REQUEST_ATTR_FIELD_CLIENT_ADDR);

	SIZE(sx_ep_params_t, ucp_ep_params_t);
	OFF(sx_ep_params_t, ucp_ep_params_t, err_mode);
	OFF(sx_ep_params_t, ucp_ep_params_t, err_handler);
	OFF(sx_ep_params_t, ucp_ep_params_t, err_handler.arg);
	OFF(sx_ep_params_t, ucp_ep_params_t, flags);
	OFF(sx_ep_params_t, ucp_ep_params_t, sockaddr);
	OFF(sx_ep_params_t, ucp_ep_params_t, conn_request);
	SIZE(((sx_ep_params_t*)0)->err_mode, ucp_err_handling_mode_t);
	VAL(SX_EP_PARAM_FIELD_ERR_HANDLING_MODE, UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE);
	VAL(SX_EP_PARAM_FIELD_ERR_HANDLER, UCP_EP_PARAM_FIELD_ERR_HANDLER);
	VAL(SX_EP_PARAM_FIELD_SOCK_ADDR, UCP_EP_PARAM_FIELD_SOCK_ADDR);
	VAL(SX_EP_PARAM_FIELD_FLAGS, UCP_EP_PARAM_FIELD_FLAGS);
	VAL(SX_EP_PARAM_FIELD_CONN_REQUEST, UCP_EP_PARAM_FIELD_CONN_REQUEST);
	VAL(SX_EP_PARAMS_FLAGS_CLIENT_SERVER, UCP_EP_PARAMS_FLAGS_CLIENT_SERVER);
	VAL(SX_ERR_HANDLING_MODE_PEER, UCP_ERR_HANDLING_MODE_PEER);

	SIZE(sx_request_param_t, ucp_request_param_t);
	OFF(sx_request_param_t, ucp_request_param_t, flags);
	OFF(sx_request_param_t, ucp_request_param_t, cb);
	OFF(sx_request_param_t, ucp_request_param_t, datatype);
	OFF(sx_request_param_t, ucp_request_param_t, memory_type);
	OFF(sx_request_param_t, ucp_request_param_t, recv_info);
	OFF(sx_request_param_t, ucp_request_param_t, memh);
	VAL(SX_OP_ATTR_FIELD_FLAGS, UCP_OP_ATTR_FIELD_FLAGS);
	VAL(SX_OP_ATTR_FIELD_RECV_INFO, UCP_OP_ATTR_FIELD_RECV_INFO);
	VAL(SX_STREAM_RECV_FLAG_WAITALL, UCP_STREAM_RECV_FLAG_WAITALL);
	VAL(SX_EP_CLOSE_FLAG_FORCE, UCP_EP_CLOSE_FLAG_FORCE);
	return bad;
}
