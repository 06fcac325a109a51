#!/usr/bin/env bash
# The dashboard page in Debian's headless chromium, driven through the DevTools protocol
# (page.py): a `shoal run` cluster that ran tasks, an actor and a failing task (workload.py);
# 401 without the token; the DOM's text against what ran; a task submitted after the page
# loaded shows up without a reload; a screenshot kept in $OBS_ARTIFACTS (default
# /tmp/shoal-obs-artifacts).
set -uo pipefail
cd "$(dirname "$0")/../.."
SHOAL=${SHOAL:-$PWD/bin/shoal}
PY=${PYTHON:-python3}
export PATH=$PWD/bin:$PATH PYTHONPATH=$PWD/python${PYTHONPATH:+:$PYTHONPATH}
export SHOAL_TMPDIR=$(mktemp -d) OBS_OUT=$(mktemp -d)
ART=${OBS_ARTIFACTS:-/tmp/shoal-obs-artifacts}
mkdir -p "$ART"
unset SHOAL_ADDRESS SHOAL_SECRET SHOAL_CLUSTER_ID
trap 'rm -rf "$SHOAL_TMPDIR" "$OBS_OUT"' EXIT
cat > "$OBS_OUT/inside.sh" <<'IN'
set -u
d=$(shoal dashboard --json) || exit 1
url=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["url"])' <<<"$d")
tok=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])' <<<"$d")
exec python3 test/obs/page.py "${url}?token=$tok" "$url" "$ART/dashboard.png" "$OBS_OUT/loaded"
IN
ART=$ART OBS_LATE_SIGNAL=$OBS_OUT/loaded "$SHOAL" run --num-cpus 2 --quiet -- "$PY" test/obs/workload.py bash "$OBS_OUT/inside.sh"
rc=$?
echo "test/obs/page.sh: $([ $rc -eq 0 ] && echo passed || echo FAILED) (screenshot: $ART/dashboard.png)"
exit $rc
