#!/bin/sh
# Inverted index, streaming reduce: join the ids of each word (sorted input) on one line.
exec awk -F '\t' '
  ($1 "") != w { if (NR > 1) print w "\t" ids; w = $1; ids = $2; next }
  { ids = ids " " $2 }
  END { if (NR > 0) print w "\t" ids }'
