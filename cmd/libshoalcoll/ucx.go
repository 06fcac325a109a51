package main

// UCX joins the backends that collective groups may use (rdma/ucx registers "ucx" in its
// init; libucp is opened only when a group starts it).
import _ "github.com/shoal-hpc/shoal/rdma/ucx"
