# A driver for the YARN tests: runs one task on the cluster, then fails with exit code 7.
import sys

import shoal

shoal.init()
print("TASK", shoal.get(shoal.remote(lambda: 6 * 7).remote()), flush=True)
print("driver failing on purpose", file=sys.stderr, flush=True)
sys.exit(7)
