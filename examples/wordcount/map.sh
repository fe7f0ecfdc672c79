#!/bin/sh
# Word count, streaming map: one "word<TAB>1" line per word of stdin.
exec awk '{ for (i = 1; i <= NF; i++) print $i "\t1" }'
