package yarn

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
)

// Container logs come from the NodeManagers' REST API (/ws/v1/node), which serves a
// container's log files while the NodeManager keeps them: on clusters without log aggregation,
// for yarn.nodemanager.log.retain-seconds after the application ends. With log aggregation on,
// finished applications' logs are in the aggregated store: use `yarn logs -applicationId`.

// ContainerLogs are one container's log files on one node.
type ContainerLogs struct {
	Container string
	Node      string // the NodeManager's web address
	Files     []LogFile
	Err       error // the NodeManager could not list them
}

// LogFile is one log file of a container.
type LogFile struct {
	Name string
	Size int64
}

func (c *Client) nmGet(ctx context.Context, op, nodeHTTP, path, accept string) ([]byte, int, error) {
	u := nodeHTTP
	if !strings.Contains(u, "://") {
		u = "http://" + u
	}
	u += path
	if strings.Contains(u, "?") {
		u += "&"
	} else {
		u += "?"
	}
	u += "user.name=" + url.QueryEscape(c.user)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, 0, fmt.Errorf("%s: %w", op, err)
	}
	req.Header.Set("Accept", accept)
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, 0, fmt.Errorf("%s: reach the NodeManager at %s: %w", op, nodeHTTP, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		return nil, resp.StatusCode, fmt.Errorf("%s: %w", op, err)
	}
	return b, resp.StatusCode, nil
}

func nmError(op, node string, status int, b []byte) error {
	err := decodeResponse(op, status, b, nil)
	if re, ok := err.(*RemoteError); ok {
		re.Server = "NodeManager " + node
	}
	return err
}

// appContainersOnNode lists the application's containers a NodeManager knows.
func (c *Client) appContainersOnNode(ctx context.Context, nodeHTTP, id string) ([]string, error) {
	op := "list containers of " + id + " on " + nodeHTTP
	b, status, err := c.nmGet(ctx, op, nodeHTTP, "/ws/v1/node/apps/"+id, "application/json")
	if err != nil {
		return nil, err
	}
	if status == http.StatusNotFound {
		return nil, nil
	}
	var r struct {
		App struct {
			ContainerIDs []string `json:"containerids"`
		} `json:"app"`
	}
	if status != http.StatusOK {
		return nil, nmError(op, nodeHTTP, status, b)
	}
	if err := decodeResponse(op, status, b, &r); err != nil {
		return nil, err
	}
	return r.App.ContainerIDs, nil
}

// parseLogList reads a NodeManager's list of a container's log files, in either of the shapes
// Hadoop 3 writes: {"containerLogsInfo": [...]} or a bare array, each entry holding
// {"containerLogInfo": [{"fileName", "fileSize"}]}.
func parseLogList(b []byte) ([]LogFile, error) {
	type info struct {
		ContainerLogInfo []struct {
			FileName string          `json:"fileName"`
			FileSize json.RawMessage `json:"fileSize"`
		} `json:"containerLogInfo"`
	}
	var list []info
	if err := json.Unmarshal(b, &list); err != nil {
		var wrapped struct {
			ContainerLogsInfo json.RawMessage `json:"containerLogsInfo"`
		}
		if err2 := json.Unmarshal(b, &wrapped); err2 != nil || len(wrapped.ContainerLogsInfo) == 0 {
			return nil, fmt.Errorf("the NodeManager's log list is not the JSON expected: %v", err)
		}
		if err := json.Unmarshal(wrapped.ContainerLogsInfo, &list); err != nil {
			var one info
			if err := json.Unmarshal(wrapped.ContainerLogsInfo, &one); err != nil {
				return nil, fmt.Errorf("the NodeManager's log list is not the JSON expected: %v", err)
			}
			list = []info{one}
		}
	}
	var out []LogFile
	for _, in := range list {
		for _, f := range in.ContainerLogInfo {
			var size int64
			s := strings.Trim(string(f.FileSize), `"`)
			fmt.Sscan(s, &size)
			if f.FileName != "" {
				out = append(out, LogFile{Name: f.FileName, Size: size})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// ContainerLogFiles lists a container's log files on a node.
func (c *Client) ContainerLogFiles(ctx context.Context, nodeHTTP, container string) ([]LogFile, error) {
	op := "list logs of " + container
	b, status, err := c.nmGet(ctx, op, nodeHTTP, "/ws/v1/node/containers/"+container+"/logs", "application/json")
	if err != nil {
		return nil, err
	}
	if status != http.StatusOK {
		return nil, nmError(op, nodeHTTP, status, b)
	}
	return parseLogList(b)
}

// ContainerLog reads one log file of a container.
func (c *Client) ContainerLog(ctx context.Context, nodeHTTP, container, file string) ([]byte, error) {
	op := "read log " + file + " of " + container
	b, status, err := c.nmGet(ctx, op, nodeHTTP, "/ws/v1/node/containers/"+container+"/logs/"+url.PathEscape(file), "text/plain, */*")
	if err != nil {
		return nil, err
	}
	if status != http.StatusOK {
		return nil, nmError(op, nodeHTTP, status, b)
	}
	return stripLogEnvelope(b), nil
}

// Logs finds the application's containers and their log files: each ApplicationMaster
// attempt's container, the member containers in its roster (RosterFile), and whatever
// containers the NodeManagers still list for a running application.
func (c *Client) Logs(ctx context.Context, id string) ([]ContainerLogs, error) {
	if err := ValidID(id); err != nil {
		return nil, err
	}
	where := map[string]string{} // container -> node web address
	atts, err := c.Attempts(ctx, id)
	if err != nil {
		return nil, err
	}
	for _, a := range atts {
		if a.ContainerID == "" || a.NodeHTTPAddress == "" {
			continue
		}
		where[a.ContainerID] = a.NodeHTTPAddress
		if b, err := c.ContainerLog(ctx, a.NodeHTTPAddress, a.ContainerID, RosterFile); err == nil {
			for cid, node := range parseRoster(b) {
				where[cid] = node
			}
		}
	}
	if nodes, err := c.Nodes(ctx); err == nil {
		for _, n := range nodes {
			if n.NodeHTTPAddress == "" || n.State != "RUNNING" {
				continue
			}
			ids, err := c.appContainersOnNode(ctx, n.NodeHTTPAddress, id)
			if err != nil {
				continue
			}
			for _, cid := range ids {
				where[cid] = n.NodeHTTPAddress
			}
		}
	}
	var out []ContainerLogs
	for _, cid := range sortedKeys(where) {
		files, err := c.ContainerLogFiles(ctx, where[cid], cid)
		if err != nil {
			out = append(out, ContainerLogs{Container: cid, Node: where[cid], Err: err})
			continue
		}
		out = append(out, ContainerLogs{Container: cid, Node: where[cid], Files: files})
	}
	return out, nil
}

// parseRoster reads the AM's RosterFile: container id and node web address per line.
func parseRoster(b []byte) map[string]string {
	out := map[string]string{}
	for _, line := range strings.Split(string(stripLogEnvelope(b)), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && strings.HasPrefix(f[0], "container_") {
			out[f[0]] = f[1]
		}
	}
	return out
}

// stripLogEnvelope returns the content of a log file as a NodeManager serves it: Hadoop 3 wraps
// it in a header ("Container: ...", "LogLength:N", "LogContents:") and a trailer ("End of
// LogType:..."). The content is the LogLength bytes after the header, exactly, so that a file
// read while it grows can be continued from its length. A body without the envelope is returned
// as it is.
func stripLogEnvelope(b []byte) []byte {
	const start = "LogContents:\n"
	i := bytes.Index(b, []byte(start))
	if i < 0 || !bytes.HasPrefix(b, []byte("Container: ")) {
		return b
	}
	head, body := b[:i], b[i+len(start):]
	if k := bytes.LastIndex(head, []byte("LogLength:")); k >= 0 {
		line := head[k+len("LogLength:"):]
		if e := bytes.IndexByte(line, '\n'); e >= 0 {
			line = line[:e]
		}
		if n, err := strconv.ParseInt(strings.TrimSpace(string(line)), 10, 64); err == nil && n >= 0 && n <= int64(len(body)) {
			return body[:n]
		}
	}
	if j := bytes.LastIndex(body, []byte("End of LogType:")); j >= 0 {
		body = body[:j]
	}
	return body
}

// AMContainer is the container and node of the application's last ApplicationMaster attempt.
func (c *Client) AMContainer(ctx context.Context, id string) (container, nodeHTTP string, err error) {
	atts, err := c.Attempts(ctx, id)
	if err != nil {
		return "", "", err
	}
	if len(atts) == 0 {
		return "", "", fmt.Errorf("application %s has no ApplicationMaster attempt yet", id)
	}
	last := atts[len(atts)-1]
	return last.ContainerID, last.NodeHTTPAddress, nil
}

// DriverOutput copies the driver's output (driver.out and driver.err in the ApplicationMaster's
// container) to two writers as it grows, by polling the NodeManager. Use it from one goroutine.
type DriverOutput struct {
	c         *Client
	id        string
	stdout    io.Writer
	stderr    io.Writer
	container string
	copied    map[string]int64
	// Limit is the largest file it fetches whole on every poll (default 64 MiB); past it, the
	// rest is left to `shoal yarn logs`.
	Limit   int64
	stopped map[string]bool
}

// NewDriverOutput follows application id's driver output.
func (c *Client) NewDriverOutput(id string, stdout, stderr io.Writer) *DriverOutput {
	return &DriverOutput{c: c, id: id, stdout: stdout, stderr: stderr, copied: map[string]int64{}, stopped: map[string]bool{},
		Limit: 64 << 20}
}

// Poll writes what the driver wrote since the last poll. A new ApplicationMaster attempt starts
// the files anew.
func (d *DriverOutput) Poll(ctx context.Context) error {
	cid, node, err := d.c.AMContainer(ctx, d.id)
	if err != nil {
		return err
	}
	if cid == "" || node == "" {
		return nil
	}
	if cid != d.container {
		d.container = cid
		clear(d.copied)
		clear(d.stopped)
	}
	files, err := d.c.ContainerLogFiles(ctx, node, cid)
	if err != nil {
		return err
	}
	for _, f := range files {
		var w io.Writer
		switch f.Name {
		case "driver.out":
			w = d.stdout
		case "driver.err":
			w = d.stderr
		default:
			continue
		}
		if f.Size <= d.copied[f.Name] || d.stopped[f.Name] {
			continue
		}
		if f.Size > d.Limit {
			d.stopped[f.Name] = true
			fmt.Fprintf(d.stderr, "shoal: %s is over %d MiB; read the rest with `shoal yarn logs --file %s %s`\n", f.Name, d.Limit>>20, f.Name, d.id)
			continue
		}
		b, err := d.c.ContainerLog(ctx, node, cid, f.Name)
		if err != nil {
			return err
		}
		if n := int64(len(b)); n > d.copied[f.Name] {
			w.Write(b[d.copied[f.Name]:])
			d.copied[f.Name] = n
		}
	}
	return nil
}

// ReportFile is the end-of-job report as JSON, which the ApplicationMaster leaves beside
// driver.err when the driver ends (not when the application is killed).
const ReportFile = "report.json"

// Report fetches the end-of-job report (ReportFile) of the application's last
// ApplicationMaster attempt.
func (d *DriverOutput) Report(ctx context.Context) ([]byte, error) {
	cid, node, err := d.c.AMContainer(ctx, d.id)
	if err != nil {
		return nil, err
	}
	if cid == "" || node == "" {
		return nil, fmt.Errorf("application %s has no ApplicationMaster container", d.id)
	}
	files, err := d.c.ContainerLogFiles(ctx, node, cid)
	if err != nil {
		return nil, err
	}
	for _, f := range files {
		if f.Name == ReportFile {
			return d.c.ContainerLog(ctx, node, cid, ReportFile)
		}
	}
	return nil, fmt.Errorf("application %s left no %s (its driver did not end: killed, or its ApplicationMaster failed)", d.id, ReportFile)
}
