"""Loading sources into chunk disks: pieces cut at record boundaries, packing, upload, staging.

Not here: the record formats (`geryon.records`), the disks (`geryon.disks`), the CLI verb
(`geryon.cli.data`).
"""
