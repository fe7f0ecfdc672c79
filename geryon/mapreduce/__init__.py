"""MapReduce: job values, scripts and packs, planning, tasks, the driver, cpus, map and reduce
task bodies, sort, segments, codec, partition, streaming, counters, job history.

Not here: input records and splits (`geryon.records`), disks (`geryon.disks`), the node's job
service and the worker entry point (`geryon.node`), the command line (`geryon.cli`).
"""

from geryon.mapreduce import api as _api  # noqa: E402,F401  (installs what Job.run calls, whichever module is imported first)
