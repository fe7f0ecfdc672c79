#!/bin/sh
# Total-order sort, map: a gensort record's first 10 bytes are its key, the rest its value
# (a tab put between them: the streaming rule's key<TAB>value).
LC_ALL=C exec sed 's/^\(.\{10\}\)/\1\t/'
