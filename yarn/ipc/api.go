// Package ipc is a pure-Go client for the two Hadoop IPC protocols a YARN
// ApplicationMaster speaks: ApplicationMasterProtocol to the ResourceManager's
// scheduler port (register, allocate, finish) and ContainerManagementProtocol to
// each NodeManager (start, stop, status). Both run Hadoop RPC version 9 with the
// protobuf engine, authenticated with SASL DIGEST-MD5 over a token (the
// AMRMToken for the RM, the per-node NMToken for a NodeManager), which YARN
// requires even on clusters without Kerberos. It also reads the container's
// token file (HADOOP_TOKEN_FILE_LOCATION), versions 0 and 1.
//
// Clients are safe for use by one goroutine at a time per client; calls are
// serialized internally, so concurrent calls are correct but not parallel.
package ipc

import (
	"errors"
	"fmt"
	"strings"
)

// KindAMRMToken is the token kind of the AMRMToken in an AM's token file.
const KindAMRMToken = "YARN_AM_RM_TOKEN"

// KindNMToken is the token kind of a NodeManager token.
const KindNMToken = "NMToken"

// Token is a Hadoop delegation-style token: an opaque identifier, the password
// the SASL DIGEST-MD5 exchange proves knowledge of, its kind and service.
type Token struct {
	Identifier []byte
	Password   []byte
	Kind       string
	Service    string
}

// Credentials is the content of a Hadoop token file.
type Credentials struct {
	Tokens  map[string]Token  // alias -> token
	Secrets map[string][]byte // alias -> secret key
}

// Resource is an amount of memory and virtual cores.
type Resource struct {
	MemoryMB int64
	VCores   int32
}

// ApplicationID names a YARN application.
type ApplicationID struct {
	ClusterTimestamp int64
	ID               int32
}

// ApplicationAttemptID names one attempt of an application.
type ApplicationAttemptID struct {
	App     ApplicationID
	Attempt int32
}

// ContainerID names a container. ID holds the container sequence number in its
// low 40 bits and the RM epoch above them, as YARN encodes it on the wire.
type ContainerID struct {
	Attempt ApplicationAttemptID
	ID      int64
}

// Container is a container the RM allocated.
type Container struct {
	ID              ContainerID
	NodeHost        string
	NodePort        int
	NodeHTTPAddress string
	Resource        Resource
	Priority        int32
	Token           Token // the container token, handed to the NodeManager on start
}

// NodeAddr is the NodeManager's IPC address "host:port", the key of NMToken.
func (c Container) NodeAddr() string { return fmt.Sprintf("%s:%d", c.NodeHost, c.NodePort) }

// ContainerStatus is the state of a container as the RM or an NM reports it.
// State is YARN's name without prefix: "NEW", "RUNNING" or "COMPLETE".
type ContainerStatus struct {
	ID          ContainerID
	State       string
	ExitStatus  int32
	Diagnostics string
}

// FinalStatus is the final status an AM reports when it unregisters.
type FinalStatus int32

// The values are those of YARN's FinalApplicationStatusProto.
const (
	Undefined FinalStatus = 0
	Succeeded FinalStatus = 1
	Failed    FinalStatus = 2
	Killed    FinalStatus = 3
)

// Ask asks for NumContainers containers in total (not more) of one shape.
// YARN treats every ask as the absolute number still wanted at that priority,
// resource name and shape; ask 0 to cancel.
type Ask struct {
	Priority      int32
	Resource      Resource
	NumContainers int32
	ResourceName  string // "*" (any host) when empty
	NodeLabel     string // empty: the default partition
}

// AllocateResult is what one allocate heartbeat returned.
type AllocateResult struct {
	Allocated    []Container
	Completed    []ContainerStatus
	Available    Resource // headroom
	ClusterNodes int32
}

// LocalResourceType says how a NodeManager localizes a resource.
type LocalResourceType int32

// YARN's LocalResourceTypeProto values.
const (
	Archive LocalResourceType = 1
	File    LocalResourceType = 2
	Pattern LocalResourceType = 3
)

// Visibility says who may share a localized resource.
type Visibility int32

// YARN's LocalResourceVisibilityProto values.
const (
	Public      Visibility = 1
	Private     Visibility = 2
	Application Visibility = 3
)

// URL is YARN's URLProto: where a NodeManager downloads a local resource from.
type URL struct {
	Scheme   string
	Host     string
	Port     int32 // 0 or negative: none
	File     string
	UserInfo string
}

// LocalResource is a file or archive a NodeManager fetches into the container's
// working directory. Size and Timestamp must match the file exactly.
type LocalResource struct {
	URL        URL
	Size       int64
	Timestamp  int64
	Type       LocalResourceType
	Visibility Visibility
}

// LaunchContext is what a container runs. Command elements are joined with
// spaces and run by the NodeManager through a shell script, so
// <LOG_DIR> and shell redirections work as in YARN's own clients.
type LaunchContext struct {
	Command        []string
	Env            map[string]string
	LocalResources map[string]LocalResource // link name in the working dir -> resource
	// Tokens, when set, is a token file (Credentials, as written by Hadoop)
	// the NodeManager gives the container as HADOOP_TOKEN_FILE_LOCATION.
	Tokens []byte
}

// RemoteError is an error the server returned: its Java exception class and
// message.
type RemoteError struct {
	Class string
	Msg   string
	Fatal bool // the server closed the connection
}

// Error gives the class and the first line of the message; Hadoop often puts
// a whole Java stack trace in Msg.
func (e *RemoteError) Error() string {
	first, _, _ := strings.Cut(strings.TrimSpace(e.Msg), "\n")
	first = strings.TrimSpace(first)
	if first == "" {
		return fmt.Sprintf("server error %s", e.Class)
	}
	if e.Class == "" || strings.HasPrefix(first, e.Class) {
		return "server error " + first
	}
	return fmt.Sprintf("server error %s: %s", e.Class, first)
}

// ErrAuth is wrapped by every error that comes from the server refusing the
// token (wrong, expired, or for another application or node).
var ErrAuth = errors.New("token authentication failed")
