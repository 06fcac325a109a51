#!/usr/bin/env bash
# A real YARN for tests: MiniYARNCluster (Hadoop 3.5.0 from Maven Central, JDK 17) with one
# ResourceManager on fixed ports and two or more NodeManagers whose containers are real processes.
#
#   test/yarn/minicluster.sh up      build if needed, start in the background, wait until ready
#                                    (idempotent: a running, healthy cluster is reused)
#   test/yarn/minicluster.sh env     print `export KEY=VALUE` lines: eval "$(test/yarn/minicluster.sh env)"
#   test/yarn/minicluster.sh status  exit 0 when running and ready
#   test/yarn/minicluster.sh down    stop it (SIGTERM, then SIGKILL after 90 s) and remove its files
#   test/yarn/minicluster.sh build   only build the harness
#
# Settings (environment): SHOAL_YARN_DIR (/tmp/shoal-yarn), SHOAL_YARN_BASE_PORT (18030: scheduler
# +0, resource tracker +1, RM +2, admin +3, web +58), SHOAL_YARN_NODEMANAGERS (2),
# SHOAL_YARN_NM_MEMORY_MB (4096 each), SHOAL_YARN_NM_VCORES (8 each), SHOAL_YARN_HEAP (768m),
# SHOAL_YARN_NODE_LABEL (fast: a non-exclusive node label on the first NodeManager; empty: none),
# SHOAL_YARN_HDFS (1, the default: HDFS as the default file system, NameNode on base-10 and WebHDFS
# on base+40; 0: the local file system), SHOAL_YARN_RPC_PROTECTION (hadoop.rpc.protection:
# authentication, Hadoop's default when empty; integrity; privacy).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DIR="${SHOAL_YARN_DIR:-/tmp/shoal-yarn}"
BASE_PORT="${SHOAL_YARN_BASE_PORT:-18030}"
NMS="${SHOAL_YARN_NODEMANAGERS:-2}"
NM_MEM="${SHOAL_YARN_NM_MEMORY_MB:-4096}"
NM_VCORES="${SHOAL_YARN_NM_VCORES:-8}"
HEAP="${SHOAL_YARN_HEAP:-768m}"
LABEL="${SHOAL_YARN_NODE_LABEL-fast}"
HDFS=()
[[ ${SHOAL_YARN_HDFS:-1} == 1 ]] && HDFS=(--hdfs)
PROTECTION=()
[[ -n ${SHOAL_YARN_RPC_PROTECTION:-} ]] && PROTECTION=(--rpc-protection "$SHOAL_YARN_RPC_PROTECTION")
LOCK="/tmp/shoal-yarn.lock"

die() { echo "minicluster: $*" >&2; exit 1; }

need_java() {
	command -v java >/dev/null || die "java not found; install JDK 17 (apt-get install openjdk-17-jdk-headless maven, or run scripts/deps.sh)"
	command -v mvn >/dev/null || die "mvn not found; install Maven (apt-get install maven, or run scripts/deps.sh)"
}

build() {
	need_java
	local jar="$HERE/target/shoal-yarn-minicluster-1.jar" cp="$HERE/target/classpath.txt"
	if [[ -f "$jar" && -f "$cp" && "$jar" -nt "$HERE/pom.xml" ]] &&
		[[ -z "$(find "$HERE/src" -newer "$jar" -type f 2>/dev/null)" ]]; then
		return 0
	fi
	echo "minicluster: building the harness (Maven; the first build downloads Hadoop into ~/.m2)" >&2
	# offline when ~/.m2 already has everything, online otherwise
	if ! (cd "$HERE" && mvn -B -q -o package >/dev/null 2>&1); then
		(cd "$HERE" && mvn -B -q package) || die "maven build of $HERE failed (see the output above)"
	fi
}

pid_alive() { [[ -f "$DIR/pid" ]] && kill -0 "$(cat "$DIR/pid")" 2>/dev/null; }

healthy() {
	pid_alive && [[ -f "$DIR/ready" && -f "$DIR/env" ]] || return 1
	local web
	web="$(sed -n 's/^SHOAL_YARN_RM=//p' "$DIR/env")"
	curl -fsS --max-time 5 "$web/ws/v1/cluster/info" >/dev/null 2>&1
}

up() {
	exec 9>"$LOCK"
	flock 9
	if healthy; then
		echo "minicluster: already running (pid $(cat "$DIR/pid")), $DIR/env" >&2
		return 0
	fi
	if pid_alive; then
		echo "minicluster: pid $(cat "$DIR/pid") is alive but not ready; stopping it first" >&2
		stop_locked
	fi
	build
	mkdir -p "$DIR"
	rm -f "$DIR/ready" "$DIR/env" "$DIR/cluster.json"
	# The MiniYARNCluster keeps its work directories under ./target, so run it from $DIR.
	(
		cd "$DIR"
		exec setsid java -Xmx"$HEAP" -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
			-Djava.net.preferIPv4Stack=true \
			-cp "$HERE/target/shoal-yarn-minicluster-1.jar:$(cat "$HERE/target/classpath.txt")" \
			shoal.yarntest.MiniCluster --out "$DIR" --base-port "$BASE_PORT" \
			--nodemanagers "$NMS" --nm-memory-mb "$NM_MEM" --nm-vcores "$NM_VCORES" --node-label "$LABEL" "${HDFS[@]}" "${PROTECTION[@]}" \
			</dev/null >"$DIR/minicluster.log" 2>&1 9>&-
	) 9>&- &
	echo $! >"$DIR/pid"
	local i
	for ((i = 0; i < 1800; i++)); do
		if [[ -f "$DIR/ready" ]]; then
			echo "minicluster: ready in $((i / 10)) s (pid $(cat "$DIR/pid")); eval \"\$($0 env)\"" >&2
			return 0
		fi
		pid_alive || { tail -n 40 "$DIR/minicluster.log" >&2; die "the harness exited before it was ready (log: $DIR/minicluster.log)"; }
		sleep 0.1
	done
	tail -n 40 "$DIR/minicluster.log" >&2
	stop_locked
	die "not ready after 180 s (log: $DIR/minicluster.log)"
}

stop_locked() {
	if pid_alive; then
		local pid i
		pid="$(cat "$DIR/pid")"
		kill -TERM "$pid" 2>/dev/null || true
		# NodeManagers wait for their applications on stop: about 20 s
		for ((i = 0; i < 900; i++)); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		if kill -0 "$pid" 2>/dev/null; then
			echo "minicluster: pid $pid still alive after 90 s; SIGKILL" >&2
			kill -KILL "$pid" 2>/dev/null || true
		fi
	fi
	rm -rf "$DIR/target" "$DIR/tmp" "$DIR/hdfs" "$DIR/node-labels" "$DIR/ready" "$DIR/env" "$DIR/cluster.json" "$DIR/pid"
}

down() {
	exec 9>"$LOCK"
	flock 9
	stop_locked
	echo "minicluster: stopped" >&2
}

env_out() {
	[[ -f "$DIR/ready" && -f "$DIR/env" ]] || die "not running; start it with $0 up"
	sed 's/^/export /' "$DIR/env"
}

case "${1:-}" in
up) up ;;
down) down ;;
env) env_out ;;
status) healthy ;;
build) build ;;
*) die "usage: $0 up|down|env|status|build" ;;
esac
