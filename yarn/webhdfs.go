package yarn

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path"
	"strings"
	"time"
)

// WebHDFS stages files on HDFS through the NameNode's REST API (non-secure: user.name), so that
// NodeManagers on any host can localize them as hdfs:// resources. It is safe for concurrent use.
type WebHDFS struct {
	web  string // http://namenode:9870
	fs   string // hdfs://namenode:8020, the URL prefix of staged files
	user string
	hc   *http.Client
}

// NewWebHDFS makes a stager for the NameNode web address web ("host:port" or a URL) and the
// file system URI defaultFS (fs.defaultFS, hdfs://host:port).
func NewWebHDFS(web, defaultFS, user string) (*WebHDFS, error) {
	u, err := url.Parse(defaultFS)
	if err != nil || u.Scheme != "hdfs" || u.Host == "" {
		return nil, fmt.Errorf("file system %q is not hdfs://host:port; set fs.defaultFS in core-site.xml", defaultFS)
	}
	if web == "" {
		return nil, errors.New("no WebHDFS address: set --webhdfs (SHOAL_YARN_WEBHDFS) or dfs.namenode.http-address in hdfs-site.xml")
	}
	if !strings.Contains(web, "://") {
		web = "http://" + web
	}
	w, err := url.Parse(web)
	if err != nil || w.Host == "" {
		return nil, fmt.Errorf("WebHDFS address %q is not host:port or http://host:port", web)
	}
	return &WebHDFS{web: strings.TrimSuffix(w.Scheme+"://"+w.Host, "/"), fs: "hdfs://" + u.Host, user: user,
		// no redirects followed: CREATE's answer names the DataNode to send the bytes to
		hc: &http.Client{Timeout: 10 * time.Minute, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}, nil
}

func (w *WebHDFS) url(p, op string, extra url.Values) string {
	q := url.Values{"op": {op}, "user.name": {w.user}}
	for k, v := range extra {
		q[k] = v
	}
	return w.web + "/webhdfs/v1" + (&url.URL{Path: p}).EscapedPath() + "?" + q.Encode()
}

func (w *WebHDFS) do(ctx context.Context, op, method, u string, body io.Reader, size int64, out any) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	if body != nil {
		req.ContentLength = size
		req.Header.Set("Content-Type", "application/octet-stream")
	}
	resp, err := w.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s: reach WebHDFS at %s: %w", op, w.web, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	if resp.StatusCode == http.StatusTemporaryRedirect {
		return resp, nil
	}
	err = decodeResponse(op, resp.StatusCode, b, out)
	if re, ok := err.(*RemoteError); ok {
		re.Server = "NameNode " + w.web
	}
	return resp, err
}

// Stage uploads the local file to the remote HDFS path (overwriting) and returns it as a local
// resource with the size and modification time HDFS recorded.
func (w *WebHDFS) Stage(ctx context.Context, local, remote string) (LocalResource, error) {
	op := fmt.Sprintf("stage %s as %s", local, remote)
	f, err := os.Open(local)
	if err != nil {
		return LocalResource{}, fmt.Errorf("%s: %w", op, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		return LocalResource{}, fmt.Errorf("%s: not a regular file", op)
	}
	// CREATE in two steps, as WebHDFS asks: the NameNode answers 307 with the DataNode's URL
	resp, err := w.do(ctx, op, http.MethodPut, w.url(remote, "CREATE", url.Values{"overwrite": {"true"}}), nil, 0, nil)
	if err != nil {
		return LocalResource{}, err
	}
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusTemporaryRedirect || loc == "" {
		return LocalResource{}, fmt.Errorf("%s: the NameNode did not redirect to a DataNode (HTTP %d)", op, resp.StatusCode)
	}
	if _, err := w.do(ctx, op, http.MethodPut, loc, f, st.Size(), nil); err != nil {
		return LocalResource{}, err
	}
	var fs struct {
		FileStatus struct {
			Length           int64 `json:"length"`
			ModificationTime int64 `json:"modificationTime"`
		} `json:"FileStatus"`
	}
	if _, err := w.do(ctx, op, http.MethodGet, w.url(remote, "GETFILESTATUS", nil), nil, 0, &fs); err != nil {
		return LocalResource{}, err
	}
	if fs.FileStatus.Length != st.Size() {
		return LocalResource{}, fmt.Errorf("%s: HDFS holds %d bytes of %d", op, fs.FileStatus.Length, st.Size())
	}
	return LocalResource{URL: w.fs + remote, Type: "FILE", Visibility: "APPLICATION",
		Size: fs.FileStatus.Length, Timestamp: fs.FileStatus.ModificationTime}, nil
}

// Delete removes a staging directory and everything in it; a missing one is not an error.
func (w *WebHDFS) Delete(ctx context.Context, remote string) error {
	_, err := w.do(ctx, "delete "+remote, http.MethodDelete, w.url(remote, "DELETE", url.Values{"recursive": {"true"}}), nil, 0, nil)
	return err
}

// StagingDir is where an application's files go: /user/<user>/.shoal/<application id>.
func StagingDir(user, app string) string { return path.Join("/user", user, ".shoal", app) }

// encodeStaging and decodeStaging carry the staging directory to the ApplicationMaster, which
// removes it when the application ends: "<WebHDFS address>|<file system>|<path>".
func encodeStaging(w *WebHDFS, dir string) string { return w.web + "|" + w.fs + "|" + dir }

func decodeStaging(s, user string) (*WebHDFS, string, error) {
	p := strings.SplitN(s, "|", 3)
	if len(p) != 3 {
		return nil, "", fmt.Errorf("staging %q is not web|fs|path", s)
	}
	w, err := NewWebHDFS(p[0], p[1], user)
	return w, p[2], err
}
