#!/bin/sh
# Click paths, streaming reduce: stdin is "USER<TAB>TIME<TAB>PAGE" lines, each user's together and
# in time order (the secondary sort); print "USER<TAB>PAGE > PAGE > ..." once per user.
exec awk -F '\t' '
  $1 != u { if (NR > 1) print u "\t" path; u = $1; path = $3; next }
  { path = path " > " $3 }
  END { if (NR > 0) print u "\t" path }'
