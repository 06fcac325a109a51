package ipc

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
)

// Protocol names (the @ProtocolInfo names of YARN's *PB interfaces) and methods.
const (
	amProtocol = "org.apache.hadoop.yarn.api.ApplicationMasterProtocolPB"
	cmProtocol = "org.apache.hadoop.yarn.api.ContainerManagementProtocolPB"
)

// AMCommandProto values.
const (
	amResync   = 1
	amShutdown = 2
)

// ErrShutdown is returned by Allocate when the RM tells the AM to shut down
// (AM_SHUTDOWN: the application was killed or the attempt is no longer current).
var ErrShutdown = errors.New("the ResourceManager told the ApplicationMaster to shut down")

const notRegistered = "org.apache.hadoop.yarn.exceptions.ApplicationMasterNotRegisteredException"

// AMRMClient is an ApplicationMaster's connection to the ResourceManager's
// ApplicationMasterProtocol. Its methods may be called from several
// goroutines; calls to the RM are serialized.
type AMRMClient struct {
	mu  sync.Mutex // serializes RM calls and guards the fields below
	rm  *endpoint
	log hclog.Logger

	responseID int32
	registered *registration
	lastAsk    map[askKey]int32

	tokMu    sync.Mutex
	nmTokens map[string]Token
}

type registration struct {
	host        string
	rpcPort     int32
	trackingURL string
}

type askKey struct {
	priority     int32
	resourceName string
	resource     Resource
	nodeLabel    string
}

// DialAMRM connects to the RM's scheduler address
// (yarn.resourcemanager.scheduler.address, port 8030 by default; it is not in
// the container's environment, so the caller must know it) and authenticates
// with the AMRMToken from the container's token file. With token
// authentication YARN takes the identity from the token; user is only logged.
// A refused token gives an error wrapping ErrAuth.
func DialAMRM(ctx context.Context, addr, user string, amrm Token, log hclog.Logger) (*AMRMClient, error) {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	if len(amrm.Identifier) == 0 {
		return nil, fmt.Errorf("dial ResourceManager %s: the AMRMToken is empty (take the %s token from HADOOP_TOKEN_FILE_LOCATION)", addr, KindAMRMToken)
	}
	log = log.With("rm", addr)
	a := &AMRMClient{rm: &endpoint{addr: addr, protocol: amProtocol, token: amrm, log: log}, log: log,
		lastAsk: map[askKey]int32{}, nmTokens: map[string]Token{}}
	if err := a.rm.dial(ctx); err != nil {
		if errors.Is(err, ErrAuth) {
			return nil, fmt.Errorf("dial ResourceManager scheduler: the RM refused the AMRMToken (use this attempt's %s token from HADOOP_TOKEN_FILE_LOCATION): %w", KindAMRMToken, err)
		}
		return nil, fmt.Errorf("dial ResourceManager scheduler (yarn.resourcemanager.scheduler.address): %w", err)
	}
	a.log.Debug("connected to the ResourceManager", "user", user)
	return a, nil
}

// rpc calls the RM. Call with a.mu held.
func (a *AMRMClient) rpc(ctx context.Context, method string, req msg) ([]byte, error) {
	return a.rm.call(ctx, method, req)
}

// Register registers the AM (host and rpcPort where clients reach it, and a
// tracking URL, both may be empty) and returns the largest container the RM
// grants. NMTokens for containers kept from earlier attempts are cached.
func (a *AMRMClient) Register(ctx context.Context, host string, rpcPort int32, trackingURL string) (Resource, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	reg := registration{host: host, rpcPort: rpcPort, trackingURL: trackingURL}
	max, err := a.register(ctx, reg)
	if err != nil {
		return Resource{}, err
	}
	a.registered = &reg
	return max, nil
}

func (a *AMRMClient) register(ctx context.Context, reg registration) (Resource, error) {
	var req msg // RegisterApplicationMasterRequestProto
	req.str(1, reg.host)
	req.int(2, int64(reg.rpcPort))
	req.str(3, reg.trackingURL)
	resp, err := a.rpc(ctx, "registerApplicationMaster", req)
	if err != nil {
		return Resource{}, fmt.Errorf("register ApplicationMaster: %w", err)
	}
	var max Resource
	err = fields(resp, func(f field) error {
		switch f.num {
		case 1: // maximumCapability
			b, err := f.bytes()
			if err != nil {
				return err
			}
			max, err = decodeResource(b)
			return err
		case 6: // nm_tokens_from_previous_attempts
			b, err := f.bytes()
			if err != nil {
				return err
			}
			return a.cacheNMToken(b)
		}
		return nil
	})
	if err != nil {
		return Resource{}, fmt.Errorf("register ApplicationMaster: decode response: %w", err)
	}
	a.log.Debug("registered", "max_memory_mb", max.MemoryMB, "max_vcores", max.VCores)
	return max, nil
}

// NMTokenProto: nodeId = 1, token = 2.
func (a *AMRMClient) cacheNMToken(b []byte) error {
	var node string
	var tok *Token
	err := fields(b, func(f field) error {
		v, err := f.bytes()
		if err != nil {
			return err
		}
		switch f.num {
		case 1:
			host, port, err := decodeNodeID(v)
			node = fmt.Sprintf("%s:%d", host, port)
			return err
		case 2:
			t, err := decodeToken(v)
			tok = &t
			return err
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("nm token: %w", err)
	}
	if tok == nil || node == "" {
		return fmt.Errorf("nm token without node or token")
	}
	a.tokMu.Lock()
	a.nmTokens[node] = *tok
	a.tokMu.Unlock()
	return nil
}

// Allocate sends one heartbeat: asks, containers to release, and progress in
// [0, 1]. It echoes the RM's response id, caches the NMTokens that come with
// new containers (see NMToken), and when the RM rolls the AMRMToken it
// switches to the new token for its next connection.
//
// Asks are absolute: NumContainers is how many containers of that shape the AM
// still wants, not counting those it has already received; 0 cancels. The RM
// replaces its previous number with it. As YARN's own client does, Allocate
// sends an ask only when its number differs from what it last sent for the
// same priority, resource name, shape and label, so repeating a number while
// allocations are in flight does not make the RM allocate more.
//
// On AM_RESYNC (the RM restarted and forgot the attempt) Allocate registers
// again and sends every ask anew. On AM_SHUTDOWN it returns ErrShutdown.
func (a *AMRMClient) Allocate(ctx context.Context, ask []Ask, release []ContainerID, progress float32) (*AllocateResult, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.registered == nil {
		return nil, fmt.Errorf("allocate: call Register first")
	}
	res, err := a.allocate(ctx, ask, release, progress)
	var re *RemoteError
	if errors.As(err, &re) && re.Class == notRegistered {
		a.log.Warn("ResourceManager lost the registration; registering again")
		if err := a.resync(ctx); err != nil {
			return nil, err
		}
		res, err = a.allocate(ctx, ask, release, progress)
	}
	return res, err
}

func (a *AMRMClient) resync(ctx context.Context) error {
	a.responseID = 0
	clear(a.lastAsk)
	if _, err := a.register(ctx, *a.registered); err != nil {
		return fmt.Errorf("allocate: register again after the RM lost the attempt: %w", err)
	}
	return nil
}

func (a *AMRMClient) allocate(ctx context.Context, ask []Ask, release []ContainerID, progress float32) (*AllocateResult, error) {
	var req msg // AllocateRequestProto
	sent := map[askKey]int32{}
	for _, k := range ask {
		if k.NumContainers < 0 {
			return nil, fmt.Errorf("allocate: ask for %d containers at priority %d; the number must be >= 0", k.NumContainers, k.Priority)
		}
		name := k.ResourceName
		if name == "" {
			name = "*"
		}
		key := askKey{priority: k.Priority, resourceName: name, resource: k.Resource, nodeLabel: k.NodeLabel}
		if last, ok := a.lastAsk[key]; ok && last == k.NumContainers {
			continue
		}
		sent[key] = k.NumContainers
		var rr msg // ResourceRequestProto
		var prio msg
		prio.int(1, int64(k.Priority)) // PriorityProto.priority
		rr.sub(1, prio)
		rr.str(2, name)
		rr.sub(3, k.Resource.proto())
		rr.int(4, int64(k.NumContainers))
		rr.bool(5, true) // relax_locality
		if k.NodeLabel != "" {
			rr.str(6, k.NodeLabel)
		}
		req.sub(1, rr)
	}
	for _, id := range release {
		req.sub(2, id.proto())
	}
	req.int(4, int64(a.responseID))
	req.float(5, progress)
	resp, err := a.rpc(ctx, "allocate", req)
	if err != nil {
		return nil, fmt.Errorf("allocate: %w", err)
	}
	for k, v := range sent {
		a.lastAsk[k] = v
	}
	res := &AllocateResult{}
	var command int32
	var newToken *Token
	err = fields(resp, func(f field) error {
		var err error
		switch f.num {
		case 1:
			command, err = f.int32()
		case 2:
			a.responseID, err = f.int32()
		case 3:
			var b []byte
			if b, err = f.bytes(); err == nil {
				var c Container
				c, err = decodeContainer(b)
				res.Allocated = append(res.Allocated, c)
			}
		case 4:
			var b []byte
			if b, err = f.bytes(); err == nil {
				var s ContainerStatus
				s, err = decodeContainerStatus(b)
				res.Completed = append(res.Completed, s)
			}
		case 5:
			var b []byte
			if b, err = f.bytes(); err == nil {
				res.Available, err = decodeResource(b)
			}
		case 7:
			res.ClusterNodes, err = f.int32()
		case 9:
			var b []byte
			if b, err = f.bytes(); err == nil {
				err = a.cacheNMToken(b)
			}
		case 12:
			var b []byte
			if b, err = f.bytes(); err == nil {
				var t Token
				t, err = decodeToken(b)
				newToken = &t
			}
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("allocate: decode response: %w", err)
	}
	if cur := a.rm.currentToken(); newToken != nil && len(newToken.Identifier) > 0 &&
		(string(newToken.Identifier) != string(cur.Identifier) || string(newToken.Password) != string(cur.Password)) {
		a.log.Info("the ResourceManager rolled the AMRMToken; reconnecting with the new one")
		a.rm.setToken(*newToken)
	}
	switch command {
	case amShutdown:
		return res, ErrShutdown
	case amResync:
		a.log.Warn("the ResourceManager asks for a resync; registering again")
		if err := a.resync(ctx); err != nil {
			return res, err
		}
	}
	return res, nil
}

// Protection is the quality of protection the connection to the RM negotiated:
// the strongest the RM's hadoop.rpc.protection allows.
func (a *AMRMClient) Protection() Protection {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := a.rm.protection(ctx)
	if err != nil {
		return Authentication
	}
	return p
}

// AMRMToken is the token the client authenticates with now: the one it was
// dialed with, or the newer one after the RM rolled it.
func (a *AMRMClient) AMRMToken() Token { return a.rm.currentToken() }

// NMToken returns the cached NMToken for a NodeManager "host:port"
// (Container.NodeAddr()). The RM sends it once per node, with the first
// container there.
func (a *AMRMClient) NMToken(nodeAddr string) (Token, bool) {
	a.tokMu.Lock()
	defer a.tokMu.Unlock()
	t, ok := a.nmTokens[nodeAddr]
	return t, ok
}

// Finish unregisters the AM with its final status, diagnostics and tracking
// URL. It repeats the call until the RM confirms, as YARN's client does, or
// ctx ends; it returns whether the RM confirmed.
func (a *AMRMClient) Finish(ctx context.Context, status FinalStatus, diagnostics, trackingURL string) (bool, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	var req msg // FinishApplicationMasterRequestProto
	req.str(1, diagnostics)
	req.str(2, trackingURL)
	req.int(3, int64(status))
	for {
		resp, err := a.rpc(ctx, "finishApplicationMaster", req)
		if err != nil {
			return false, fmt.Errorf("unregister ApplicationMaster: %w", err)
		}
		done := false
		err = fields(resp, func(f field) (err error) {
			if f.num == 1 {
				var v uint64
				v, err = f.varint()
				done = v != 0
			}
			return err
		})
		if err != nil {
			return false, fmt.Errorf("unregister ApplicationMaster: decode response: %w", err)
		}
		if done {
			a.log.Debug("unregistered", "status", status)
			return true, nil
		}
		select {
		case <-ctx.Done():
			return false, fmt.Errorf("unregister ApplicationMaster: not confirmed: %w", ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Close closes the connection. It does not unregister.
func (a *AMRMClient) Close() error { return a.rm.close() }
