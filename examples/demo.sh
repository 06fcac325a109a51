#!/usr/bin/env bash
# make demo: run the examples on an embedded one-node cluster and say what happened.
set -euo pipefail
cd "$(dirname "$0")/.."
SHOAL=${SHOAL:-bin/shoal}
echo "== shoal run -- python examples/python/demo.py"
"$SHOAL" run -- "${PYTHON:-python3}" examples/python/demo.py
if [ -f examples/go/main.go ]; then
  echo
  echo "== shoal run -- examples/go (a Go program whose binary is also its own worker)"
  go build -o bin/shoal-go-example ./examples/go
  "$SHOAL" run -- bin/shoal-go-example
fi
echo
echo "== shoal run -- shoal train --nproc-per-node 2 -- python examples/train/fsdp_numpy.py (FSDP-style ranks over shoal.collective)"
"$SHOAL" run -- "$SHOAL" train --nproc-per-node 2 -- "${PYTHON:-python3}" examples/train/fsdp_numpy.py --steps 50
echo
echo "== shoal up / status / down (a cluster that outlives one command)"
eval "$("$SHOAL" up --num-cpus 2 2>/dev/null)"
"$SHOAL" status
"${PYTHON:-python3}" -c 'import shoal as ray; ray.init(); print("a driver joined cluster", ray.get_runtime_context().get_node_id(), "->", ray.get(ray.put("hello")))'
"$SHOAL" down
echo "demo finished: every process, socket and /dev/shm file of the clusters is gone"
