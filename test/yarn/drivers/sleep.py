# A driver for the YARN tests' kill case: keeps a task busy in every container until killed.
import os
import time

import shoal

shoal.init()
want = int(os.environ["SHOAL_YARN_CONTAINERS"])
busy = shoal.remote(num_cpus=1)(lambda: time.sleep(600))
refs = [busy.remote() for _ in range(want + 1)]
print("BUSY", flush=True)
shoal.get(refs)
