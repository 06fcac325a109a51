package coll

import (
	"fmt"
	"math"
	"strings"
	"unsafe"
)

// DType is the element type of a buffer.
type DType int

// Element types. The numbers are part of the C ABI of libshoalcoll (python/shoal/collective.py).
const (
	Float32 DType = iota
	Float64
	Int32
	Int64
	Float16
	BFloat16
)

var dtypeNames = []string{"float32", "float64", "int32", "int64", "float16", "bfloat16"}

func (d DType) String() string {
	if d >= 0 && int(d) < len(dtypeNames) {
		return dtypeNames[d]
	}
	return fmt.Sprintf("dtype(%d)", int(d))
}

// Size is the element size in bytes.
func (d DType) Size() int {
	switch d {
	case Float64, Int64:
		return 8
	case Float32, Int32:
		return 4
	case Float16, BFloat16:
		return 2
	}
	return 0
}

// ParseDType reads a dtype name (float32, float64, int32, int64, float16, bfloat16).
func ParseDType(s string) (DType, error) {
	for i, n := range dtypeNames {
		if strings.EqualFold(s, n) {
			return DType(i), nil
		}
	}
	return 0, fmt.Errorf("unknown dtype %q: choose one of %s", s, strings.Join(dtypeNames, ", "))
}

// Op is a reduction.
type Op int

// Reductions. Avg is the sum divided by the group size (integer division for integer types).
const (
	Sum Op = iota
	Prod
	Min
	Max
	Avg
)

var opNames = []string{"sum", "prod", "min", "max", "avg"}

func (o Op) String() string {
	if o >= 0 && int(o) < len(opNames) {
		return opNames[o]
	}
	return fmt.Sprintf("op(%d)", int(o))
}

// ParseOp reads an op name (sum, prod, min, max, avg).
func ParseOp(s string) (Op, error) {
	for i, n := range opNames {
		if strings.EqualFold(s, n) {
			return Op(i), nil
		}
	}
	return 0, fmt.Errorf("unknown reduction %q: choose one of %s", s, strings.Join(opNames, ", "))
}

func (d DType) valid() error {
	if d.Size() == 0 {
		return fmt.Errorf("unknown dtype %d: choose one of %s", int(d), strings.Join(dtypeNames, ", "))
	}
	return nil
}

func (o Op) valid() error {
	if o < 0 || int(o) >= len(opNames) {
		return fmt.Errorf("unknown reduction %d: choose one of %s", int(o), strings.Join(opNames, ", "))
	}
	return nil
}

func typed[T any](b []byte) []T {
	var z T
	n := len(b) / int(unsafe.Sizeof(z))
	if n == 0 {
		return nil
	}
	return unsafe.Slice((*T)(unsafe.Pointer(unsafe.SliceData(b))), n)
}

type number interface {
	~int32 | ~int64 | ~float32 | ~float64
}

func reduceNum[T number](dst, src []T, op Op) {
	src = src[:len(dst)]
	switch op {
	case Sum, Avg:
		i := addFast(dst, src)
		for ; i+8 <= len(dst); i += 8 { // unrolled: independent adds keep the FPU busy
			d, s := dst[i:i+8:i+8], src[i:i+8:i+8]
			d[0] += s[0]
			d[1] += s[1]
			d[2] += s[2]
			d[3] += s[3]
			d[4] += s[4]
			d[5] += s[5]
			d[6] += s[6]
			d[7] += s[7]
		}
		for ; i < len(dst); i++ {
			dst[i] += src[i]
		}
	case Prod:
		i := 0
		for ; i+8 <= len(dst); i += 8 {
			d, s := dst[i:i+8:i+8], src[i:i+8:i+8]
			d[0] *= s[0]
			d[1] *= s[1]
			d[2] *= s[2]
			d[3] *= s[3]
			d[4] *= s[4]
			d[5] *= s[5]
			d[6] *= s[6]
			d[7] *= s[7]
		}
		for ; i < len(dst); i++ {
			dst[i] *= src[i]
		}
	case Min:
		for i := range dst {
			if src[i] < dst[i] {
				dst[i] = src[i]
			}
		}
	case Max:
		for i := range dst {
			if src[i] > dst[i] {
				dst[i] = src[i]
			}
		}
	}
}

// reduceFloatMinMax keeps NaN the way numpy's minimum/maximum do: a NaN in either wins.
func reduceFloatMinMax[T float32 | float64](dst, src []T, op Op) {
	src = src[:len(dst)]
	if op == Min {
		for i := range dst {
			if s := src[i]; s < dst[i] || s != s {
				dst[i] = s
			}
		}
		return
	}
	for i := range dst {
		if s := src[i]; s > dst[i] || s != s {
			dst[i] = s
		}
	}
}

// Reduce sets dst = dst op src elementwise; dst and src hold elements of d and have the same
// length (a multiple of d.Size()).
func Reduce(dst, src []byte, d DType, op Op) {
	switch d {
	case Float32:
		if op == Min || op == Max {
			reduceFloatMinMax(typed[float32](dst), typed[float32](src), op)
			return
		}
		reduceNum(typed[float32](dst), typed[float32](src), op)
	case Float64:
		if op == Min || op == Max {
			reduceFloatMinMax(typed[float64](dst), typed[float64](src), op)
			return
		}
		reduceNum(typed[float64](dst), typed[float64](src), op)
	case Int32:
		reduceNum(typed[int32](dst), typed[int32](src), op)
	case Int64:
		reduceNum(typed[int64](dst), typed[int64](src), op)
	case Float16, BFloat16:
		reduceHalf(typed[uint16](dst), typed[uint16](src), d, op)
	}
}

// reduceHalf works through float32 in blocks, so that the loops stay tight; the conversions
// are called directly (not through function values) so that they inline.
func reduceHalf(dst, src []uint16, d DType, op Op) {
	var a, b [512]float32
	for off := 0; off < len(dst); off += len(a) {
		n := min(len(a), len(dst)-off)
		dd, ss := dst[off:off+n], src[off:off+n]
		av, bv := a[:n], b[:n]
		if d == BFloat16 {
			for i := range av {
				av[i], bv[i] = bf16ToF32(dd[i]), bf16ToF32(ss[i])
			}
		} else {
			for i := range av {
				av[i], bv[i] = f16Table[dd[i]], f16Table[ss[i]]
			}
		}
		if op == Min || op == Max {
			reduceFloatMinMax(av, bv, op)
		} else {
			reduceNum(av, bv, op)
		}
		if d == BFloat16 {
			for i := range av {
				dd[i] = f32ToBF16(av[i])
			}
		} else {
			for i := range av {
				dd[i] = f32ToF16(av[i])
			}
		}
	}
}

// scale divides every element by n (Avg's last step).
func scale(b []byte, d DType, n int) {
	switch d {
	case Float32:
		f := float32(n)
		for i, v := range typed[float32](b) {
			typed[float32](b)[i] = v / f
		}
	case Float64:
		x := typed[float64](b)
		f := float64(n)
		for i := range x {
			x[i] /= f
		}
	case Int32:
		x := typed[int32](b)
		for i := range x {
			x[i] /= int32(n)
		}
	case Int64:
		x := typed[int64](b)
		for i := range x {
			x[i] /= int64(n)
		}
	case Float16, BFloat16:
		x := typed[uint16](b)
		toF, fromF := f16ToF32, f32ToF16
		if d == BFloat16 {
			toF, fromF = bf16ToF32, f32ToBF16
		}
		f := float32(n)
		for i := range x {
			x[i] = fromF(toF(x[i]) / f)
		}
	}
}

var f16Table = func() *[1 << 16]float32 {
	var t [1 << 16]float32
	for i := range t {
		t[i] = f16ToF32Slow(uint16(i))
	}
	return &t
}()

func f16ToF32(h uint16) float32 { return f16Table[h] }

func f16ToF32Slow(h uint16) float32 {
	sign := uint32(h>>15) << 31
	exp := uint32(h>>10) & 0x1f
	man := uint32(h) & 0x3ff
	switch {
	case exp == 0 && man == 0:
		return math.Float32frombits(sign)
	case exp == 0: // subnormal
		f := float32(man) / 1024 / 16384
		if sign != 0 {
			f = -f
		}
		return f
	case exp == 0x1f:
		return math.Float32frombits(sign | 0x7f800000 | man<<13)
	}
	return math.Float32frombits(sign | (exp+112)<<23 | man<<13)
}

// F32ToF16 rounds f to the nearest IEEE half (ties to even).
func F32ToF16(f float32) uint16 { return f32ToF16(f) }

// F16ToF32 widens an IEEE half.
func F16ToF32(h uint16) float32 { return f16ToF32(h) }

func f32ToF16(f float32) uint16 {
	u := math.Float32bits(f)
	sign := uint16(u>>16) & 0x8000
	exp := int32(u>>23) & 0xff
	man := u & 0x7fffff
	if exp == 0xff {
		if man != 0 {
			return sign | 0x7e00
		}
		return sign | 0x7c00
	}
	e := exp - 127 + 15
	if e >= 0x1f {
		return sign | 0x7c00
	}
	if e <= 0 {
		if e < -10 {
			return sign
		}
		man |= 0x800000
		shift := uint32(14 - e)
		half := uint32(1) << (shift - 1)
		r := man >> shift
		rem := man & (1<<shift - 1)
		if rem > half || (rem == half && r&1 == 1) {
			r++
		}
		return sign | uint16(r)
	}
	r := uint32(e)<<10 | man>>13
	rem := man & 0x1fff
	if rem > 0x1000 || (rem == 0x1000 && r&1 == 1) {
		r++ // may carry into the exponent, which is right (up to infinity)
	}
	return sign | uint16(r)
}

// BF16ToF32 widens a bfloat16.
func BF16ToF32(h uint16) float32 { return bf16ToF32(h) }

// F32ToBF16 rounds f to the nearest bfloat16 (ties to even).
func F32ToBF16(f float32) uint16 { return f32ToBF16(f) }

func bf16ToF32(h uint16) float32 { return math.Float32frombits(uint32(h) << 16) }

func f32ToBF16(f float32) uint16 {
	u := math.Float32bits(f)
	if u&0x7fffffff > 0x7f800000 {
		return uint16(u>>16) | 0x40
	}
	u += 0x7fff + (u>>16)&1
	return uint16(u >> 16)
}
