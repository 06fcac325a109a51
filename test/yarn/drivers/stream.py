# A driver for the YARN tests: its first line must reach the client while it still runs. It waits
# for the test to see "tick 0" in `shoal yarn submit`'s output ($MARK_DIR/seen) and fails with
# exit code 3 if that never happens.
import os
import sys
import time

print("tick 0", flush=True)
seen = os.path.join(os.environ["MARK_DIR"], "seen")
deadline = time.time() + 60
while not os.path.exists(seen):
    if time.time() > deadline:
        print("the client never showed tick 0", file=sys.stderr, flush=True)
        sys.exit(3)
    time.sleep(0.1)
print("tick 1", flush=True)
