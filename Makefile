# shoal: `make test` installs what the tests need and runs them all; `make demo` runs the examples
# on an embedded one-node cluster.
GO        ?= go
PYTHON    ?= python3
export PATH := $(CURDIR)/bin:$(PATH)
export SHOAL_BIN := $(CURDIR)/bin/shoal
# the version is written once, in python/shoal/__init__.py; `shoal --version` adds the commit
VERSION   := $(shell sed -n 's/^__version__ = "\(.*\)"$$/\1/p' python/shoal/__init__.py)
COMMIT    := $(shell c=$$(git rev-parse HEAD 2>/dev/null) && { git diff --quiet HEAD -- || c=$$c-dirty; echo $$c; })

.PHONY: all build spank deps test test-obs test-security test-go test-python test-e2e test-slurm test-objects test-yarn test-train test-coll test-coll-nodes test-rdma test-chaos chaos-long chaos-load release test-release bench-ucx bench-core-sim bench-head-scale bench-local demo fuzz bench clean

all: build

build:
	$(GO) build -ldflags "-X main.version=$(VERSION) -X main.commit=$(COMMIT)" -o bin/shoal ./cmd/shoal
	mkdir -p python/shoal/bin && cp bin/shoal python/shoal/bin/shoal
	$(GO) build -buildmode=c-shared -o python/shoal/bin/libshoalcoll.so ./cmd/libshoalcoll

deps:
	./scripts/deps.sh

test: deps build test-go test-python test-e2e test-obs test-security test-slurm test-objects test-yarn test-train test-coll-nodes test-rdma test-chaos test-release

test-go:
	$(GO) vet ./...
	$(GO) test -count=1 ./...

# two pytest workers (pytest-xdist), each module's tests in one: most tests wait on clusters they
# start, so two at a time take about half the time on this 2-core machine
PYTEST_WORKERS ?= 2
test-python: build
	$(PYTHON) -m pytest -q -n $(PYTEST_WORKERS) --dist loadfile python/tests

test-e2e: build
	./test/e2e.sh
	./test/head_state.sh

# observability: /metrics (promtool), the token, `shoal dashboard`, `shoal timeline`, `shoal logs`,
# the report, the dashboard page in headless chromium (screenshot in $$OBS_ARTIFACTS, default
# /tmp/shoal-obs-artifacts), then logs, timeline and heartbeats of member nodes on the Slurm cluster
test-obs: build spank
	./test/obs/metrics.sh
	./test/obs/page.sh
	flock /tmp/shoal-slurm.lock sh -c './test/slurm/obs.sh; rc=$$?; ./scripts/slurm-cluster.sh down >/dev/null 2>&1; exit $$rc'

# a hostile second user on this node (test/security/*.sh, real Unix users made with useradd), then
# the same attacks on the 3-node Slurm cluster (test/slurm/security*.sh, held under the lock)
test-security: build spank
	@rc=0; for t in test/security/*.sh; do case $$t in */lib.sh) continue;; esac; echo "== $$t"; $$t || rc=1; done; \
	flock /tmp/shoal-slurm.lock sh -c 'rc=0; for t in test/slurm/security*.sh; do [ -e "$$t" ] || continue; echo "== $$t"; $$t || rc=1; done; ./scripts/slurm-cluster.sh down >/dev/null 2>&1; exit $$rc' || rc=1; exit $$rc

# the SPANK plugin (srun --shoal); needs slurm/spank.h from Debian's libslurm-dev
spank: bin/shoal_spank.so
bin/shoal_spank.so: slurm/spank/shoal_spank.c
	mkdir -p bin && gcc -shared -fPIC -O2 -Wall -Wextra -Werror -o $@ $<

# a real 3-node Slurm 22.05 cluster (slurmctld + slurmd in network namespaces) on this machine;
# the cluster is machine-wide, so every Slurm target holds /tmp/shoal-slurm.lock while it runs
test-slurm: build spank
	flock /tmp/shoal-slurm.lock sh -c './test/slurm/smoke.sh && ./test/slurm/launch.sh && ./test/slurm/head_state.sh && ./test/slurm/liveness.sh && ./test/slurm/core.sh && ./test/slurm/local.sh && ./test/slurm/strategy.sh && ./test/slurm/remote_driver.sh && ./test/slurm/context.sh; rc=$$?; ./scripts/slurm-cluster.sh down >/dev/null 2>&1; exit $$rc'

# objects between the nodes of the 3-node Slurm cluster (held under the lock)
test-objects: build spank
	flock /tmp/shoal-slurm.lock sh -c './test/slurm/objects.sh; rc=$$?; ./scripts/slurm-cluster.sh down >/dev/null 2>&1; exit $$rc'

# collectives: transports and algorithms across processes (go), shoal.collective across actors of a
# `shoal run` cluster (pytest), and across the nodes of the 3-node Slurm cluster (held under the lock)
test-coll: build spank
	$(GO) test -count=1 ./rdma/...
	PYTHONPATH=$(CURDIR)/python $(PYTHON) -m pytest -q python/tests/test_collective.py
	@$(MAKE) --no-print-directory test-coll-nodes

# the part of test-coll that test-go and test-python do not already run (what `make test` runs)
test-coll-nodes: build spank
	flock /tmp/shoal-slurm.lock sh -c './test/slurm/collective.sh; rc=$$?; ./scripts/slurm-cluster.sh down >/dev/null 2>&1; exit $$rc'

# shoal train / shoal.train on the 3-node Slurm cluster: rank layout and environment, GPUs,
# placement, numpy FSDP vs one process, restart from a checkpoint, torch gloo DDP, scancel; then
# preemption, the time-limit warning with requeue, elastic gangs and spare nodes (train-requeue.sh, ~2.5 min)
test-train: build spank
	flock /tmp/shoal-slurm.lock sh -c './test/slurm/train.sh; rc=$$?; ./test/slurm/train-requeue.sh || rc=1; ./scripts/slurm-cluster.sh down >/dev/null 2>&1; exit $$rc'

# chaos on the 3-node Slurm cluster (scripts/chaos.sh, docs/reliability.md): a fixed list of
# seed:faults covering every fault kind, and the seeds of the long run's failures (2076, 2077)
# (~4-5 min); chaos.sh takes /tmp/shoal-slurm.lock itself,
# a few runs at a time, and takes the cluster down between. A run is replayed with
# `scripts/chaos.sh --seeds SEED:FAULTS`.
CHAOS_SEEDS ?= 101:kill-worker+loss,102:kill-actor+throttle,103:stop-agent+store-full,104:link-cut+spill-full,105:kill-agent+memhog,106:second-job+delay,2076:stop-agent-nocont+loss,2077:link-cut,108:scancel,109:timelimit
test-chaos: build spank
	./scripts/chaos.sh --seeds $(CHAOS_SEEDS)

# the long form: CHAOS_RUNS runs from CHAOS_SEED (default: the clock), faults drawn from all kinds,
# one JSON line per run appended to CHAOS_OUT (figures for docs/reliability.md)
CHAOS_RUNS ?= 100
CHAOS_OUT  ?= /tmp/shoal-chaos-runs.jsonl
chaos-long: build spank
	./scripts/chaos.sh --runs $(CHAOS_RUNS) $(if $(CHAOS_SEED),--seed $(CHAOS_SEED)) --out $(CHAOS_OUT)

# load on the 3-node Slurm cluster: 1M tasks, 10k actor creations, 1k placement groups, 100
# client threads; peak RSS and CPU of the head and agents (not in `make test`: tens of minutes)
chaos-load: build spank
	./scripts/chaos-load.sh

# a real YARN (MiniYARNCluster: 1 RM, 2 NMs; Hadoop 3.5.0 from Maven Central on JDK 17): the
# ipc package's real-YARN test and `shoal yarn` end to end; starts the cluster when none runs,
# and then stops it after
test-yarn: build
	@if ./test/yarn/minicluster.sh status; then keep=1; else keep=0; ./test/yarn/minicluster.sh up || exit 1; fi; \
	$(GO) test -count=1 ./yarn/...; rc=$$?; ./test/yarn/yarn.sh || rc=1; ./test/yarn/head_state.sh || rc=1; \
	if [ $$keep = 0 ]; then ./test/yarn/minicluster.sh down; fi; exit $$rc


# UCX and NCCL opened at run time: shoal transports with and without the libraries
test-rdma: build
	./test/rdma.sh

# the release (docs/release.md): dist/ gets manylinux2014 wheels and admin tarballs for x86_64 and
# aarch64, every ELF built with zig cc against glibc 2.17 symbols
release:
	./scripts/release.sh

# builds the release and checks it: glibc <= 2.17 and manylinux2014 libraries on every ELF, auditwheel,
# the aarch64 ELFs, and the x86_64 wheel in a fresh venv running tasks, an actor, numpy objects and a
# collective with no checkout on the path; about 2 minutes with warm Go and zig caches (the first,
# cold build of sqlite3.c and the Go toolchain for two targets takes several more)
test-release: release
	./scripts/check-release.sh

# rdma/ucx beside ucx_perftest on this machine (docs/benchmarks.md)
bench-ucx:
	./scripts/bench-ucx.sh

demo: build
	@if ! $(PYTHON) -c "import numpy, msgpack, cloudpickle" 2>/dev/null; then ./scripts/deps.sh; fi
	./examples/demo.sh

# every Go fuzz target in the tree for FUZZTIME each (seed corpora also run in test-go), then the
# Python SDK's frame reader under atheris when it is installed
FUZZTIME ?= 10s
fuzz:
	@for p in $$($(GO) list ./...); do \
	  for t in $$($(GO) test -list '^Fuzz' $$p | grep '^Fuzz'); do \
	    echo "== $$p $$t"; $(GO) test $$p -run '^$$' -fuzz "^$$t\$$" -fuzztime $(FUZZTIME) || exit 1; done; done
	@if $(PYTHON) -c "import atheris" 2>/dev/null; then d=$$(mktemp -d) && cp python/tests/testdata/fuzz_wire/* $$d && \
	  PYTHONPATH=$$PWD/python $(PYTHON) python/tests/fuzz_wire.py $$d -max_total_time=30 && \
	  e=$$(mktemp -d) && cp python/tests/testdata/fuzz_excludes/* $$e && \
	  PYTHONPATH=$$PWD/python $(PYTHON) python/tests/fuzz_excludes.py $$e -max_total_time=30; \
	  else echo "skip python/tests/fuzz_wire.py, fuzz_excludes.py: pip install atheris"; fi

bench: build
	./bin/shoal bench core

# the core's simulation at the design's limits (1,000 nodes, 1M queued tasks, 10k actors, 1k
# placement groups): decisions per second and heap bytes per queued task (docs/architecture.md)
bench-core-sim:
	$(GO) test -run '^$$' -bench CoreSimulation -benchtime=1x ./sched/

# tiny tasks from one driver on 1, 3 and 9 Slurm test nodes: tasks/s and the head's CPU per task
bench-head-scale: build spank
	./scripts/bench-head-scale.sh

# member-local scheduling against every task through the head, on 3 and 9 Slurm test nodes
bench-local: build spank
	./scripts/bench-local.sh

clean:
	rm -rf bin python/shoal/bin dist
