package ipc

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/go-hclog"
)

// NMClient is a connection to one NodeManager's ContainerManagementProtocol,
// authenticated with the NMToken the RM issued for that node. Its methods may
// be called from several goroutines; calls are serialized. A connection that
// breaks is dialed again on the next call.
type NMClient struct {
	nm   *endpoint
	addr string
	log  hclog.Logger
}

// DialNM connects to a NodeManager's IPC address "host:port"
// (Container.NodeAddr()) with the NMToken for that node
// (AMRMClient.NMToken). user is only logged: the NodeManager takes the identity
// from the token. A refused token gives an error wrapping ErrAuth.
//
// With RequireProtection, every connection (the first and any redial) to a
// NodeManager that negotiates less is refused, so nothing (a launch context's
// tokens above all) is ever sent over it.
func DialNM(ctx context.Context, addr, user string, nmToken Token, log hclog.Logger, opts ...DialOption) (*NMClient, error) {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	if len(nmToken.Identifier) == 0 {
		return nil, fmt.Errorf("dial NodeManager %s: the NMToken is empty (the RM sends it with the first container on that node; see AMRMClient.NMToken)", addr)
	}
	log = log.With("nm", addr)
	nm := &endpoint{addr: addr, protocol: cmProtocol, token: nmToken, log: log}
	for _, o := range opts {
		o(nm)
	}
	if err := nm.dial(ctx); err != nil {
		if errors.Is(err, ErrAuth) {
			return nil, fmt.Errorf("dial NodeManager: it refused the NMToken (use AMRMClient.NMToken for this node's host:port): %w", err)
		}
		return nil, fmt.Errorf("dial NodeManager: %w", err)
	}
	log.Debug("connected to the NodeManager", "user", user)
	return &NMClient{nm: nm, addr: addr, log: log}, nil
}

// DialOption changes how a client connects.
type DialOption func(*endpoint)

// RequireProtection refuses a server whose hadoop.rpc.protection gives less
// than p (Privacy: only encrypted connections).
func RequireProtection(p Protection) DialOption { return func(e *endpoint) { e.min = p } }

// Protection is the quality of protection the connection to the NodeManager
// negotiated: the strongest its hadoop.rpc.protection allows.
func (n *NMClient) Protection() Protection {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := n.nm.protection(ctx)
	if err != nil {
		return Authentication
	}
	return p
}

// StartContainer starts container c with launch context lc. The container
// token from the allocation goes with the request; the NodeManager checks it.
func (n *NMClient) StartContainer(ctx context.Context, c Container, lc LaunchContext) error {
	if len(c.Token.Identifier) == 0 {
		return fmt.Errorf("start container %s: it has no container token (use the Container from Allocate)", c.ID)
	}
	var one msg // StartContainerRequestProto: container_launch_context = 1, container_token = 2
	one.sub(1, lc.proto())
	one.sub(2, c.Token.proto())
	var req msg // StartContainersRequestProto: start_container_request = 1
	req.sub(1, one)
	resp, err := n.nm.call(ctx, "startContainers", req)
	if err != nil {
		return fmt.Errorf("start container %s on %s: %w", c.ID, n.addr, err)
	}
	// StartContainersResponseProto: succeeded_requests = 2, failed_requests = 3
	if err := containerResult(resp, c.ID, 2, 3); err != nil {
		return fmt.Errorf("start container %s on %s: %w", c.ID, n.addr, err)
	}
	n.log.Debug("container started", "container", c.ID)
	return nil
}

// containerResult finds id among the succeeded and failed lists of a bulk
// response.
func containerResult(resp []byte, id ContainerID, okField, failField int) error {
	found := false
	var failure error
	err := fields(resp, func(f field) error {
		if int(f.num) != okField && int(f.num) != failField {
			return nil
		}
		v, err := f.bytes()
		if err != nil {
			return err
		}
		if int(f.num) == okField {
			got, err := decodeContainerID(v)
			if err == nil && got == id {
				found = true
			}
			return err
		}
		got, re, err := decodeContainerException(v)
		if err == nil && got == id {
			failure = re
		}
		return err
	})
	switch {
	case err != nil:
		return fmt.Errorf("decode response: %w", err)
	case failure != nil:
		return failure
	case !found:
		return fmt.Errorf("the NodeManager's response does not mention the container")
	}
	return nil
}

// StopContainer stops a container on this node. Stopping one that already
// finished is not an error.
func (n *NMClient) StopContainer(ctx context.Context, id ContainerID) error {
	var req msg // StopContainersRequestProto: container_id = 1
	req.sub(1, id.proto())
	resp, err := n.nm.call(ctx, "stopContainers", req)
	if err != nil {
		return fmt.Errorf("stop container %s on %s: %w", id, n.addr, err)
	}
	// StopContainersResponseProto: succeeded_requests = 1, failed_requests = 2
	if err := containerResult(resp, id, 1, 2); err != nil {
		return fmt.Errorf("stop container %s on %s: %w", id, n.addr, err)
	}
	return nil
}

// Status returns a container's status as this NodeManager knows it.
func (n *NMClient) Status(ctx context.Context, id ContainerID) (ContainerStatus, error) {
	var req msg // GetContainerStatusesRequestProto: container_id = 1
	req.sub(1, id.proto())
	resp, err := n.nm.call(ctx, "getContainerStatuses", req)
	if err != nil {
		return ContainerStatus{}, fmt.Errorf("container status %s on %s: %w", id, n.addr, err)
	}
	var st *ContainerStatus
	var failure error
	// GetContainerStatusesResponseProto: status = 1, failed_requests = 2
	err = fields(resp, func(f field) error {
		v, err := f.bytes()
		if err != nil {
			return err
		}
		switch f.num {
		case 1:
			s, err := decodeContainerStatus(v)
			if err == nil && s.ID == id {
				st = &s
			}
			return err
		case 2:
			got, re, err := decodeContainerException(v)
			if err == nil && got == id {
				failure = re
			}
			return err
		}
		return nil
	})
	switch {
	case err != nil:
		return ContainerStatus{}, fmt.Errorf("container status %s on %s: decode response: %w", id, n.addr, err)
	case failure != nil:
		return ContainerStatus{}, fmt.Errorf("container status %s on %s: %w", id, n.addr, failure)
	case st == nil:
		return ContainerStatus{}, fmt.Errorf("container status %s on %s: not in the response", id, n.addr)
	}
	return *st, nil
}

// Close closes the connection; running containers keep running.
func (n *NMClient) Close() error { return n.nm.close() }
