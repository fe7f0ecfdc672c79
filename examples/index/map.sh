#!/bin/sh
# Inverted index, streaming map: "word<TAB>message-id" for each word of each message.
# Messages arrive one after the other on stdin; a Message-ID header starts a new one.
exec awk '
  tolower($1) == "message-id:" { id = $2 }
  { line = tolower($0); gsub(/[^a-z0-9_]+/, " ", line)
    n = split(line, w, " ")
    for (i = 1; i <= n; i++) if (w[i] != "" && !seen[id, w[i]]++) print w[i] "\t" id }'
