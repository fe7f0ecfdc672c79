#!/bin/sh
# Click paths, streaming map: a log line "TIME USER PAGE" becomes "USER<TAB>TIME<TAB>PAGE".
# Run with --key-fields 2 --partition-fields 1: the key is USER and TIME, the partition is
# chosen by USER alone, so each user's clicks meet in one reducer, sorted by time.
exec awk '{ print $2 "\t" $1 "\t" $3 }'
