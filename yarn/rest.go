package yarn

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/user"
	"strings"
	"time"
)

// ErrNotFound is wrapped by errors for an application (or other object) the ResourceManager
// does not know.
var ErrNotFound = errors.New("not found")

// RemoteError is an error the ResourceManager's REST API returned: the HTTP status and, when the
// body held one, its RemoteException (Java exception name and message).
type RemoteError struct {
	Op         string // what the client was doing, e.g. "submit application_1_0001"
	Server     string // "ResourceManager" or "NodeManager host:port"
	Status     int    // HTTP status
	Exception  string // e.g. BadRequestException
	JavaClass  string // e.g. org.apache.hadoop.yarn.webapp.BadRequestException
	Message    string
	BodySample string // the start of a body that was not a RemoteException
}

// Error names the action, the exception and the message.
func (e *RemoteError) Error() string {
	var b strings.Builder
	server := e.Server
	if server == "" {
		server = "ResourceManager"
	}
	fmt.Fprintf(&b, "%s: the %s answered HTTP %d", e.Op, server, e.Status)
	switch {
	case e.Exception != "" || e.Message != "":
		fmt.Fprintf(&b, " %s: %s", e.Exception, firstLine(e.Message))
	case e.BodySample != "":
		fmt.Fprintf(&b, ": %s", e.BodySample)
	}
	return b.String()
}

// Is makes errors.Is(err, ErrNotFound) true for 404 answers.
func (e *RemoteError) Is(target error) bool {
	return target == ErrNotFound && (e.Status == http.StatusNotFound || e.Exception == "NotFoundException")
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = strings.TrimSpace(s[:i])
	}
	// Hadoop wraps messages in "java.lang.Exception: ..." more often than not
	return strings.TrimPrefix(s, "java.lang.Exception: ")
}

// Client talks to a ResourceManager's REST API (/ws/v1/cluster) on a cluster without Kerberos,
// where the user is named by the user.name query parameter. It is safe for concurrent use.
type Client struct {
	base string // http://host:port
	user string
	hc   *http.Client
}

// NewClient makes a client for the ResourceManager web address rm ("host:port" or
// "http://host:port") acting as user (default: $HADOOP_USER_NAME, then the current user).
func NewClient(rm, userName string) (*Client, error) {
	base, err := normalizeRM(rm)
	if err != nil {
		return nil, err
	}
	if userName == "" {
		userName = DefaultUser()
	}
	if userName == "" {
		return nil, errors.New("cannot tell the YARN user name: set --user or HADOOP_USER_NAME")
	}
	return &Client{base: base, user: userName, hc: &http.Client{Timeout: 30 * time.Second}}, nil
}

// DefaultUser is $HADOOP_USER_NAME, else the current user's name.
func DefaultUser() string {
	if u := os.Getenv("HADOOP_USER_NAME"); u != "" {
		return u
	}
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return os.Getenv("USER")
}

func normalizeRM(rm string) (string, error) {
	rm = strings.TrimSpace(rm)
	if rm == "" {
		return "", errors.New("no ResourceManager address: set --rm (SHOAL_YARN_RM) to its web address, e.g. http://rm.example.com:8088")
	}
	if !strings.Contains(rm, "://") {
		rm = "http://" + rm
	}
	u, err := url.Parse(rm)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return "", fmt.Errorf("ResourceManager address %q is not host:port or http(s)://host:port", rm)
	}
	return strings.TrimSuffix(u.Scheme+"://"+u.Host+u.Path, "/"), nil
}

// Base is the ResourceManager's web address, e.g. http://rm:8088.
func (c *Client) Base() string { return c.base }

// User is the YARN user the client acts as.
func (c *Client) User() string { return c.user }

// do sends one request and decodes a JSON answer into out (when non-nil).
func (c *Client) do(ctx context.Context, op, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("%s: encode request: %w", op, err)
		}
		body = bytes.NewReader(b)
	}
	u := c.base + path
	if strings.Contains(u, "?") {
		u += "&"
	} else {
		u += "?"
	}
	u += "user.name=" + url.QueryEscape(c.user)
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	req.Header.Set("Accept", "application/json")
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("%s: reach the ResourceManager at %s: %w", op, c.base, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("%s: read the answer: %w", op, err)
	}
	return decodeResponse(op, resp.StatusCode, b, out)
}

// decodeResponse turns an HTTP status and body into out or a *RemoteError. It is the parser of
// everything the ResourceManager says, fuzzed by FuzzDecodeResponse.
func decodeResponse(op string, status int, body []byte, out any) error {
	if status < 200 || status > 299 {
		re := &RemoteError{Op: op, Status: status}
		var env struct {
			RemoteException struct {
				Exception     string `json:"exception"`
				Message       string `json:"message"`
				JavaClassName string `json:"javaClassName"`
			} `json:"RemoteException"`
		}
		if json.Unmarshal(body, &env) == nil && (env.RemoteException.Exception != "" || env.RemoteException.Message != "") {
			re.Exception, re.Message, re.JavaClass = env.RemoteException.Exception, env.RemoteException.Message, env.RemoteException.JavaClassName
		} else {
			s := strings.TrimSpace(string(body))
			if len(s) > 200 {
				s = s[:200] + "..."
			}
			re.BodySample = s
		}
		return re
	}
	if out == nil || len(bytes.TrimSpace(body)) == 0 {
		if out != nil {
			return fmt.Errorf("%s: the ResourceManager answered HTTP %d with an empty body", op, status)
		}
		return nil
	}
	if err := json.Unmarshal(body, out); err != nil {
		s := strings.TrimSpace(string(body))
		if len(s) > 120 {
			s = s[:120] + "..."
		}
		return fmt.Errorf("%s: the ResourceManager's answer is not the JSON expected (%v): %q", op, err, s)
	}
	return nil
}

// NewApplication is the answer to new-application: an id to submit under, and the largest
// container the cluster can give.
type NewApplication struct {
	ID      string   `json:"application-id"`
	MaxSize Resource `json:"maximum-resource-capability"`
}

// Resource is memory (MB) and virtual cores, as the REST API writes them.
type Resource struct {
	MemoryMB int64 `json:"memory"`
	VCores   int32 `json:"vCores"`
}

// String gives the size as people read it, e.g. "4096 MB, 4 vcores".
func (r Resource) String() string { return fmt.Sprintf("%d MB, %d vcores", r.MemoryMB, r.VCores) }

// NewApplication asks the ResourceManager for a new application id.
func (c *Client) NewApplication(ctx context.Context) (*NewApplication, error) {
	var na NewApplication
	if err := c.do(ctx, "ask for a new application", http.MethodPost, "/ws/v1/cluster/apps/new-application", nil, &na); err != nil {
		return nil, err
	}
	if na.ID == "" {
		return nil, errors.New("ask for a new application: the ResourceManager's answer has no application-id")
	}
	return &na, nil
}

// LocalResource is a file a NodeManager copies into a container's working directory before it
// starts. Size and Timestamp (the modification time in milliseconds) must match the file.
type LocalResource struct {
	URL        string `json:"resource"`   // e.g. file:///home/u/job.py or hdfs://nn/path
	Type       string `json:"type"`       // FILE, ARCHIVE or PATTERN
	Visibility string `json:"visibility"` // APPLICATION, PRIVATE or PUBLIC
	Size       int64  `json:"size"`
	Timestamp  int64  `json:"timestamp"`
}

// ContainerSpec is what a container runs: the ApplicationMaster's, in a submission.
type ContainerSpec struct {
	Commands       []string                 // joined with " " by YARN's shell; <LOG_DIR> is expanded
	Environment    map[string]string        // the container's environment
	LocalResources map[string]LocalResource // link name -> resource
}

type kv[T any] struct {
	Key   string `json:"key"`
	Value T      `json:"value"`
}

// MarshalJSON writes the REST API's shape: maps as {"entry": [{"key","value"}]}, the command as
// {"command": "..."}.
func (s ContainerSpec) MarshalJSON() ([]byte, error) {
	type entries[T any] struct {
		Entry []kv[T] `json:"entry"`
	}
	var out struct {
		LocalResources entries[LocalResource] `json:"local-resources"`
		Environment    entries[string]        `json:"environment"`
		Commands       struct {
			Command string `json:"command"`
		} `json:"commands"`
	}
	for _, k := range sortedKeys(s.LocalResources) {
		out.LocalResources.Entry = append(out.LocalResources.Entry, kv[LocalResource]{k, s.LocalResources[k]})
	}
	for _, k := range sortedKeys(s.Environment) {
		out.Environment.Entry = append(out.Environment.Entry, kv[string]{k, s.Environment[k]})
	}
	out.LocalResources.Entry = nonNil(out.LocalResources.Entry)
	out.Environment.Entry = nonNil(out.Environment.Entry)
	out.Commands.Command = strings.Join(s.Commands, " ")
	return json.Marshal(out)
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// Submission is an application submission context.
type Submission struct {
	ID          string        // from NewApplication
	Name        string        // shown by the ResourceManager
	Type        string        // application type, e.g. SHOAL
	Queue       string        // empty: the user's default queue
	Tags        []string      // application tags
	NodeLabel   string        // node label expression for all of the application's containers
	MaxAttempts int           // ApplicationMaster attempts (0: the cluster's default)
	AM          ContainerSpec // the ApplicationMaster's container
	AMResource  Resource      // the ApplicationMaster container's size
}

// MarshalJSON writes the REST API's ApplicationSubmissionContext.
func (s Submission) MarshalJSON() ([]byte, error) {
	type tags struct {
		Tag []string `json:"tag"`
	}
	out := struct {
		ID          string        `json:"application-id"`
		Name        string        `json:"application-name"`
		Type        string        `json:"application-type,omitempty"`
		Queue       string        `json:"queue,omitempty"`
		MaxAttempts int           `json:"max-app-attempts,omitempty"`
		Resource    Resource      `json:"resource"`
		AM          ContainerSpec `json:"am-container-spec"`
		Tags        *tags         `json:"application-tags,omitempty"`
		NodeLabel   string        `json:"app-node-label-expression,omitempty"`
		AMNodeLabel string        `json:"am-container-node-label-expression,omitempty"`
		Unmanaged   bool          `json:"unmanaged-AM"`
		KeepCont    bool          `json:"keep-containers-across-application-attempts"`
	}{ID: s.ID, Name: s.Name, Type: s.Type, Queue: s.Queue, MaxAttempts: s.MaxAttempts, Resource: s.AMResource,
		AM: s.AM, NodeLabel: s.NodeLabel, AMNodeLabel: s.NodeLabel}
	if len(s.Tags) > 0 {
		out.Tags = &tags{Tag: s.Tags}
	}
	return json.Marshal(out)
}

// Submit submits an application. The ResourceManager accepts it (HTTP 202) before it checks
// the queue; follow App to see whether it was admitted.
func (c *Client) Submit(ctx context.Context, s *Submission) error {
	if s.ID == "" {
		return errors.New("submit: the submission has no application id; ask NewApplication for one")
	}
	return c.do(ctx, "submit "+s.ID, http.MethodPost, "/ws/v1/cluster/apps", s, nil)
}

// App is an application report.
type App struct {
	ID                string  `json:"id"`
	User              string  `json:"user"`
	Name              string  `json:"name"`
	Queue             string  `json:"queue"`
	State             string  `json:"state"`       // NEW ... ACCEPTED, RUNNING, FINISHED, FAILED, KILLED
	FinalStatus       string  `json:"finalStatus"` // UNDEFINED, SUCCEEDED, FAILED, KILLED
	Progress          float64 `json:"progress"`    // percent, as the ApplicationMaster reports it
	Diagnostics       string  `json:"diagnostics"`
	Type              string  `json:"applicationType"`
	Tags              string  `json:"applicationTags"` // comma-separated
	TrackingURL       string  `json:"trackingUrl"`
	StartedTime       int64   `json:"startedTime"`
	FinishedTime      int64   `json:"finishedTime"`
	ElapsedTime       int64   `json:"elapsedTime"`
	AMContainerLogs   string  `json:"amContainerLogs"`
	AMHostHTTPAddress string  `json:"amHostHttpAddress"`
	AllocatedMB       int64   `json:"allocatedMB"`
	AllocatedVCores   int64   `json:"allocatedVCores"`
	RunningContainers int     `json:"runningContainers"`
	AppNodeLabel      string  `json:"appNodeLabelExpression"`
}

// Terminal says whether the application has ended.
func (a *App) Terminal() bool {
	switch a.State {
	case "FINISHED", "FAILED", "KILLED":
		return true
	}
	return false
}

// ValidID checks that id looks like application_<cluster timestamp>_<number>, so a typo gets a
// clear error rather than the ResourceManager's.
func ValidID(id string) error {
	p := strings.Split(id, "_")
	if len(p) != 3 || p[0] != "application" || !digits(p[1]) || !digits(p[2]) {
		return fmt.Errorf("%q is not a YARN application id (application_<cluster timestamp>_<number>, as `shoal yarn submit` prints)", id)
	}
	return nil
}

func digits(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// App returns the application's report. An unknown id gives an error wrapping ErrNotFound.
func (c *Client) App(ctx context.Context, id string) (*App, error) {
	if err := ValidID(id); err != nil {
		return nil, err
	}
	var r struct {
		App *App `json:"app"`
	}
	if err := c.do(ctx, "read application "+id, http.MethodGet, "/ws/v1/cluster/apps/"+id, nil, &r); err != nil {
		return nil, err
	}
	if r.App == nil || r.App.ID == "" {
		return nil, fmt.Errorf("read application %s: the ResourceManager's answer has no app", id)
	}
	return r.App, nil
}

// Kill asks the ResourceManager to kill the application. It returns once the request is
// accepted; the state becomes KILLED shortly after. Killing a finished application is an error
// that says so.
func (c *Client) Kill(ctx context.Context, id string) error {
	if err := ValidID(id); err != nil {
		return err
	}
	return c.do(ctx, "kill "+id, http.MethodPut, "/ws/v1/cluster/apps/"+id+"/state", map[string]string{"state": "KILLED"}, nil)
}

// Attempt is one ApplicationMaster attempt.
type Attempt struct {
	ID              int    `json:"id"`
	AppAttemptID    string `json:"appAttemptId"`
	ContainerID     string `json:"containerId"`
	NodeID          string `json:"nodeId"`
	NodeHTTPAddress string `json:"nodeHttpAddress"`
	LogsLink        string `json:"logsLink"`
}

// Attempts lists the application's ApplicationMaster attempts.
func (c *Client) Attempts(ctx context.Context, id string) ([]Attempt, error) {
	if err := ValidID(id); err != nil {
		return nil, err
	}
	var r struct {
		AppAttempts struct {
			AppAttempt []Attempt `json:"appAttempt"`
		} `json:"appAttempts"`
	}
	if err := c.do(ctx, "list attempts of "+id, http.MethodGet, "/ws/v1/cluster/apps/"+id+"/appattempts", nil, &r); err != nil {
		return nil, err
	}
	return r.AppAttempts.AppAttempt, nil
}

// Node is a NodeManager as the ResourceManager lists it.
type Node struct {
	ID              string `json:"id"`
	State           string `json:"state"`
	NodeHostName    string `json:"nodeHostName"`
	NodeHTTPAddress string `json:"nodeHTTPAddress"`
	NumContainers   int    `json:"numContainers"`
}

// Nodes lists the cluster's NodeManagers.
func (c *Client) Nodes(ctx context.Context) ([]Node, error) {
	var r struct {
		Nodes *struct {
			Node []Node `json:"node"`
		} `json:"nodes"`
	}
	if err := c.do(ctx, "list nodes", http.MethodGet, "/ws/v1/cluster/nodes", nil, &r); err != nil {
		return nil, err
	}
	if r.Nodes == nil {
		return nil, nil
	}
	return r.Nodes.Node, nil
}
