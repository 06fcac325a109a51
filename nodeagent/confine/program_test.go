package confine

import (
	"encoding/binary"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cilium/ebpf/asm"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the programs built now")

func gpuRules(t *testing.T, minors []int, uvm int) []Rule {
	t.Helper()
	r, err := GPURules(minors, uvm)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// mixedRules exercise every branch of a rule: each type, partial access, wildcards.
var mixedRules = []Rule{
	{Type: 'c', Major: 1, Minor: 3, Access: "rwm"},
	{Type: 'c', Major: 1, Minor: 9, Access: "r"},
	{Type: 'c', Major: 136, Minor: Wildcard, Access: "rw"},
	{Type: 'b', Major: 8, Minor: 0, Access: "m"},
	{Type: 'a', Major: 7, Minor: Wildcard, Access: "r"},
	{Type: 'c', Major: Wildcard, Minor: 42, Access: "wr"},
}

// goldenPrograms are the rule sets whose programs testdata/NAME.golden pins.
func goldenPrograms(t *testing.T) map[string][]Rule {
	return map[string][]Rule{
		"deny-all": nil,
		"defaults": DefaultRules(),
		"gpus":     append(DefaultRules(), gpuRules(t, []int{0, 3}, 511)...),
		"mixed":    mixedRules,
		// Everything after a rule that allows everything is unreachable and left out.
		"allow-all": {{Type: 'a', Major: Wildcard, Minor: Wildcard, Access: "rwm"}, {Type: 'c', Major: 1, Minor: 3, Access: "r"}},
	}
}

func TestDeviceProgramGolden(t *testing.T) {
	for name, rules := range goldenPrograms(t) {
		t.Run(name, func(t *testing.T) {
			insns, err := DeviceProgram(rules)
			if err != nil {
				t.Fatal(err)
			}
			got := fmt.Sprint(insns)
			file := filepath.Join("testdata", name+".golden")
			if *update {
				if err := os.WriteFile(file, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(file)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("program for %s changed; if that is intended, run go test -update.\ngot:\n%s\nwant:\n%s", name, got, want)
			}
		})
	}
}

func TestDeviceProgramRejects(t *testing.T) {
	for _, r := range []Rule{
		{Type: 'x', Major: 1, Minor: 3, Access: "r"},
		{Type: 'c', Major: -2, Minor: 3, Access: "r"},
		{Type: 'c', Major: 4096, Minor: 3, Access: "r"},
		{Type: 'c', Major: 1, Minor: 1 << 20, Access: "r"},
		{Type: 'c', Major: 1, Minor: 3, Access: ""},
		{Type: 'c', Major: 1, Minor: 3, Access: "rx"},
	} {
		if _, err := DeviceProgram([]Rule{DefaultRules()[0], r}); err == nil || !strings.Contains(err.Error(), "device rule 1") {
			t.Errorf("DeviceProgram accepted %+v (err %v)", r, err)
		}
	}
}

// run interprets a device program the way the kernel runs it, for the few instructions
// DeviceProgram emits, and returns r0: 1 allows, 0 denies.
func run(t *testing.T, insns asm.Instructions, typ byte, major, minor uint32, access string) uint32 {
	t.Helper()
	var acc, devType uint32
	for _, c := range access {
		acc |= map[rune]uint32{'r': accRead, 'w': accWrite, 'm': accMknod}[c]
	}
	devType = map[byte]uint32{'c': devChar, 'b': devBlock}[typ]
	ctx := make([]byte, 12)
	binary.LittleEndian.PutUint32(ctx[ctxAccessType:], acc<<16|devType)
	binary.LittleEndian.PutUint32(ctx[ctxMajor:], major)
	binary.LittleEndian.PutUint32(ctx[ctxMinor:], minor)

	labels := map[string]int{}
	for i, ins := range insns {
		if s := ins.Symbol(); s != "" {
			labels[s] = i
		}
	}
	var reg [11]uint64
	for pc := 0; pc < len(insns); pc++ {
		ins := insns[pc]
		switch ins.OpCode {
		case asm.LoadMem(0, 0, 0, asm.Word).OpCode:
			reg[ins.Dst] = uint64(binary.LittleEndian.Uint32(ctx[ins.Offset:]))
		case asm.And.Imm32(0, 0).OpCode:
			reg[ins.Dst] = uint64(uint32(reg[ins.Dst]) & uint32(ins.Constant))
		case asm.RSh.Imm32(0, 0).OpCode:
			reg[ins.Dst] = uint64(uint32(reg[ins.Dst]) >> ins.Constant)
		case asm.Mov.Imm32(0, 0).OpCode:
			reg[ins.Dst] = uint64(uint32(ins.Constant))
		case asm.Mov.Reg32(0, 0).OpCode:
			reg[ins.Dst] = uint64(uint32(reg[ins.Src]))
		case asm.JNE.Imm(0, 0, "").OpCode:
			if reg[ins.Dst] != uint64(ins.Constant) {
				target, ok := labels[ins.Reference()]
				if !ok {
					t.Fatalf("jump to unknown label %q", ins.Reference())
				}
				pc = target - 1
			}
		case asm.Return().OpCode:
			return uint32(reg[asm.R0])
		default:
			t.Fatalf("instruction %v not emulated", ins)
		}
	}
	t.Fatal("program ran off its end")
	return 0
}

func TestDeviceProgramSemantics(t *testing.T) {
	programs := map[string][]Rule{
		"mixed":     mixedRules,
		"gpus":      gpuRules(t, []int{0, 3}, 511),
		"deny-all":  nil,
		"allow-all": {{Type: 'a', Major: Wildcard, Minor: Wildcard, Access: "rwm"}},
	}
	for _, tc := range []struct {
		program      string
		typ          byte
		major, minor uint32
		access       string
		allow        bool
	}{
		{"mixed", 'c', 1, 3, "rw", true},
		{"mixed", 'c', 1, 3, "m", true},
		{"mixed", 'b', 1, 3, "r", false}, // a block device with a char device's numbers
		{"mixed", 'c', 1, 9, "r", true},
		{"mixed", 'c', 1, 9, "w", false},
		{"mixed", 'c', 1, 9, "rw", false},
		{"mixed", 'c', 1, 5, "r", false},
		{"mixed", 'c', 136, 7, "rw", true},
		{"mixed", 'c', 136, 7, "m", false},
		{"mixed", 'b', 8, 0, "m", true},
		{"mixed", 'b', 8, 0, "r", false},
		{"mixed", 'b', 8, 1, "m", false},
		{"mixed", 'c', 7, 2, "r", true},
		{"mixed", 'b', 7, 2, "r", true},
		{"mixed", 'c', 7, 2, "w", false},
		{"mixed", 'c', 99, 42, "rw", true},
		{"mixed", 'b', 99, 42, "r", false},
		{"gpus", 'c', 195, 255, "rw", true},
		{"gpus", 'c', 195, 0, "rw", true},
		{"gpus", 'c', 195, 3, "r", true},
		{"gpus", 'c', 195, 1, "r", false},
		{"gpus", 'c', 195, 3, "m", false},
		{"gpus", 'c', 511, 0, "rw", true},
		{"gpus", 'c', 511, 1, "rw", true},
		{"gpus", 'c', 1, 3, "r", false},
		{"deny-all", 'c', 1, 3, "r", false},
		{"allow-all", 'b', 8, 0, "rwm", true},
	} {
		insns, err := DeviceProgram(programs[tc.program])
		if err != nil {
			t.Fatal(err)
		}
		if got := run(t, insns, tc.typ, tc.major, tc.minor, tc.access) == 1; got != tc.allow {
			t.Errorf("%s: %c %d:%d %s allowed=%v, want %v", tc.program, tc.typ, tc.major, tc.minor, tc.access, got, tc.allow)
		}
	}
}
