#!/bin/sh
# Word count, streaming reduce: stdin is sorted "word<TAB>count" lines; sum each run.
exec awk -F '\t' '
  ($1 "") != w { if (NR > 1) print w "\t" n; w = $1; n = 0 }
  { n += $2 }
  END { if (NR > 0) print w "\t" n }'
