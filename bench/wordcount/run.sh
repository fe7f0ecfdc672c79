#!/usr/bin/env bash
# Word count: Geryon (local mode) against its peers, in ONE run, on the same input files.
#
#   bench/wordcount/run.sh                        # Geryon + counter + pool (+ peers if their venv exists)
#   INPUTS="docs100 lines100" RUNS=3 bench/wordcount/run.sh
#   SYSTEMS="geryon counter" INPUTS=docs RUNS=1 bench/wordcount/run.sh
#
# Every system is measured with bench/peers/measure.py (/usr/bin/time -v: wall, CPU, max RSS of the
# largest process; plus peak PSS summed over the whole process session, sampled every 0.2 s).
# Every output is normalised (all part files concatenated, LC_ALL=C sort) and compared byte for byte
# with the single-process Counter reference: SAME_AS_REF or DIFFERS.
#
# env knobs [defaults]:
#   CORPUS        [/tmp/corpus]        holds docs100 lines100 docs lines (see README.md)
#   INPUTS        [docs100 lines100]   sub-directories of CORPUS to run on
#   RUNS          [3]                  runs per system; RUNS_<system> overrides (e.g. RUNS_mrjob_inline=1)
#   SYSTEMS       [geryon counter pool + PEERS when PEERS_VENV exists]
#   PEERS         [dask_processes spark mrjob_inline coreutils]
#   SHARED_BENCH  [<repo>/bench/peers]     the peer scripts
#   PEERS_VENV    [/tmp/benchvenv]     venv with dask/mrjob/pyspark (bench/peers/run_peers.sh setup)
#   PYTHON        [python3]            interpreter for measure.py, counter and pool
#   OUT           [/tmp/geryon_bench_wc]  outputs, references, results-*.jsonl, report-*.md
#   GERYON_CMD    the Geryon command, run from the repo root; {in} and {out} are replaced by the
#                 quoted input directory and output directory:
#                 [geryon mapreduce examples/wordcount/map.py examples/wordcount/reduce.py {in} -j 2 --out {out}]
#   GERYON_PARTS  [*.part*]            glob of Geryon's output part files inside {out}
#   WARM          [1]                  read each input once (untimed) before timing, so all systems see a warm cache
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
SHARED_BENCH=${SHARED_BENCH:-$REPO/bench/peers}
PYTHON=${PYTHON:-python3}
GERYON_PARTS=${GERYON_PARTS:-*.part*}

# ---- output normalisation + check (also called by measure.py as the --post hook) -----------------
# usage: run.sh __check SYSTEM OUTPUT REF_NORM  -> prints "SAME_AS_REF distinct=.. total=.. md5=.."
norm() {  # system output-path  -> sorted token<TAB>count lines on stdout
  local s=$1 p=$2
  if [ -d "$p" ]; then
    if [ "${s#geryon}" != "$s" ]; then   # geryon, geryon_r6: only the part files
      find "$p" -type f -name "$GERYON_PARTS" -print0
    else   # same exclusions as bench/peers/wc_norm.sh (Spark/Hadoop markers, hidden files)
      find "$p" -type f ! -name '_SUCCESS' ! -name '.*' ! -name '*.crc' -print0
    fi | sort -z | xargs -0 -r cat
  else
    cat "$p"
  fi | LC_ALL=C sort -S 1G --parallel=2
}
summ() {  # norm-file -> distinct=N total=N md5=X
  LC_ALL=C awk -F '\t' '{n++; t+=$2} END {printf "distinct=%d total=%d ", n, t}' "$1"
  md5sum < "$1" | awk '{print "md5=" $1}'
}
if [ "${1:-}" = __check ]; then
  s=$2 o=$3 ref=$4
  [ -e "$o" ] || { echo "NO_OUTPUT"; exit 0; }
  norm "$s" "$o" > "$o.norm"
  r=$(summ "$o.norm")
  if cmp -s "$o.norm" "$ref"; then echo "SAME_AS_REF $r"; else echo "DIFFERS $r"; fi
  rm -f "$o.norm"
  exit 0
fi

# ---- configuration ---------------------------------------------------------------------------------
CORPUS=${CORPUS:-/tmp/corpus}
INPUTS=${INPUTS:-docs100 lines100}
RUNS=${RUNS:-3}
PEERS_VENV=${PEERS_VENV:-/tmp/benchvenv}
PEERS=${PEERS:-dask_processes spark mrjob_inline coreutils}
OUT=${OUT:-/tmp/geryon_bench_wc}
WARM=${WARM:-1}
GERYON_DEFAULT='geryon mapreduce examples/wordcount/map.py examples/wordcount/reduce.py {in} -j 2 --out {out}'
GERYON_CMD=${GERYON_CMD:-$GERYON_DEFAULT}
if [ -z "${SYSTEMS:-}" ]; then
  SYSTEMS="geryon geryon_r6 counter pool"
  if [ -x "$PEERS_VENV/bin/python" ]; then SYSTEMS="$SYSTEMS $PEERS"
  else echo "note: no peers venv at $PEERS_VENV (create it with $SHARED_BENCH/run_peers.sh setup); peers skipped" >&2; fi
fi
[ -f "$SHARED_BENCH/measure.py" ] || { echo "peer scripts not found at $SHARED_BENCH (set SHARED_BENCH)" >&2; exit 1; }
mkdir -p "$OUT"
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
RESULTS=${RESULTS:-$OUT/results-$STAMP.jsonl}
REPORT=${REPORT:-$OUT/report-$STAMP.md}
export TMPDIR=${TMPDIR:-/tmp}
SELF="$HERE/$(basename "${BASH_SOURCE[0]}")"
PPY="$PEERS_VENV/bin/python"

q() { printf "'%s'" "${1//\'/\'\\\'\'}"; }   # single-quote a path for bash -c
runs_for() { local v="RUNS_$1"; echo "${!v:-$RUNS}"; }
bytes_of() { find "$1" -type f -printf '%s\n' | awk '{s+=$1} END {printf "%d\n", s}'; }

wc_cmd() {  # system input-dir output
  local s=$1 in=$2 o=$3 sb; sb=$(q "$SHARED_BENCH")
  case $s in
    geryon)         local c=${GERYON_CMD//\{in\}/$(q "$in")}; c=${c//\{out\}/$(q "$o")}
                    echo "cd $(q "$REPO") && $c";;
    geryon_r6)      # the same job with R=6: a multiple of the 2 workers, so no reduce wave idles
                    local c=${GERYON_CMD//\{in\}/$(q "$in")}; c=${c//\{out\}/$(q "$o")}
                    echo "cd $(q "$REPO") && $c -R 6";;
    geryon_bytes)   # the same map.py and reduce.py over raw bytes: no UTF-8 decode, bytes keys
                    local c=${GERYON_CMD//\{in\}/$(q "$in")}; c=${c//\{out\}/$(q "$o")}
                    echo "cd $(q "$REPO") && $c -R 6 --reader bytes";;
    counter)        echo "$(q "$PYTHON") $sb/wc_counter.py $(q "$in") $(q "$o")";;
    pool)           echo "$(q "$PYTHON") $sb/wc_pool.py -w 2 $(q "$in") $(q "$o")";;
    coreutils)      echo "SORT_MEM=2G $sb/wc_coreutils.sh $(q "$in") $(q "$o")";;
    awk)            echo "AWK=mawk $sb/wc_awk.sh $(q "$in") $(q "$o")";;
    dask_processes) echo "$(q "$PPY") $sb/wc_dask.py processes $(q "$in") $(q "$o") 2>/dev/null";;
    spark)          # many small files: merge the per-file partitions into 8 tasks (as run_peers.sh)
                    local co=""
                    [ "$(find "$in" -type f | head -100 | wc -l)" -ge 100 ] && co="COALESCE=8 "
                    echo "PATH=$(q "$PEERS_VENV/bin"):\$PATH ${co}$(q "$PPY") $sb/wc_spark.py $(q "$in") $(q "$o") 2>/dev/null";;
    mrjob_inline)   echo "$(q "$PPY") $sb/wc_mrjob.py -r inline --no-conf $(q "$in") -o $(q "$o") >/dev/null 2>&1";;
    *) echo "unknown system $s" >&2; return 1;;
  esac
}

# ---- measure ---------------------------------------------------------------------------------------
echo "# results -> $RESULTS"
for in in $INPUTS; do
  dir="$CORPUS/$in"
  [ -d "$dir" ] || { echo "missing input $dir (see README.md: make the corpus)" >&2; exit 1; }
  b=$(bytes_of "$dir")
  ref="$OUT/ref_$in.norm"       # reference: single-process Counter, computed once, not timed
  if [ ! -s "$ref" ]; then
    echo "== reference counts for $in ($(date -u +%T))"
    "$PYTHON" "$SHARED_BENCH/wc_counter.py" "$dir" "$OUT/ref_$in.tsv"
    norm counter "$OUT/ref_$in.tsv" > "$ref"; rm -f "$OUT/ref_$in.tsv"
  fi
  echo "== $in: $b bytes, reference $(summ "$ref")"
  [ "$WARM" = 1 ] && find "$dir" -type f -print0 | xargs -0 -r cat > /dev/null
  for s in $SYSTEMS; do
    o="$OUT/wc_${s}_$in"
    cmd=$(wc_cmd "$s" "$dir" "$o") || continue
    "$PYTHON" "$SHARED_BENCH/measure.py" --out "$RESULTS" --label "$s" --job wordcount --input "$in" \
      --bytes "$b" --runs "$(runs_for "$s")" --pre "rm -rf $(q "$o")" \
      --post "$(q "$SELF") __check $s $(q "$o") $(q "$ref")" "$cmd" || true
  done
done

# ---- report ----------------------------------------------------------------------------------------
"$PYTHON" - "$RESULTS" > "$REPORT" <<'PYEOF'
import json, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    rows.setdefault(r['input'], {}).setdefault(r['label'], []).append(r)
out = []
for inp, systems in rows.items():
    nbytes = next(iter(systems.values()))[0]['bytes']
    out.append('\n### wordcount on `%s` (%.1f MB)\n' % (inp, nbytes / 1e6))
    out.append('| system | runs | wall s median (min-max) | MB/s | x counter | CPU s (user+sys) '
               '| peak RSS MB (largest process) | peak PSS MB (all processes) | output check |')
    out.append('|---|---|---|---|---|---|---|---|---|')
    ok_c = [r['wall_s'] for r in systems.get('counter', []) if r.get('rc') == 0 and 'wall_s' in r]
    base = statistics.median(ok_c) if ok_c else None
    for label, rs in systems.items():
        ok = [r for r in rs if r.get('rc') == 0 and 'wall_s' in r]
        ver = [r['verify'] for r in rs if r.get('verify')]
        if not ok:
            out.append('| %s | %d | FAILED (rc %s) | | | | | | %s |' % (
                label, len(rs), rs[-1].get('rc'), ver[-1].split()[0] if ver else ''))
            continue
        walls = [r['wall_s'] for r in ok]
        med = statistics.median(walls)
        cpu = statistics.median(r.get('user_s', 0) + r.get('sys_s', 0) for r in ok)
        rss = max(r.get('maxrss_kb', 0) for r in ok) / 1024
        pss = max(r.get('peak_tree_pss_kb', 0) for r in ok) / 1024
        jvm = label == 'spark'   # the JVM outlives the Python driver: time -v misses it, PSS does not
        rng = '%.2f' % med if len(walls) == 1 else '%.2f (%.2f-%.2f)' % (med, min(walls), max(walls))
        out.append('| %s | %d | %s | %.1f | %s | %s | %s | %d | %s |' % (
            label, len(ok), rng, nbytes / 1e6 / med if med else float('inf'),
            '%.2f' % (med / base) if base else '', 'n/a' if jvm else '%.1f' % cpu,
            'n/a' if jvm else '%d' % round(rss), round(pss), ver[-1].split()[0] if ver else ''))
print('\n'.join(out))
PYEOF
{
  echo; echo "env: $("$PYTHON" -c 'import platform; print("python", platform.python_version())'); $(nproc) cores;" \
    "$(free -g | awk '/Mem/{print $2}') GiB; $(date -u +%F)"
} >> "$REPORT"
cat "$REPORT"
echo; echo "report: $REPORT   raw: $RESULTS"
