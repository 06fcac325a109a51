package nccl

/*
#include "shim.h"
*/
import "C"

import "unsafe"

// layout reports how this package lays out the NCCL ABI it declares, for the golden test.
type layout struct {
	UniqueIDSize, ConfigSize                                 uintptr
	Magic, Version, Blocking, CGA, MinCTAs, MaxCTAs, NetName uintptr
	APIMagic, ConfigVersion, UndefInt                        int64
	Success, InProgress, RemoteError, Timeout                int
	CUDANotReady, HostToDevice, DeviceToHost                 int
}

func abiLayout() layout {
	var c C.nx_config_t
	var filled C.nx_config_t
	C.shoal_nccl_fill_config(&filled)
	return layout{
		UniqueIDSize:  unsafe.Sizeof(C.nx_unique_id_t{}),
		ConfigSize:    unsafe.Sizeof(c),
		Magic:         unsafe.Offsetof(c.magic),
		Version:       unsafe.Offsetof(c.version),
		Blocking:      unsafe.Offsetof(c.blocking),
		CGA:           unsafe.Offsetof(c.cgaClusterSize),
		MinCTAs:       unsafe.Offsetof(c.minCTAs),
		MaxCTAs:       unsafe.Offsetof(c.maxCTAs),
		NetName:       unsafe.Offsetof(c.netName),
		APIMagic:      int64(filled.magic),
		ConfigVersion: int64(filled.version),
		UndefInt:      int64(filled.minCTAs),
		Success:       C.NX_SUCCESS,
		InProgress:    C.NX_IN_PROGRESS,
		RemoteError:   C.NX_REMOTE_ERROR,
		Timeout:       C.NX_TIMEOUT,
		CUDANotReady:  C.NX_CUDA_ERROR_NOT_READY,
		HostToDevice:  C.NX_MEMCPY_HOST_TO_DEVICE,
		DeviceToHost:  C.NX_MEMCPY_DEVICE_TO_HOST,
	}
}

// configBlocking is what shoal_nccl_fill_config puts in blocking and size (for the test).
func configBlocking() (blocking int, size int) {
	var c C.nx_config_t
	C.shoal_nccl_fill_config(&c)
	return int(c.blocking), int(c.size)
}
