"""Input records: readers and formats (lines, mbox, WARC, tar, compression), bad records, input splits.

Not here: the disks the files live on (`geryon.disks`), map and reduce (`geryon.mapreduce`).
"""
