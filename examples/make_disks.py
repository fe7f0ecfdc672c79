#!/usr/bin/env python3
"""Write the sample mbox disks d0.mbox and d1.mbox: one mail message per file.

The messages are generated deterministically (seeded) from the sentences below, so the
disks can be rebuilt byte for byte: `python3 examples/make_disks.py examples/disks`.
"""
import os
import random
import sys
import textwrap
from email.message import EmailMessage
from email.utils import format_datetime
from datetime import datetime, timedelta, timezone

PEOPLE = ["caerwyn@example.org", "forsyth@example.org", "pravin@example.org", "noah@example.org",
          "ana@example.org", "ken@example.org", "rob@example.org", "dmr@example.org"]
TOPICS = ["chunk disks", "the registry", "rcpu and the cpu pool", "intermediate files", "mapreduce on Inferno",
          "taskfs sessions", "dsh load balancing", "replicas and failover", "ndb attribute files",
          "the web crawl corpus", "sorting at scale", "styx over the network"]
SENTENCES = """Every node registers its chunk disks and its cpu service with the registry.
A chunk is sixty four megabytes, the unit of storage and of work.
The map runs on every input disk and writes its output on the cpu's own disk.
Intermediate files are partitioned by a hash of the key into R partitions.
Each reducer gathers one partition from every map, sorts it and reduces it.
The registry forgets a service as soon as the file descriptor that made it is closed.
Disks are named in ndb, with a master chunk and a replica on another host.
rcpu picks the next cpu round robin and runs the command block with the disks mounted.
If a host dies in the middle of a job, its tasks must run again somewhere else.
The sort is the heart of the shuffle, and the shuffle is the heart of mapreduce.
We counted words in the crawl, then built an inverted index of every message.
Styx makes a remote disk look like a local directory, so tools need not change.
The grid has two hundred machines, most of them idle at night.
Load averages come back with every heartbeat, so dsh can pick the least loaded node.
A session reserves cpus by operating system and architecture, then fans the command out.
Closing the clone file releases every reservation on every node of the tree.
The output disks are returned to the caller, who may read them or feed another job.
Word counts and inverted indexes are the hello world of mapreduce.
Replicas should be switched to dynamically when a master disk becomes unavailable.
Small clusters deserve simple tools: no JVM, no HDFS, and no YARN.
The hash is sixty five thousand five hundred ninety nine times h plus the character.
Mail is stored one message per file, so a disk of mail is a directory of messages.
Tar bundles of gzipped files can be processed in one pass without unpacking them.
Nothing is committed until every partition has been reduced and renamed into place.""".split("\n")


def message(rng: random.Random, n: int, when: datetime) -> EmailMessage:
    msg = EmailMessage()
    sender, to = rng.sample(PEOPLE, 2)
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = f"Re: {rng.choice(TOPICS)}" if rng.random() < 0.5 else rng.choice(TOPICS).capitalize()
    msg["Date"] = format_datetime(when)
    msg["Message-ID"] = f"<{n}.{rng.randrange(10**6)}@grid.example.org>"
    paragraphs = []
    for _ in range(rng.randint(2, 5)):
        text = " ".join(rng.choice(SENTENCES) for _ in range(rng.randint(2, 6)))
        paragraphs.append(textwrap.fill(text, 72))
    msg.set_content("\n\n".join(paragraphs) + f"\n\n-- \n{sender.split('@')[0]}\n", cte="7bit")
    return msg


def main(out: str) -> None:
    rng = random.Random(35)
    when = datetime(2008, 3, 1, 9, 0, tzinfo=timezone.utc)
    n = 0
    for disk in ("d0.mbox", "d1.mbox"):
        path = os.path.join(out, disk)
        os.makedirs(path, exist_ok=True)
        for i in range(60):
            when += timedelta(minutes=rng.randint(5, 600))
            with open(os.path.join(path, f"{i:03d}.msg"), "w") as f:
                f.write(message(rng, n, when).as_string())
            n += 1


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "disks"))
