package ipc

// A real-YARN test: the test submits an application over the RM's REST API
// whose ApplicationMaster is this test binary (TestHelperAM). The AM reads its
// token file, registers, asks for two containers, starts them through the
// NodeManagers, stops one, sees both complete, checks that wrong tokens are
// refused, and unregisters SUCCEEDED. Run the MiniYARNCluster first:
//
//	test/yarn/minicluster.sh up && eval "$(test/yarn/minicluster.sh env)"
//	go test ./yarn/ipc -run TestYARN -v

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

// yarnEnv finds the harness: SHOAL_YARN_RM and SHOAL_YARN_SCHEDULER_ADDRESS
// from the environment, else from the env file test/yarn/minicluster.sh
// writes ($SHOAL_YARN_DIR/env, /tmp/shoal-yarn/env).
func yarnEnv(t *testing.T) (web, scheduler string) {
	web, scheduler = os.Getenv("SHOAL_YARN_RM"), os.Getenv("SHOAL_YARN_SCHEDULER_ADDRESS")
	if web != "" && scheduler != "" {
		return web, scheduler
	}
	dir := os.Getenv("SHOAL_YARN_DIR")
	if dir == "" {
		dir = "/tmp/shoal-yarn"
	}
	f, err := os.Open(filepath.Join(dir, "env"))
	if err != nil {
		t.Skipf("no YARN to test against: SHOAL_YARN_RM is unset and %v; start one with test/yarn/minicluster.sh up", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, _ := strings.Cut(strings.TrimPrefix(sc.Text(), "export "), "=")
		switch k {
		case "SHOAL_YARN_RM":
			web = strings.Trim(v, `"'`)
		case "SHOAL_YARN_SCHEDULER_ADDRESS":
			scheduler = strings.Trim(v, `"'`)
		}
	}
	if web == "" || scheduler == "" {
		t.Skipf("no YARN to test against: %s lacks SHOAL_YARN_RM or SHOAL_YARN_SCHEDULER_ADDRESS", f.Name())
	}
	resp, err := http.Get(web + "/ws/v1/cluster/info")
	if err != nil {
		t.Skipf("no YARN to test against: %s is not answering (%v); start it with test/yarn/minicluster.sh up", web, err)
	}
	resp.Body.Close()
	return web, scheduler
}

// amResult is what the helper AM saw; it writes it as JSON for the test.
type amResult struct {
	MaxResource   Resource
	Allocated     []string // container ids
	Nodes         []string // their NodeManagers
	NMTokenNodes  []string // nodes an NMToken came for
	StartStatus   map[string]string
	Completed     map[string]ContainerStatus
	StoppedID     string
	WrongAMRMAuth string // the error DialAMRM gave for a wrong password
	WrongNMAuth   string // the error DialNM gave for a wrong password
	Unregistered  bool
	Redialed      []string // calls that went through after the AM dropped the connection under them

	Secret       string            // the secret key the AM gave both containers in their tokens
	Protection   map[string]string // negotiated by the "amrm" and "nm" connections
	SecretOnWire bool              // the secret is in the bytes the AM sent the first NodeManager
}

func TestYARNApplicationMaster(t *testing.T) {
	web, scheduler := yarnEnv(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "payload.txt"), []byte("shipped by the NodeManager\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	st := runApp(ctx, t, web, dir, map[string]string{"SHOAL_YARN_SCHEDULER_ADDRESS": scheduler})
	amLog := readFile(dir, "am.log")
	if st.State != "FINISHED" || st.FinalStatus != "SUCCEEDED" {
		t.Fatalf("application %s: state %s, final status %s, diagnostics %q; AM log:\n%s",
			st.ID, st.State, st.FinalStatus, st.Diagnostics, amLog)
	}
	var res amResult
	if err := json.Unmarshal([]byte(readFile(dir, "result.json")), &res); err != nil {
		t.Fatalf("AM result: %v; AM log:\n%s", err, amLog)
	}
	if res.MaxResource.MemoryMB <= 0 || res.MaxResource.VCores <= 0 {
		t.Errorf("register returned max resource %+v", res.MaxResource)
	}
	if len(res.Allocated) != 2 {
		t.Fatalf("allocated %v, want 2 containers", res.Allocated)
	}
	for _, n := range res.Nodes {
		found := false
		for _, m := range res.NMTokenNodes {
			found = found || m == n
		}
		if !found {
			t.Errorf("no NMToken cached for node %s (tokens for %v)", n, res.NMTokenNodes)
		}
	}
	for _, id := range res.Allocated {
		if _, err := ParseContainerID(id); err != nil {
			t.Errorf("allocated id: %v", err)
		}
		// the container ran its command in a working directory the NodeManager filled with payload.txt
		if got := readFile(dir, "out."+id); got != "shipped by the NodeManager\n" {
			t.Errorf("container %s wrote %q, want the localized payload", id, got)
		}
		st, ok := res.Completed[id]
		if !ok {
			t.Errorf("container %s never reported complete (completed: %v)", id, res.Completed)
			continue
		}
		if st.State != "COMPLETE" {
			t.Errorf("container %s state %s", id, st.State)
		}
		if id == res.StoppedID {
			if st.ExitStatus == 0 {
				t.Errorf("stopped container %s exited 0: %+v", id, st)
			}
		} else if st.ExitStatus != 0 {
			t.Errorf("container %s exit status %d, want 0 (`true`): %s", id, st.ExitStatus, st.Diagnostics)
		}
	}
	if res.StoppedID == "" {
		t.Error("no container was stopped")
	}
	for what, msg := range map[string]string{"AMRM": res.WrongAMRMAuth, "NM": res.WrongNMAuth} {
		if !strings.Contains(msg, "token authentication failed") {
			t.Errorf("a wrong %s token gave %q, want an authentication error", what, msg)
		}
	}
	if len(res.Redialed) != 2 {
		t.Errorf("calls after dropped connections: %v, want getContainerStatuses and allocate", res.Redialed)
	}
	if !res.Unregistered {
		t.Error("Finish did not report unregistered")
	}
	checkTokens(t, dir, res, "authentication")
	// with hadoop.rpc.protection=authentication (the harness's, and Hadoop's default) the
	// launch context's tokens cross the network in clear: the AM's own bytes show it
	if !res.SecretOnWire {
		t.Error("the secret is not in the bytes sent to the NodeManager under authentication: the wire check proves nothing")
	}
	t.Logf("AM log:\n%s", amLog)
}

// checkTokens checks the negotiated protection and that each container's
// token file (copied by its command) holds the secret key the AM gave it.
func checkTokens(t *testing.T, dir string, res amResult, want string) {
	t.Helper()
	for _, which := range []string{"amrm", "nm"} {
		if got := res.Protection[which]; got != want {
			t.Errorf("%s connection negotiated %q, want %q", which, got, want)
		}
	}
	if res.Secret == "" {
		t.Fatal("the AM reported no secret")
	}
	for _, id := range res.Allocated {
		f, err := os.Open(filepath.Join(dir, "tokens."+id))
		if err != nil {
			t.Errorf("container %s: its token file: %v", id, err)
			continue
		}
		c, err := ParseCredentials(bufio.NewReader(f))
		f.Close()
		if err != nil {
			t.Errorf("container %s: %v", id, err)
		} else if string(c.Secrets["shoal.test.secret"]) != res.Secret {
			t.Errorf("container %s: its token file holds secrets %v, not the AM's", id, sortedKeys(c.Secrets))
		}
	}
}

type appState struct {
	ID, State, FinalStatus, Diagnostics string
}

// runApp submits an application whose AM is this test binary (TestHelperAM)
// with env added to its environment, and waits until it ends.
func runApp(ctx context.Context, t *testing.T, web, dir string, env map[string]string) appState {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	name := "root"
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	var newApp struct {
		ID string `json:"application-id"`
	}
	rest(ctx, t, "POST", web+"/ws/v1/cluster/apps/new-application?user.name="+name, nil, &newApp)
	entries := []map[string]string{
		{"key": "SHOAL_IPC_HELPER_AM", "value": "1"},
		{"key": "SHOAL_IPC_TEST_DIR", "value": dir},
	}
	for _, k := range sortedKeys(env) {
		entries = append(entries, map[string]string{"key": k, "value": env[k]})
	}
	sub := map[string]any{
		"application-id":   newApp.ID,
		"application-name": "shoal-ipc-test",
		"application-type": "SHOAL-TEST",
		"max-app-attempts": 1,
		"resource":         map[string]any{"memory": 256, "vCores": 1},
		"am-container-spec": map[string]any{
			"commands":    map[string]any{"command": exe + " -test.run=^TestHelperAM$ -test.v 1><LOG_DIR>/stdout 2><LOG_DIR>/stderr"},
			"environment": map[string]any{"entry": entries},
		},
	}
	rest(ctx, t, "POST", web+"/ws/v1/cluster/apps?user.name="+name, sub, nil)
	t.Logf("submitted %s", newApp.ID)
	var app struct {
		App struct {
			State       string `json:"state"`
			FinalStatus string `json:"finalStatus"`
			Diagnostics string `json:"diagnostics"`
		} `json:"app"`
	}
	for {
		rest(ctx, t, "GET", web+"/ws/v1/cluster/apps/"+newApp.ID, nil, &app)
		if s := app.App.State; s == "FINISHED" || s == "FAILED" || s == "KILLED" {
			break
		}
		select {
		case <-ctx.Done():
			rest(context.Background(), t, "PUT", web+"/ws/v1/cluster/apps/"+newApp.ID+"/state?user.name="+name, map[string]string{"state": "KILLED"}, nil)
			t.Fatalf("application %s still %s at the deadline; AM log:\n%s", newApp.ID, app.App.State, readFile(dir, "am.log"))
		case <-time.After(300 * time.Millisecond):
		}
	}
	// The RM reports FINISHED once the AM unregisters; the AM writes its
	// result just after.
	for i := 0; i < 300 && app.App.State == "FINISHED"; i++ {
		if _, err := os.Stat(filepath.Join(dir, "result.json")); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	return appState{ID: newApp.ID, State: app.App.State, FinalStatus: app.App.FinalStatus, Diagnostics: app.App.Diagnostics}
}

func readFile(dir, name string) string {
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	return string(b)
}

func rest(ctx context.Context, t *testing.T, method, url string, body, out any) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		t.Fatalf("%s %s: %s: %s", method, url, resp.Status, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: decode %s: %v", method, url, b, err)
		}
	}
}

// TestHelperAM is the ApplicationMaster of TestYARNApplicationMaster; it runs
// only inside the AM container.
func TestHelperAM(t *testing.T) {
	if os.Getenv("SHOAL_IPC_HELPER_AM") != "1" {
		t.Skip("runs only as the ApplicationMaster of TestYARNApplicationMaster")
	}
	dir := os.Getenv("SHOAL_IPC_TEST_DIR")
	logf, err := os.Create(filepath.Join(dir, "am.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	log := hclog.New(&hclog.LoggerOptions{Name: "am", Level: hclog.Debug, Output: logf})
	var res any
	if os.Getenv("SHOAL_IPC_HELPER_MODE") == "roll" {
		res, err = runRollAM(log)
	} else {
		res, err = runAM(log, dir)
	}
	if err != nil {
		log.Error("AM failed", "error", err)
		t.Fatal(err)
	}
	b, _ := json.MarshalIndent(res, "", "  ")
	tmp := filepath.Join(dir, "result.json.tmp")
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "result.json")); err != nil {
		t.Fatal(err)
	}
}

func runAM(log hclog.Logger, dir string) (*amResult, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res := &amResult{StartStatus: map[string]string{}, Completed: map[string]ContainerStatus{}}
	creds, err := ReadTokenFile(os.Getenv("HADOOP_TOKEN_FILE_LOCATION"))
	if err != nil {
		return nil, err
	}
	tok, ok := creds.ByKind(KindAMRMToken)
	if !ok {
		return nil, fmt.Errorf("no %s in the token file (%d tokens)", KindAMRMToken, len(creds.Tokens))
	}
	self, err := ParseContainerID(os.Getenv("CONTAINER_ID"))
	if err != nil {
		return nil, err
	}
	log.Info("AM starting", "container", self, "attempt", self.Attempt)
	scheduler := os.Getenv("SHOAL_YARN_SCHEDULER_ADDRESS")

	bad := tok
	bad.Password = append([]byte("x"), tok.Password...)
	if _, err := DialAMRM(ctx, scheduler, "", bad, log); err == nil {
		return nil, fmt.Errorf("DialAMRM accepted a wrong AMRMToken password")
	} else if !errors.Is(err, ErrAuth) {
		return nil, fmt.Errorf("DialAMRM with a wrong password: %w, want ErrAuth", err)
	} else {
		res.WrongAMRMAuth = err.Error()
		log.Info("wrong AMRMToken refused", "error", err)
	}

	am, err := DialAMRM(ctx, scheduler, "", tok, log)
	if err != nil {
		return nil, err
	}
	defer am.Close()
	if res.MaxResource, err = am.Register(ctx, "", 0, ""); err != nil {
		return nil, err
	}
	payload, err := os.Stat(filepath.Join(dir, "payload.txt"))
	if err != nil {
		return nil, err
	}
	res.Protection = map[string]string{"amrm": am.rm.c.prot.String()}
	secret := make([]byte, 24)
	rand.Read(secret)
	res.Secret = hex.EncodeToString(secret)
	tokens, err := (&Credentials{Secrets: map[string][]byte{"shoal.test.secret": []byte(res.Secret)}}).Marshal(TokenFileWritable)
	if err != nil {
		return nil, err
	}
	var wire *recordConn
	lc := func(cmd string) LaunchContext {
		return LaunchContext{
			Tokens:  tokens,
			Command: []string{cmd, "1><LOG_DIR>/stdout", "2><LOG_DIR>/stderr"},
			Env:     map[string]string{"SHOAL_IPC_TEST_DIR": dir},
			LocalResources: map[string]LocalResource{"payload.txt": {
				URL:  URL{Scheme: "file", File: filepath.Join(dir, "payload.txt")},
				Size: payload.Size(), Timestamp: payload.ModTime().UnixMilli(), Type: File, Visibility: Application,
			}},
		}
	}
	shape := Resource{MemoryMB: 128, VCores: 1}
	nms := map[string]*NMClient{}
	defer func() {
		for _, n := range nms {
			n.Close()
		}
	}()
	var containers []Container
	wrongNMTried := false
	for i := 0; len(res.Completed) < 2; i++ {
		outstanding := int32(2 - len(containers))
		r, err := am.Allocate(ctx, []Ask{{Priority: 1, Resource: shape, NumContainers: outstanding}}, nil, float32(len(res.Completed))/2)
		if err != nil {
			return nil, err
		}
		if len(res.Redialed) == 1 {
			res.Redialed = append(res.Redialed, "allocate")
		}
		for _, c := range r.Allocated {
			if len(containers) == 2 {
				log.Warn("surplus container", "container", c.ID)
				continue
			}
			containers = append(containers, c)
			res.Allocated = append(res.Allocated, c.ID.String())
			res.Nodes = append(res.Nodes, c.NodeAddr())
			nmTok, ok := am.NMToken(c.NodeAddr())
			if !ok {
				return nil, fmt.Errorf("no NMToken for %s", c.NodeAddr())
			}
			res.NMTokenNodes = append(res.NMTokenNodes, c.NodeAddr())
			if !wrongNMTried {
				wrongNMTried = true
				badNM := nmTok
				badNM.Password = append([]byte("x"), nmTok.Password...)
				if _, err := DialNM(ctx, c.NodeAddr(), "", badNM, log); err == nil {
					return nil, fmt.Errorf("DialNM accepted a wrong NMToken password")
				} else if !errors.Is(err, ErrAuth) {
					return nil, fmt.Errorf("DialNM with a wrong password: %w, want ErrAuth", err)
				} else {
					res.WrongNMAuth = err.Error()
					log.Info("wrong NMToken refused", "error", err)
				}
			}
			nm := nms[c.NodeAddr()]
			if nm == nil {
				if nm, err = DialNM(ctx, c.NodeAddr(), "", nmTok, log); err != nil {
					return nil, err
				}
				nms[c.NodeAddr()] = nm
				res.Protection["nm"] = nm.Protection().String()
				if wire == nil { // record what the AM sends this NodeManager
					wire = &recordConn{Conn: nm.nm.c.nc}
					nm.nm.c.nc = wire
				}
			}
			// the first container exits by itself, the second sleeps until stopped; both copy
			// their token file
			cmd := "cp payload.txt $SHOAL_IPC_TEST_DIR/out.$CONTAINER_ID && cp $HADOOP_TOKEN_FILE_LOCATION $SHOAL_IPC_TEST_DIR/tokens.$CONTAINER_ID && true"
			if len(containers) == 2 {
				cmd = "cp payload.txt $SHOAL_IPC_TEST_DIR/out.$CONTAINER_ID && cp $HADOOP_TOKEN_FILE_LOCATION $SHOAL_IPC_TEST_DIR/tokens.$CONTAINER_ID && exec sleep 300"
			}
			if err := nm.StartContainer(ctx, c, lc(cmd)); err != nil {
				return nil, err
			}
			if len(containers) == 1 {
				// drop the connections under the clients: the next calls must dial again
				nm.nm.c.nc.Close()
				am.rm.c.nc.Close()
			}
			st, err := nm.Status(ctx, c.ID)
			if err != nil {
				return nil, err
			}
			if len(containers) == 1 {
				res.Redialed = append(res.Redialed, "getContainerStatuses")
			}
			res.StartStatus[c.ID.String()] = st.State
			log.Info("container started", "container", c.ID, "node", c.NodeAddr(), "state", st.State)
		}
		for _, s := range r.Completed {
			log.Info("container completed", "container", s.ID, "exit_status", s.ExitStatus, "diagnostics", s.Diagnostics)
			res.Completed[s.ID.String()] = s
		}
		if len(containers) == 2 && res.StoppedID == "" {
			c := containers[1]
			if _, err := os.Stat(filepath.Join(dir, "out."+c.ID.String())); err == nil {
				if err := nms[c.NodeAddr()].StopContainer(ctx, c.ID); err != nil {
					return nil, err
				}
				res.StoppedID = c.ID.String()
				log.Info("container stopped", "container", c.ID)
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	if res.Unregistered, err = am.Finish(ctx, Succeeded, "shoal ipc test done", ""); err != nil {
		return nil, err
	}
	if wire != nil {
		res.SecretOnWire = wire.contains([]byte(res.Secret))
	}
	return res, nil
}

// recordConn keeps a copy of every byte written to the connection.
type recordConn struct {
	net.Conn
	mu   sync.Mutex
	sent bytes.Buffer
}

func (r *recordConn) Write(b []byte) (int, error) {
	r.mu.Lock()
	r.sent.Write(b)
	r.mu.Unlock()
	return r.Conn.Write(b)
}

func (r *recordConn) contains(b []byte) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return bytes.Contains(r.sent.Bytes(), b)
}
