package confine

import (
	"fmt"

	"github.com/cilium/ebpf/asm"
)

// The program's view of struct bpf_cgroup_dev_ctx (include/uapi/linux/bpf.h):
// u32 access_type (access << 16 | device type), u32 major, u32 minor.
const (
	ctxAccessType = 0
	ctxMajor      = 4
	ctxMinor      = 8
)

// BPF_DEVCG_DEV_* and BPF_DEVCG_ACC_*.
const (
	devBlock = 1
	devChar  = 2

	accMknod = 1
	accRead  = 2
	accWrite = 4
	accAll   = accMknod | accRead | accWrite
)

// Registers the prologue loads for every rule. R1 (the context) is free after the prologue
// and serves as scratch.
const (
	regType   = asm.R2
	regAccess = asm.R3
	regMajor  = asm.R4
	regMinor  = asm.R5
	regTmp    = asm.R1
)

const denyLabel = "deny"

// DeviceProgram builds a BPF_PROG_TYPE_CGROUP_DEVICE program that allows what rules allow and
// denies everything else. The rules are checked in order and the first match allows; rules
// after one that matches every device and access are dropped, since the verifier rejects
// unreachable code. It fails when a rule is invalid (an unknown type, a number out of
// range, an access outside "rwm"); no rules gives a program that denies everything.
func DeviceProgram(rules []Rule) (asm.Instructions, error) {
	for i, r := range rules {
		if err := r.validate(); err != nil {
			return nil, fmt.Errorf("device rule %d (%s): %w", i, r, err)
		}
	}
	insns := asm.Instructions{
		asm.LoadMem(regType, asm.R1, ctxAccessType, asm.Word).
			WithSource(asm.Comment("r2 = device type, r3 = access, r4 = major, r5 = minor")),
		asm.And.Imm32(regType, 0xffff),
		asm.LoadMem(regAccess, asm.R1, ctxAccessType, asm.Word),
		asm.RSh.Imm32(regAccess, 16),
		asm.LoadMem(regMajor, asm.R1, ctxMajor, asm.Word),
		asm.LoadMem(regMinor, asm.R1, ctxMinor, asm.Word),
	}
	for i, r := range rules {
		next := denyLabel
		if i+1 < len(rules) {
			next = ruleLabel(i + 1)
		}
		block, err := ruleBlock(r, next)
		if err != nil {
			return nil, err
		}
		block[0] = block[0].WithSymbol(ruleLabel(i)).WithSource(asm.Comment(r.String()))
		insns = append(insns, block...)
		if len(block) == 2 {
			// The rule matches everything: what follows is unreachable.
			return insns, nil
		}
	}
	insns = append(insns,
		asm.Mov.Imm32(asm.R0, 0).WithSymbol(denyLabel).WithSource(asm.Comment("no rule matched: deny")),
		asm.Return(),
	)
	return insns, nil
}

func ruleLabel(i int) string { return fmt.Sprintf("rule-%d", i) }

// ruleBlock jumps to next unless the device matches r, and allows it otherwise.
func ruleBlock(r Rule, next string) ([]asm.Instruction, error) {
	var block []asm.Instruction
	switch r.Type {
	case 'c':
		block = append(block, asm.JNE.Imm(regType, devChar, next))
	case 'b':
		block = append(block, asm.JNE.Imm(regType, devBlock, next))
	case 'a':
	default:
		return nil, fmt.Errorf("[internal error] device rule %s passed validation with type %q", r, r.Type)
	}
	allowed := int32(0)
	for _, c := range r.Access {
		switch c {
		case 'r':
			allowed |= accRead
		case 'w':
			allowed |= accWrite
		case 'm':
			allowed |= accMknod
		}
	}
	if denied := accAll &^ allowed; denied != 0 {
		// Match only when the request asks for nothing outside Access.
		block = append(block,
			asm.Mov.Reg32(regTmp, regAccess),
			asm.And.Imm32(regTmp, denied),
			asm.JNE.Imm(regTmp, 0, next),
		)
	}
	if r.Major != Wildcard {
		block = append(block, asm.JNE.Imm(regMajor, int32(r.Major), next))
	}
	if r.Minor != Wildcard {
		block = append(block, asm.JNE.Imm(regMinor, int32(r.Minor), next))
	}
	return append(block, asm.Mov.Imm32(asm.R0, 1), asm.Return()), nil
}
