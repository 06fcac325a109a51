package yarn

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shoal-hpc/shoal/yarn/ipc"
)

func TestDecodeResponse(t *testing.T) {
	type app struct {
		App struct {
			ID string `json:"id"`
		} `json:"app"`
	}
	tests := []struct {
		name     string
		status   int
		body     string
		wantErr  string
		notFound bool
		wantID   string
	}{
		{name: "ok", status: 200, body: `{"app":{"id":"application_1_0001"}}`, wantID: "application_1_0001"},
		{name: "remote exception", status: 400,
			body:    `{"RemoteException":{"exception":"BadRequestException","message":"java.lang.Exception: Invalid resource request, node label not enabled\nat ...","javaClassName":"org.apache.hadoop.yarn.webapp.BadRequestException"}}`,
			wantErr: "read it: the ResourceManager answered HTTP 400 BadRequestException: Invalid resource request, node label not enabled"},
		{name: "not found", status: 404,
			body:    `{"RemoteException":{"exception":"NotFoundException","message":"java.lang.Exception: app with id: application_1_0009 not found","javaClassName":"org.apache.hadoop.yarn.webapp.NotFoundException"}}`,
			wantErr: "app with id: application_1_0009 not found", notFound: true},
		{name: "html error page", status: 500, body: "<html><body>Server Error</body></html>", wantErr: "HTTP 500: <html><body>Server Error"},
		{name: "ok but not json", status: 200, body: "<html>", wantErr: "is not the JSON expected"},
		{name: "ok but empty", status: 200, body: "", wantErr: "empty body"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out app
			err := decodeResponse("read it", tt.status, []byte(tt.body), &out)
			if tt.wantErr == "" {
				if err != nil || out.App.ID != tt.wantID {
					t.Fatalf("got %+v, %v; want id %s", out, err, tt.wantID)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
			}
			if errors.Is(err, ErrNotFound) != tt.notFound {
				t.Fatalf("errors.Is(ErrNotFound) = %v, want %v", !tt.notFound, tt.notFound)
			}
		})
	}
}

func TestSubmissionJSON(t *testing.T) {
	s := Submission{ID: "application_1_0001", Name: "n", Type: AppType, Queue: "batch", Tags: []string{"a", "b"},
		NodeLabel: "gpu", MaxAttempts: 2, AMResource: Resource{MemoryMB: 512, VCores: 1},
		AM: ContainerSpec{Commands: []string{"./shoal", "yarn", "am"}, Environment: map[string]string{"B": "2", "A": "1"},
			LocalResources: map[string]LocalResource{"shoal": {URL: "file:///bin/shoal", Type: "FILE", Visibility: "APPLICATION", Size: 10, Timestamp: 20}}}}
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	// the field names and shapes the RM's ApplicationSubmissionContextInfo reads
	want := `{"am-container-node-label-expression":"gpu","am-container-spec":{"commands":{"command":"./shoal yarn am"},"environment":{"entry":[{"key":"A","value":"1"},{"key":"B","value":"2"}]},"local-resources":{"entry":[{"key":"shoal","value":{"resource":"file:///bin/shoal","size":10,"timestamp":20,"type":"FILE","visibility":"APPLICATION"}}]}},"app-node-label-expression":"gpu","application-id":"application_1_0001","application-name":"n","application-tags":{"tag":["a","b"]},"application-type":"SHOAL","keep-containers-across-application-attempts":false,"max-app-attempts":2,"queue":"batch","resource":{"memory":512,"vCores":1},"unmanaged-AM":false}`
	norm, _ := json.Marshal(got)
	if string(norm) != want {
		t.Fatalf("submission JSON\n got %s\nwant %s", norm, want)
	}
}

func TestValidID(t *testing.T) {
	for _, id := range []string{"application_1795959227494_0001", "application_1_12345"} {
		if err := ValidID(id); err != nil {
			t.Errorf("%s: %v", id, err)
		}
	}
	for _, id := range []string{"", "application_1", "app_1_2", "application_x_1", "application_1_", "application_1_2_3", "container_1_2_3_4"} {
		if err := ValidID(id); err == nil {
			t.Errorf("%q accepted", id)
		}
	}
}

func TestParseMemoryMB(t *testing.T) {
	tests := []struct {
		in   string
		want int64
	}{{"4g", 4096}, {"4G", 4096}, {"4GiB", 4096}, {"512m", 512}, {"512MB", 512}, {"4096", 4096}, {"1.5g", 1536}, {"1t", 1 << 20}, {"2048k", 2}}
	for _, tt := range tests {
		if got, err := ParseMemoryMB(tt.in); err != nil || got != tt.want {
			t.Errorf("ParseMemoryMB(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{"", "4x", "g", "-1g", "0", "1k", "abc", "1e30g"} {
		if got, err := ParseMemoryMB(bad); err == nil {
			t.Errorf("ParseMemoryMB(%q) = %d, want an error", bad, got)
		}
	}
}

func TestSite(t *testing.T) {
	s, err := ParseSite(strings.NewReader(`<?xml version="1.0"?>
<configuration>
  <property><name>yarn.resourcemanager.hostname</name><value>rm.example.com</value></property>
  <property><name>yarn.resourcemanager.webapp.address</name><value>0.0.0.0:8089</value></property>
</configuration>`))
	if err != nil {
		t.Fatal(err)
	}
	if got := s.RMWebAddress(); got != "rm.example.com:8089" {
		t.Errorf("web address %q", got)
	}
	if got := s.SchedulerAddress(); got != "rm.example.com:8030" {
		t.Errorf("scheduler address %q", got)
	}
	if got := (Site{}).RMWebAddress(); got != "" {
		t.Errorf("empty site gave %q", got)
	}
	if _, err := ParseSite(strings.NewReader("<configuration><property>")); err == nil {
		t.Error("truncated XML accepted")
	}
}

func TestLoadSiteFromConfDir(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "yarn-site.xml"), []byte(`<configuration><property><name>yarn.resourcemanager.scheduler.address</name><value>h:18030</value></property></configuration>`), 0o644)
	t.Setenv("YARN_CONF_DIR", dir)
	t.Setenv("HADOOP_CONF_DIR", "")
	s, p, err := LoadSite()
	if err != nil || p != filepath.Join(dir, "yarn-site.xml") || s.SchedulerAddress() != "h:18030" {
		t.Fatalf("LoadSite = %v, %q, %v", s, p, err)
	}
}

func TestDriverExitCodeAndExitCode(t *testing.T) {
	if c, ok := DriverExitCode("shoal: driver exited with code 7; 1 container(s) lost"); !ok || c != 7 {
		t.Fatalf("got %d %v", c, ok)
	}
	if _, ok := DriverExitCode("AM container exited with exitCode: 2"); ok {
		t.Fatal("found a driver code in YARN's own diagnostics")
	}
	tests := []struct {
		app  App
		want int
	}{
		{App{State: "FINISHED", FinalStatus: "SUCCEEDED", Diagnostics: "shoal: driver exited with code 0"}, 0},
		{App{State: "FINISHED", FinalStatus: "FAILED", Diagnostics: "shoal: driver exited with code 3"}, 3},
		{App{State: "KILLED", FinalStatus: "KILLED", Diagnostics: "Application killed by user."}, ExitCodeKilled},
		{App{State: "FAILED", FinalStatus: "FAILED", Diagnostics: "AM container exited with exitCode: 2"}, 1},
	}
	for _, tt := range tests {
		if got := ExitCode(&tt.app); got != tt.want {
			t.Errorf("ExitCode(%+v) = %d, want %d", tt.app, got, tt.want)
		}
	}
}

func TestProgressRoundTrip(t *testing.T) {
	for _, want := range []int{1, 3, 8, 100, 1000} {
		for joined := 0; joined < want; joined++ {
			p := ProgressFor(joined, want, false)
			got, driver := Joined(float64(p)*100, want)
			if got != joined || driver {
				t.Fatalf("want=%d joined=%d: progress %v reads back as %d, %v", want, joined, p, got, driver)
			}
		}
		if _, driver := Joined(float64(ProgressFor(want, want, true))*100, want); !driver {
			t.Fatalf("want=%d: driver running not read back", want)
		}
	}
}

func TestProgressLine(t *testing.T) {
	tests := []struct {
		app  App
		want string
	}{
		{App{State: "ACCEPTED", Queue: "root.default"}, "ACCEPTED (queue root.default): waiting for the ApplicationMaster's container"},
		{App{State: "RUNNING", RunningContainers: 3, Progress: 25}, "RUNNING: containers 2/4 granted, agents 2/4 joined"},
		{App{State: "RUNNING", RunningContainers: 5, Progress: 50}, "RUNNING: 4/4 agents joined, driver running"},
		{App{State: "FINISHED", FinalStatus: "FAILED", Diagnostics: "shoal: driver exited with code 3"}, "FINISHED (FAILED): driver exit code 3"},
		{App{State: "KILLED", FinalStatus: "KILLED", Diagnostics: "Application killed by user.\nmore"}, "KILLED (KILLED): Application killed by user."},
	}
	for _, tt := range tests {
		if got := ProgressLine(&tt.app, 4); got != tt.want {
			t.Errorf("ProgressLine(%+v) = %q, want %q", tt.app, got, tt.want)
		}
	}
}

func TestMemberCredentials(t *testing.T) {
	amrm := ipc.Token{Identifier: []byte{1, 2, 3}, Password: []byte("amrm"), Kind: ipc.KindAMRMToken, Service: "rm:8030"}
	hdfs := ipc.Token{Identifier: []byte{4, 5}, Password: []byte("hdfs"), Kind: "HDFS_DELEGATION_TOKEN", Service: "nn:8020"}
	am := &ipc.Credentials{Tokens: map[string]ipc.Token{"amrm": amrm, "hdfs": hdfs}, Secrets: map[string][]byte{"user.key": []byte("k")}}
	for _, secret := range []string{"abc", strings.Repeat("s", 127), strings.Repeat("x", 128), strings.Repeat("y", 70000)} {
		b, err := memberCredentials(am, []byte(secret))
		if err != nil {
			t.Fatal(err)
		}
		creds, err := ipc.ParseCredentials(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("secret of %d bytes: %v", len(secret), err)
		}
		if got := string(creds.Secrets[SecretAlias]); got != secret {
			t.Fatalf("secret of %d bytes read back as %d bytes", len(secret), len(got))
		}
		if _, ok := creds.ByKind(ipc.KindAMRMToken); ok {
			t.Fatal("the AMRMToken was forwarded to a member container")
		}
		if creds.Tokens["hdfs"].Kind != hdfs.Kind || string(creds.Secrets["user.key"]) != "k" {
			t.Fatalf("the AM's other credentials were not forwarded: %+v", creds)
		}
	}
	if b, err := memberCredentials(nil, []byte("s")); err != nil || !bytes.HasPrefix(b, []byte("HDTS\x00")) {
		t.Fatalf("no AM credentials: %q, %v", b, err)
	}
	if _, err := memberCredentials(am, nil); err == nil {
		t.Fatal("an empty secret was accepted")
	}
}

func TestSecretFromTokenFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "container_tokens")
	write := func(alias, secret string) {
		b, err := (&ipc.Credentials{Secrets: map[string][]byte{alias: []byte(secret)}}).Marshal(ipc.TokenFileProto)
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(p, b, 0o600)
	}
	write(SecretAlias, "s3cret")
	t.Setenv("HADOOP_TOKEN_FILE_LOCATION", p)
	if s, err := secretFromTokenFile(); err != nil || s != "s3cret" {
		t.Fatalf("got %q, %v", s, err)
	}
	write("other", "x")
	if _, err := secretFromTokenFile(); err == nil || !strings.Contains(err.Error(), SecretAlias) {
		t.Fatalf("a token file without the secret gave %v", err)
	}
}

func TestBuildShipsFilesAndScript(t *testing.T) {
	dir := t.TempDir()
	old, _ := os.Getwd()
	defer os.Chdir(old)
	os.Chdir(dir)
	os.MkdirAll("sub", 0o755)
	os.WriteFile("sub/job.py", []byte("print(1)\n"), 0o644)
	os.WriteFile("data.csv", []byte("a,b\n"), 0o644)
	os.WriteFile("run.sh", []byte("#!/bin/sh\n"), 0o755)
	self := filepath.Join(dir, "shoal-bin")
	os.WriteFile(self, []byte("binary"), 0o755)
	o := &SubmitOptions{Containers: 2, MemoryMB: 256, VCores: 1, AMMemoryMB: 512, AMVCores: 1, Files: []string{"data.csv"},
		SchedulerAddress: "rm:8030", Self: self, Argv: []string{"python3", "sub/job.py", "--in", "data.csv", "/etc/hostname"}}
	s, err := o.Build(context.Background(), "application_1_0001", "u")
	if err != nil {
		t.Fatal(err)
	}
	res := s.AM.LocalResources
	st, _ := os.Stat("sub/job.py")
	if r := res["job.py"]; r.URL != "file://"+filepath.Join(dir, "sub/job.py") || r.Size != st.Size() || r.Timestamp != st.ModTime().UnixMilli() {
		t.Fatalf("job.py resource %+v", r)
	}
	if _, ok := res["shoal"]; !ok {
		t.Fatal("shoal binary not shipped")
	}
	if _, ok := res["hostname"]; ok {
		t.Fatal("an absolute path was shipped")
	}
	raw, _ := base64.StdEncoding.DecodeString(s.AM.Environment[SpecEnv])
	var spec AMSpec
	if err := json.Unmarshal(raw, &spec); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(spec.Driver, " "); got != "python3 job.py --in data.csv /etc/hostname" {
		t.Fatalf("driver %q", got)
	}
	if spec.Containers != 2 || spec.SchedulerAddress != "rm:8030" || len(spec.LocalResources) != 3 || spec.RequirePrivacy {
		t.Fatalf("spec %+v", spec)
	}
	// the submission carries no credentials: the AM makes the secret
	if b, _ := json.Marshal(s); strings.Contains(string(b), "credentials") || strings.Contains(string(b), "SHOAL_SECRET") {
		t.Fatalf("the submission names credentials or a secret: %s", b)
	}
	o.RequireRPCPrivacy = true
	if s, err = o.Build(context.Background(), "application_1_0006", "u"); err != nil {
		t.Fatal(err)
	}
	raw, _ = base64.StdEncoding.DecodeString(s.AM.Environment[SpecEnv])
	if err := json.Unmarshal(raw, &spec); err != nil || !spec.RequirePrivacy {
		t.Fatalf("--require-rpc-privacy did not reach the AM's spec: %+v, %v", spec, err)
	}
	o.RequireRPCPrivacy = false
	o.InsecureDataPlane = true
	o.StateDir = "/shared/shoal-history"
	if s, err = o.Build(context.Background(), "application_1_0007", "u"); err != nil {
		t.Fatal(err)
	}
	raw, _ = base64.StdEncoding.DecodeString(s.AM.Environment[SpecEnv])
	if err := json.Unmarshal(raw, &spec); err != nil || !spec.InsecureData {
		t.Fatalf("--insecure-data-plane did not reach the AM's spec: %+v, %v", spec, err)
	}
	if spec.StateDir != "/shared/shoal-history" {
		t.Fatalf("--state-dir did not reach the AM's spec: %+v", spec)
	}
	o.StateDir = ""
	o.InsecureDataPlane = false
	o.HeartbeatTimeout = 7 * time.Second
	if s, err = o.Build(context.Background(), "application_1_0008", "u"); err != nil {
		t.Fatal(err)
	}
	raw, _ = base64.StdEncoding.DecodeString(s.AM.Environment[SpecEnv])
	spec = AMSpec{}
	if err := json.Unmarshal(raw, &spec); err != nil || spec.HeartbeatMS != 7000 {
		t.Fatalf("--heartbeat-timeout did not reach the AM's spec: %+v, %v", spec, err)
	}
	o.HeartbeatTimeout = 0
	o.Argv = []string{"./run.sh"}
	if s, err = o.Build(context.Background(), "application_1_0002", "u"); err != nil || !strings.Contains(s.AM.Environment[SpecEnv], "") {
		t.Fatal(err)
	}
	raw, _ = base64.StdEncoding.DecodeString(s.AM.Environment[SpecEnv])
	json.Unmarshal(raw, &spec)
	if spec.Driver[0] != "./run.sh" || spec.LocalResources["run.sh"].Size == 0 {
		t.Fatalf("script driver %+v", spec)
	}

	bad := *o
	bad.Files = []string{"missing.txt"}
	if _, err := bad.Build(context.Background(), "application_1_0003", "u"); err == nil || !strings.Contains(err.Error(), "missing.txt") {
		t.Fatalf("missing file gave %v", err)
	}
	os.WriteFile("sub/data.csv", []byte("other\n"), 0o644)
	bad.Files = []string{"data.csv", "sub/data.csv"}
	if _, err := bad.Build(context.Background(), "application_1_0004", "u"); err == nil || !strings.Contains(err.Error(), "rename one") {
		t.Fatalf("name clash gave %v", err)
	}
	bad = *o
	bad.SchedulerAddress = ""
	if _, err := bad.Build(context.Background(), "application_1_0005", "u"); err == nil || !strings.Contains(err.Error(), "--scheduler-address") {
		t.Fatalf("no scheduler address gave %v", err)
	}
}

func TestLogListAndEnvelope(t *testing.T) {
	wrapped := `{"containerLogsInfo":{"containerLogInfo":[{"fileName":"stderr","fileSize":"2106","lastModifiedTime":"x"},{"fileName":"driver.out","fileSize":"18"}],"logAggregationType":"LOCAL"}}`
	bare := `[{"containerLogInfo":[{"fileName":"stdout","fileSize":0}]}]`
	files, err := parseLogList([]byte(wrapped))
	if err != nil || len(files) != 2 || files[0].Name != "driver.out" || files[1].Size != 2106 {
		t.Fatalf("wrapped list: %+v, %v", files, err)
	}
	if files, err = parseLogList([]byte(bare)); err != nil || len(files) != 1 || files[0].Name != "stdout" {
		t.Fatalf("bare list: %+v, %v", files, err)
	}
	if _, err := parseLogList([]byte("<html>")); err == nil {
		t.Fatal("HTML accepted as a log list")
	}
	env := "Container: container_1_0001_01_000001 on localhost:41513\nLogAggregationType: LOCAL\n=====\nLogType:driver.out\nLogLastModifiedTime:x\nLogLength:18\nLogContents:\nhello from driver\nEnd of LogType:driver.out.\n*****\n\n"
	if got := string(stripLogEnvelope([]byte(env))); got != "hello from driver\n" {
		t.Fatalf("envelope stripped to %q", got)
	}
	growing := "Container: c on h:1\nLogType:driver.out\nLogLength:7\nLogContents:\npartialEnd of LogType:driver.out.\n"
	if got := string(stripLogEnvelope([]byte(growing))); got != "partial" {
		t.Fatalf("a line still being written stripped to %q", got)
	}
	if got := string(stripLogEnvelope([]byte("plain\n"))); got != "plain\n" {
		t.Fatalf("plain text changed to %q", got)
	}
	r := parseRoster([]byte("container_1_0001_01_000002 h:8042 h:4545\nnoise\ncontainer_1_0001_01_000003 g:8042 g:4545\n"))
	if len(r) != 2 || r["container_1_0001_01_000003"] != "g:8042" {
		t.Fatalf("roster %v", r)
	}
}

func TestToIPCResource(t *testing.T) {
	r, err := toIPCResource(LocalResource{URL: "hdfs://nn.example.com:8020/user/u/job.py", Type: "FILE", Visibility: "APPLICATION", Size: 5, Timestamp: 6})
	if err != nil {
		t.Fatal(err)
	}
	if r.URL.Scheme != "hdfs" || r.URL.Host != "nn.example.com" || r.URL.Port != 8020 || r.URL.File != "/user/u/job.py" ||
		r.Size != 5 || r.Timestamp != 6 || r.Type != ipc.File || r.Visibility != ipc.Application {
		t.Fatalf("got %+v", r)
	}
	r, _ = toIPCResource(LocalResource{URL: "file:///tmp/x", Type: "ARCHIVE", Visibility: "PUBLIC"})
	if r.URL.Scheme != "file" || r.URL.Port != -1 || r.URL.File != "/tmp/x" || r.Type != ipc.Archive || r.Visibility != ipc.Public {
		t.Fatalf("got %+v", r)
	}
}

func TestPickListenIP(t *testing.T) {
	route := func(ip string) func() (net.IP, error) {
		return func() (net.IP, error) { return net.ParseIP(ip), nil }
	}
	tests := []struct {
		name  string
		ips   []string
		route func() (net.IP, error)
		want  string
	}{
		{"name resolves to the node's address", []string{"10.1.2.3"}, route("10.9.9.9"), "10.1.2.3"},
		{"IPv4 before IPv6", []string{"fd00::1", "10.1.2.3"}, route("10.9.9.9"), "10.1.2.3"},
		{"Debian's 127.0.1.1: the address towards the RM", []string{"127.0.1.1"}, route("10.1.2.3"), "10.1.2.3"},
		{"one machine: loopback everywhere", []string{"127.0.0.1"}, route("127.0.0.1"), "127.0.0.1"},
		{"no route", []string{"127.0.0.1"}, func() (net.IP, error) { return nil, errors.New("unreachable") }, "127.0.0.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ips []net.IP
			for _, s := range tt.ips {
				ips = append(ips, net.ParseIP(s))
			}
			if got := pickListenIP(ips, tt.route); got != tt.want {
				t.Fatalf("got %s, want %s", got, tt.want)
			}
		})
	}
}

func TestSiteHDFS(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "core-site.xml"), []byte(`<configuration><property><name>fs.defaultFS</name><value>hdfs://nn.example.com:8020</value></property></configuration>`), 0o644)
	os.WriteFile(filepath.Join(dir, "yarn-site.xml"), []byte(`<configuration><property><name>yarn.resourcemanager.hostname</name><value>rm</value></property></configuration>`), 0o644)
	t.Setenv("YARN_CONF_DIR", dir)
	s, _, err := LoadSite()
	if err != nil {
		t.Fatal(err)
	}
	if s.DefaultFS() != "hdfs://nn.example.com:8020" || s.NameNodeWeb() != "nn.example.com:9870" {
		t.Fatalf("fs %q, web %q", s.DefaultFS(), s.NameNodeWeb())
	}
	os.WriteFile(filepath.Join(dir, "hdfs-site.xml"), []byte(`<configuration><property><name>dfs.namenode.http-address</name><value>nn.example.com:50070</value></property></configuration>`), 0o644)
	if s, _, _ = LoadSite(); s.NameNodeWeb() != "nn.example.com:50070" {
		t.Fatalf("web %q", s.NameNodeWeb())
	}
	if (Site{"fs.defaultFS": "file:///"}).NameNodeWeb() != "" {
		t.Fatal("a local default file system has a NameNode")
	}
}

func TestWebHDFSAddresses(t *testing.T) {
	w, err := NewWebHDFS("nn:9870", "hdfs://nn:8020/", "u")
	if err != nil {
		t.Fatal(err)
	}
	if got := w.url("/user/u/.shoal/application_1_0001/my job.py", "CREATE", nil); got != "http://nn:9870/webhdfs/v1/user/u/.shoal/application_1_0001/my%20job.py?op=CREATE&user.name=u" {
		t.Fatalf("url %s", got)
	}
	w2, dir, err := decodeStaging(encodeStaging(w, StagingDir("u", "application_1_0001")), "u")
	if err != nil || dir != "/user/u/.shoal/application_1_0001" || w2.web != w.web || w2.fs != w.fs {
		t.Fatalf("staging round trip: %+v %q %v", w2, dir, err)
	}
	for _, bad := range [][2]string{{"nn:9870", "file:///"}, {"nn:9870", "hdfs://"}, {"", "hdfs://nn:8020"}} {
		if _, err := NewWebHDFS(bad[0], bad[1], "u"); err == nil {
			t.Errorf("NewWebHDFS(%q, %q) accepted", bad[0], bad[1])
		}
	}
}

func TestArchives(t *testing.T) {
	tests := []struct{ in, path, name, err string }{
		{in: "env/pyenv.tar.gz", path: "env/pyenv.tar.gz", name: "pyenv"},
		{in: "pyenv.tgz#env", path: "pyenv.tgz", name: "env"},
		{in: "deps.ZIP", path: "deps.ZIP", name: "deps"},
		{in: "deps.txt", err: "unpacks only"},
		{in: "deps.zip#../x", err: "plain directory name"},
		{in: "deps.zip#a/b", err: "plain directory name"},
	}
	for _, tt := range tests {
		path, name, _, err := archiveName(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%q: error %v, want %q", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil || path != tt.path || name != tt.name {
			t.Errorf("%q: got %q %q %v", tt.in, path, name, err)
		}
	}
	dir := t.TempDir()
	self := filepath.Join(dir, "shoal")
	os.WriteFile(self, []byte("x"), 0o755)
	arch := filepath.Join(dir, "pyenv.tar.gz")
	os.WriteFile(arch, []byte("not really"), 0o644)
	o := &SubmitOptions{Containers: 1, MemoryMB: 1, VCores: 1, AMMemoryMB: 1, AMVCores: 1, SchedulerAddress: "rm:8030",
		Self: self, Archives: []string{arch + "#env"}, Argv: []string{"env/bin/python", "-c", "pass"}}
	s, err := o.Build(context.Background(), "application_1_0001", "u")
	if err != nil {
		t.Fatal(err)
	}
	if r := s.AM.LocalResources["env"]; r.Type != "ARCHIVE" || r.URL != "file://"+arch {
		t.Fatalf("archive resource %+v", r)
	}
}
