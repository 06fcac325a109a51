package fingerprint

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"testing/fstest"

	"golang.org/x/sys/unix"
)

const gib = 1 << 30

// TestDetectFixtures runs Detect on fixture trees laid out like real machines
// (testdata/*/proc, testdata/*/sys) and checks what `shoal node info` would show.
func TestDetectFixtures(t *testing.T) {
	hostname, _ := os.Hostname()
	tests := []struct {
		name      string
		root      string
		affinity  []int
		want      Node
		wantOffer float64
	}{
		{
			name:     "hybrid v1 and v2, v1 memory limit is the smaller",
			root:     "testdata/hybrid",
			affinity: []int{0, 1, 2, 3},
			want: Node{
				CPUs:      []int{0, 1, 2, 3},
				NUMANodes: []NUMANode{{ID: 0, CPUs: []int{0, 1, 2, 3}, MemoryBytes: 16 * gib}},
				Sockets:   1, Cores: 2, ThreadsPerCore: 2,
				MemoryBytes:  4 * gib,
				MemorySource: "cgroup v1 /sys/fs/cgroup/memory/system.slice/shoal-agent.service/memory.limit_in_bytes",
				CPUQuota:     1.5,
				Hostname:     "hpc-a01",
			},
			wantOffer: 1.5,
		},
		{
			name:     "pure v2, limits on the job cgroup above the task",
			root:     "testdata/v2",
			affinity: []int{0, 1, 2, 3},
			want: Node{
				CPUs:      []int{0, 1, 2, 3},
				NUMANodes: []NUMANode{{ID: 0, CPUs: []int{0, 1, 2, 3}, MemoryBytes: 32 * gib}},
				Sockets:   1, Cores: 4, ThreadsPerCore: 1,
				MemoryBytes:  3 * gib,
				MemorySource: "cgroup v2 /sys/fs/cgroup/system.slice/slurmstepd.scope/job_7/memory.max",
				CPUQuota:     2,
				Hostname:     "hpc-b07",
			},
			wantOffer: 2,
		},
		{
			name:     "pure v2 without limits",
			root:     "testdata/nolimits",
			affinity: []int{0, 1},
			want: Node{
				CPUs:      []int{0, 1},
				NUMANodes: []NUMANode{{ID: 0, CPUs: []int{0, 1}, MemoryBytes: 8 * gib}},
				Sockets:   1, Cores: 1, ThreadsPerCore: 2,
				MemoryBytes:  8 * gib,
				MemorySource: "meminfo",
				Hostname:     "login1",
			},
			wantOffer: 2,
		},
		{
			name:     "container without cgroups or sysfs",
			root:     "testdata/container",
			affinity: []int{3, 1, 2},
			want: Node{
				CPUs:      []int{1, 2, 3},
				NUMANodes: []NUMANode{{ID: 0, CPUs: []int{1, 2, 3}, MemoryBytes: 2 * gib}},
				Sockets:   1, Cores: 3, ThreadsPerCore: 1,
				MemoryBytes:  2 * gib,
				MemorySource: "meminfo",
				Hostname:     hostname,
			},
			wantOffer: 3,
		},
		{
			name:     "two sockets, affinity on part of socket 0",
			root:     "testdata/twosocket",
			affinity: []int{9, 1, 2},
			want: Node{
				CPUs:      []int{1, 2, 9},
				NUMANodes: []NUMANode{{ID: 0, CPUs: []int{1, 2, 9}, MemoryBytes: 32 * gib}},
				Sockets:   1, Cores: 2, ThreadsPerCore: 2,
				MemoryBytes:  64 * gib,
				MemorySource: "meminfo",
				Hostname:     "cn042",
			},
			wantOffer: 3,
		},
		{
			name:     "two sockets, first thread of each socket 0 core",
			root:     "testdata/twosocket",
			affinity: []int{0, 1, 2, 3},
			want: Node{
				CPUs:      []int{0, 1, 2, 3},
				NUMANodes: []NUMANode{{ID: 0, CPUs: []int{0, 1, 2, 3}, MemoryBytes: 32 * gib}},
				Sockets:   1, Cores: 4, ThreadsPerCore: 1,
				MemoryBytes:  64 * gib,
				MemorySource: "meminfo",
				Hostname:     "cn042",
			},
			wantOffer: 4,
		},
		{
			name:     "two sockets, one core of each",
			root:     "testdata/twosocket",
			affinity: []int{0, 8, 4, 12},
			want: Node{
				CPUs: []int{0, 4, 8, 12},
				NUMANodes: []NUMANode{
					{ID: 0, CPUs: []int{0, 8}, MemoryBytes: 32 * gib},
					{ID: 1, CPUs: []int{4, 12}, MemoryBytes: 32 * gib},
				},
				Sockets: 2, Cores: 2, ThreadsPerCore: 2,
				MemoryBytes:  64 * gib,
				MemorySource: "meminfo",
				Hostname:     "cn042",
			},
			wantOffer: 4,
		},
		{
			name:     "two sockets, whole machine",
			root:     "testdata/twosocket",
			affinity: []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
			want: Node{
				CPUs: []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
				NUMANodes: []NUMANode{
					{ID: 0, CPUs: []int{0, 1, 2, 3, 8, 9, 10, 11}, MemoryBytes: 32 * gib},
					{ID: 1, CPUs: []int{4, 5, 6, 7, 12, 13, 14, 15}, MemoryBytes: 32 * gib},
				},
				Sockets: 2, Cores: 8, ThreadsPerCore: 2,
				MemoryBytes:  64 * gib,
				MemorySource: "meminfo",
				Hostname:     "cn042",
			},
			wantOffer: 16,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Detect(testLogger(t), WithRoot(tt.root), WithAffinity(cpuMask(tt.affinity...)))
			if err != nil {
				t.Fatalf("Detect: %v", err)
			}
			if !reflect.DeepEqual(*got, tt.want) {
				t.Errorf("Detect =\n%+v\nwant\n%+v", *got, tt.want)
			}
			if offer := got.OfferCPUs(); offer != tt.wantOffer {
				t.Errorf("OfferCPUs() = %v, want %v", offer, tt.wantOffer)
			}
		})
	}
}

// TestCgroupLimits covers cgroup layouts beyond the fixture machines with in-memory trees.
func TestCgroupLimits(t *testing.T) {
	const v2Mountinfo = "29 22 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw\n"
	const hybridMountinfo = "28 27 0:24 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n" +
		"33 27 0:29 / /sys/fs/cgroup/cpu,cpuacct rw shared:15 - cgroup cgroup rw,cpu,cpuacct\n" +
		"34 27 0:30 / /sys/fs/cgroup/memory rw shared:16 - cgroup cgroup rw,memory\n"
	file := func(s string) *fstest.MapFile { return &fstest.MapFile{Data: []byte(s)} }
	tests := []struct {
		name       string
		files      map[string]string
		wantMem    uint64
		wantSource string
		wantQuota  float64
	}{
		{
			name: "v2 parent limit below leaf",
			files: map[string]string{
				"proc/self/cgroup":                   "0::/a/b\n",
				"proc/self/mountinfo":                v2Mountinfo,
				"sys/fs/cgroup/a/memory.max":         "1073741824\n",
				"sys/fs/cgroup/a/b/memory.max":       "2147483648\n",
				"sys/fs/cgroup/a/cpu.max":            "50000 100000\n",
				"sys/fs/cgroup/a/b/cpu.max":          "300000 100000\n",
				"sys/fs/cgroup/memory.max.unrelated": "1",
			},
			wantMem: 1 * gib, wantSource: "cgroup v2 /sys/fs/cgroup/a/memory.max", wantQuota: 0.5,
		},
		{
			name: "hybrid, v2 limit below v1",
			files: map[string]string{
				"proc/self/cgroup":                              "4:memory:/a\n3:cpu,cpuacct:/a\n0::/a\n",
				"proc/self/mountinfo":                           hybridMountinfo,
				"sys/fs/cgroup/unified/a/memory.max":            "1073741824\n",
				"sys/fs/cgroup/memory/a/memory.limit_in_bytes":  "2147483648\n",
				"sys/fs/cgroup/cpu,cpuacct/a/cpu.cfs_quota_us":  "-1\n",
				"sys/fs/cgroup/cpu,cpuacct/a/cpu.cfs_period_us": "100000\n",
			},
			wantMem: 1 * gib, wantSource: "cgroup v2 /sys/fs/cgroup/unified/a/memory.max",
		},
		{
			name: "v1 unlimited is near 2^63",
			files: map[string]string{
				"proc/self/cgroup":                           "4:memory:/\n0::/\n",
				"proc/self/mountinfo":                        hybridMountinfo,
				"sys/fs/cgroup/memory/memory.limit_in_bytes": "9223372036854771712\n",
			},
			wantMem: 8 * gib, wantSource: "meminfo",
		},
		{
			name: "limit above MemTotal leaves meminfo",
			files: map[string]string{
				"proc/self/cgroup":           "0::/a\n",
				"proc/self/mountinfo":        v2Mountinfo,
				"sys/fs/cgroup/a/memory.max": "17179869184\n",
			},
			wantMem: 8 * gib, wantSource: "meminfo",
		},
		{
			name: "malformed limit is ignored",
			files: map[string]string{
				"proc/self/cgroup":           "0::/a\n",
				"proc/self/mountinfo":        v2Mountinfo,
				"sys/fs/cgroup/a/memory.max": "lots\n",
				"sys/fs/cgroup/a/cpu.max":    "0 100000\n",
			},
			wantMem: 8 * gib, wantSource: "meminfo",
		},
		{
			name: "container bind-mounts its own cgroup",
			files: map[string]string{
				"proc/self/cgroup":         "0::/kubepods/pod1/ctr\n",
				"proc/self/mountinfo":      "29 22 0:26 /kubepods/pod1/ctr /sys/fs/cgroup ro - cgroup2 cgroup2 rw\n",
				"sys/fs/cgroup/memory.max": "536870912\n",
				"sys/fs/cgroup/cpu.max":    "150000 100000\n",
			},
			wantMem: gib / 2, wantSource: "cgroup v2 /sys/fs/cgroup/memory.max", wantQuota: 1.5,
		},
		{
			name: "cgroup outside the mounted subtree uses the mount point",
			files: map[string]string{
				"proc/self/cgroup":         "0::/elsewhere\n",
				"proc/self/mountinfo":      "29 22 0:26 /kubepods/pod1/ctr /sys/fs/cgroup ro - cgroup2 cgroup2 rw\n",
				"sys/fs/cgroup/memory.max": "536870912\n",
			},
			wantMem: gib / 2, wantSource: "cgroup v2 /sys/fs/cgroup/memory.max",
		},
		{
			name: "cgroup v2 listed but not mounted",
			files: map[string]string{
				"proc/self/cgroup":    "0::/a\n",
				"proc/self/mountinfo": "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n",
			},
			wantMem: 8 * gib, wantSource: "meminfo",
		},
		{
			name:    "no proc/self at all",
			files:   map[string]string{},
			wantMem: 8 * gib, wantSource: "meminfo",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fsys := fstest.MapFS{"proc/meminfo": file("MemTotal:        8388608 kB\n")}
			for name, data := range tt.files {
				fsys[name] = file(data)
			}
			logger := testLogger(t)
			req := &Request{CPUs: []int{0, 1, 2, 3}, Cgroups: discoverCgroups(logger, fsys)}
			var node Node
			for _, fp := range []Fingerprinter{newMemory(logger, fsys), newCPU(logger, fsys)} {
				if err := fp.Fingerprint(req, &node); err != nil {
					t.Fatalf("Fingerprint: %v", err)
				}
			}
			if node.MemoryBytes != tt.wantMem || node.MemorySource != tt.wantSource {
				t.Errorf("memory = %d from %q, want %d from %q", node.MemoryBytes, node.MemorySource, tt.wantMem, tt.wantSource)
			}
			if node.CPUQuota != tt.wantQuota {
				t.Errorf("CPUQuota = %v, want %v", node.CPUQuota, tt.wantQuota)
			}
		})
	}
}

func TestDetectNoMemorySource(t *testing.T) {
	_, err := Detect(testLogger(t), WithRoot(t.TempDir()), WithAffinity(cpuMask(0)))
	if err == nil {
		t.Fatal("Detect without /proc/meminfo or cgroup limit succeeded, want an error")
	}
}

func affinity(t *testing.T) []int {
	t.Helper()
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		t.Fatalf("sched_getaffinity: %v", err)
	}
	var cpus []int
	for i := 0; len(cpus) < set.Count(); i++ {
		if set.IsSet(i) {
			cpus = append(cpus, i)
		}
	}
	return cpus
}

// TestDetectThisMachine checks Detect against the kernel's own answers on this machine.
func TestDetectThisMachine(t *testing.T) {
	node, err := Detect(testLogger(t))
	if err != nil {
		t.Fatalf("Detect: %v", err)
	}
	t.Logf("node: %+v offer_cpus=%v", *node, node.OfferCPUs())
	if want := affinity(t); !reflect.DeepEqual(node.CPUs, want) {
		t.Errorf("CPUs = %v, want the affinity mask %v", node.CPUs, want)
	}
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		t.Fatalf("read /proc/meminfo: %v", err)
	}
	total, err := parseMeminfoKB(b, "MemTotal")
	if err != nil {
		t.Fatal(err)
	}
	if node.MemoryBytes == 0 || node.MemoryBytes > total {
		t.Errorf("MemoryBytes = %d, want in (0, MemTotal %d]", node.MemoryBytes, total)
	}
	var numaCPUs int
	for _, n := range node.NUMANodes {
		numaCPUs += len(n.CPUs)
	}
	if numaCPUs != len(node.CPUs) {
		t.Errorf("NUMA nodes hold %d CPUs, want %d", numaCPUs, len(node.CPUs))
	}
	if node.Sockets < 1 || node.Cores < node.Sockets || node.Cores > len(node.CPUs) || node.ThreadsPerCore < 1 {
		t.Errorf("topology sockets=%d cores=%d threads_per_core=%d is inconsistent with %d CPUs",
			node.Sockets, node.Cores, node.ThreadsPerCore, len(node.CPUs))
	}
	if want, _ := os.Hostname(); node.Hostname != want {
		t.Errorf("Hostname = %q, want %q", node.Hostname, want)
	}
}

const childEnv = "SHOAL_FINGERPRINT_CHILD"

// TestDetectUnderTaskset re-executes the test binary under `taskset -c CPU` and checks that
// the child offers that one CPU only.
func TestDetectUnderTaskset(t *testing.T) {
	if os.Getenv(childEnv) == "1" {
		node, err := Detect(nil)
		if err != nil {
			t.Fatalf("Detect in child: %v", err)
		}
		out, _ := json.Marshal(struct {
			Node  *Node
			Offer float64
		}{node, node.OfferCPUs()})
		os.Stdout.Write(append([]byte("NODE "), append(out, '\n')...))
		return
	}
	cpus := affinity(t)
	if len(cpus) < 2 {
		t.Skipf("the affinity mask holds %d CPU; restricting it further shows nothing", len(cpus))
	}
	taskset, err := exec.LookPath("taskset")
	if err != nil {
		t.Fatalf("this test needs taskset from util-linux: %v", err)
	}
	pin := cpus[0]
	cmd := exec.Command(taskset, "-c", strconv.Itoa(pin), os.Args[0], "-test.run=^TestDetectUnderTaskset$", "-test.count=1")
	cmd.Env = append(os.Environ(), childEnv+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child under taskset: %v\n%s", err, out)
	}
	var got struct {
		Node  Node
		Offer float64
	}
	found := false
	for sc := bufio.NewScanner(strings.NewReader(string(out))); sc.Scan(); {
		if line, ok := strings.CutPrefix(sc.Text(), "NODE "); ok {
			if err := json.Unmarshal([]byte(line), &got); err != nil {
				t.Fatalf("parse child output %q: %v", line, err)
			}
			found = true
		}
	}
	if !found {
		t.Fatalf("child printed no node:\n%s", out)
	}
	t.Logf("under taskset -c %d: %+v", pin, got.Node)
	if !reflect.DeepEqual(got.Node.CPUs, []int{pin}) {
		t.Errorf("CPUs under taskset -c %d = %v, want [%d]", pin, got.Node.CPUs, pin)
	}
	if got.Offer != 1 {
		t.Errorf("OfferCPUs() under taskset = %v, want 1", got.Offer)
	}
	if got.Node.Sockets != 1 || got.Node.Cores != 1 || got.Node.ThreadsPerCore != 1 {
		t.Errorf("topology under taskset = %d sockets, %d cores, %d threads per core, want 1, 1, 1",
			got.Node.Sockets, got.Node.Cores, got.Node.ThreadsPerCore)
	}
	if len(got.Node.NUMANodes) != 1 || !reflect.DeepEqual(got.Node.NUMANodes[0].CPUs, []int{pin}) {
		t.Errorf("NUMA nodes under taskset = %+v, want one holding CPU %d", got.Node.NUMANodes, pin)
	}
}
