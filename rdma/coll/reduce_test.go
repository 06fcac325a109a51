package coll

import (
	"math"
	"math/rand/v2"
	"testing"
	"unsafe"
)

// TestVectorSumSameBits: the vector sum (AVX2 where the CPU has it) gives the same bits as
// one scalar IEEE addition per element, for every length around the vector widths, with
// NaNs, infinities, signed zeros and subnormals among the values.
func TestVectorSumSameBits(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	special := []float64{math.NaN(), math.Inf(1), math.Inf(-1), 0, math.Copysign(0, -1), 5e-324, 1e308, -1e308}
	val := func() float64 {
		if rng.IntN(8) == 0 {
			return special[rng.IntN(len(special))]
		}
		return rng.NormFloat64() * math.Pow(10, float64(rng.IntN(20)-10))
	}
	for _, n := range []int{0, 1, 15, 16, 17, 31, 32, 33, 63, 64, 65, 1000, 4099} {
		d32, s32 := make([]float32, n), make([]float32, n)
		d64, s64 := make([]float64, n), make([]float64, n)
		for i := range n {
			d32[i], s32[i] = float32(val()), float32(val())
			d64[i], s64[i] = val(), val()
		}
		w32, w64 := make([]float32, n), make([]float64, n)
		for i := range n {
			w32[i] = d32[i] + s32[i]
			w64[i] = d64[i] + s64[i]
		}
		Reduce(bytesOf(d32), bytesOf(s32), Float32, Sum)
		Reduce(bytesOf(d64), bytesOf(s64), Float64, Sum)
		for i := range n {
			if math.Float32bits(d32[i]) != math.Float32bits(w32[i]) {
				t.Fatalf("float32 sum of %d elements: element %d is %v (%#x), want %v (%#x)", n, i, d32[i], math.Float32bits(d32[i]), w32[i], math.Float32bits(w32[i]))
			}
			if math.Float64bits(d64[i]) != math.Float64bits(w64[i]) {
				t.Fatalf("float64 sum of %d elements: element %d is %v, want %v", n, i, d64[i], w64[i])
			}
		}
	}
}

func bytesOf[T any](v []T) []byte {
	if len(v) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&v[0])), len(v)*int(unsafe.Sizeof(v[0])))
}
