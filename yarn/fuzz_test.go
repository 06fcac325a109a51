package yarn

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// Every parser of what a ResourceManager, a NodeManager, a configuration file or a user hands
// us is fuzzed: none may panic, and each either fails with an error or returns a usable value.
// Seeds are in testdata/fuzz/<target>/.

func FuzzDecodeResponse(f *testing.F) {
	f.Add(200, []byte(`{"app":{"id":"application_1_0001","state":"RUNNING","progress":25.0,"runningContainers":3}}`))
	f.Add(404, []byte(`{"RemoteException":{"exception":"NotFoundException","message":"java.lang.Exception: app with id: application_1_0009 not found","javaClassName":"org.apache.hadoop.yarn.webapp.NotFoundException"}}`))
	f.Add(500, []byte("<html>oops</html>"))
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		var out struct {
			App *App `json:"app"`
		}
		err := decodeResponse("fuzz", status, body, &out)
		if status < 200 || status > 299 {
			var re *RemoteError
			if !errors.As(err, &re) || re.Status != status || re.Error() == "" {
				t.Fatalf("status %d gave %v", status, err)
			}
		}
	})
}

func FuzzParseSite(f *testing.F) {
	f.Add([]byte(`<configuration><property><name>yarn.resourcemanager.hostname</name><value>rm</value></property></configuration>`))
	f.Add([]byte(`<?xml version="1.0"?><configuration/>`))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseSite(strings.NewReader(string(b)))
		if err != nil {
			return
		}
		for _, a := range []string{s.RMWebAddress(), s.SchedulerAddress()} {
			if a != "" && !strings.Contains(a, ":") {
				t.Fatalf("address %q has no port", a)
			}
		}
	})
}

func FuzzParseLogList(f *testing.F) {
	f.Add([]byte(`{"containerLogsInfo":{"containerLogInfo":[{"fileName":"stderr","fileSize":"2106"}],"logAggregationType":"LOCAL"}}`))
	f.Add([]byte(`[{"containerLogInfo":[{"fileName":"stdout","fileSize":0}]}]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		files, err := parseLogList(b)
		if err != nil {
			return
		}
		for _, fl := range files {
			if fl.Name == "" {
				t.Fatal("a log file without a name")
			}
		}
	})
}

func FuzzStripLogEnvelope(f *testing.F) {
	f.Add([]byte("Container: c on h:1\nLogType:x\nLogContents:\nhello\nEnd of LogType:x.\n****\n"))
	f.Add([]byte("container_1_0001_01_000002 h:8042 h:4545\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		out := stripLogEnvelope(b)
		if len(out) > len(b) {
			t.Fatalf("stripping grew %d bytes to %d", len(b), len(out))
		}
		for c, node := range parseRoster(b) {
			if !strings.HasPrefix(c, "container_") || node == "" {
				t.Fatalf("roster entry %q -> %q", c, node)
			}
		}
	})
}

func FuzzParseMemoryMB(f *testing.F) {
	for _, s := range []string{"4g", "512m", "4096", "1.5GiB", "4x", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		mb, err := ParseMemoryMB(s)
		if err == nil && (mb < 1 || mb > 1<<40) {
			t.Fatalf("%q gave %d MB", s, mb)
		}
	})
}

func FuzzValidID(f *testing.F) {
	f.Add("application_1795959227494_0001")
	f.Add("application_1_x")
	f.Fuzz(func(t *testing.T, s string) {
		if ValidID(s) == nil && (strings.ContainsAny(s, "/?#% ") || !strings.HasPrefix(s, "application_")) {
			t.Fatalf("%q accepted; it would change the request path", s)
		}
	})
}

func FuzzParseSpec(f *testing.F) {
	good, _ := json.Marshal(AMSpec{Containers: 2, MemoryMB: 256, VCores: 1, AMMemoryMB: 512, AMVCores: 1,
		SchedulerAddress: "rm:8030", Driver: []string{"python3", "job.py"}, User: "u",
		LocalResources: map[string]LocalResource{"shoal": {URL: "hdfs://nn:8020/user/u/.shoal/a/shoal", Size: 1, Timestamp: 2}}})
	f.Add(base64.StdEncoding.EncodeToString(good))
	f.Add("not base64!")
	f.Add(base64.StdEncoding.EncodeToString([]byte(`{"containers":-1}`)))
	f.Fuzz(func(t *testing.T, raw string) {
		s, err := parseSpec(raw)
		if err != nil {
			return
		}
		if s.Containers < 1 || len(s.Driver) == 0 || s.SchedulerAddress == "" || s.JoinTimeoutMS <= 0 {
			t.Fatalf("accepted an unusable spec %+v", s)
		}
		for name, r := range s.LocalResources {
			toIPCResource(r) // must not panic, whatever the URL
			_ = name
		}
	})
}

func FuzzDriverExitCode(f *testing.F) {
	f.Add("shoal: driver exited with code 7; 1 container(s) lost, 1 replaced: container c ended (exit status 137), replaced (1/3)")
	f.Add("driver exited with code 99999999999999999999")
	f.Fuzz(func(t *testing.T, diag string) {
		code, ok := DriverExitCode(diag)
		if ok && (code < 0 || code > 255) {
			t.Fatalf("exit code %d from %q", code, diag)
		}
	})
}
