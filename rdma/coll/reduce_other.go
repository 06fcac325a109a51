//go:build !amd64

package coll

// addFast has no vector path on this architecture.
func addFast[T number](dst, src []T) int { return 0 }
