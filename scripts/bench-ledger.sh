#!/bin/sh
# A big ledger: generation, issuance into it, look-ups and renewal, each
# against its goal (issue 16, point 5).
#
#   scripts/bench-ledger.sh                # COUNT=1000000 synthetic tokens of a real token's size
#   scripts/bench-ledger.sh --ten-million  # COUNT=10000000 lean synthetic tokens (~0.5 KB each, ~5 GB)
#
# 0. Checks the free disk of the work directory against the estimate
#    (COUNT x 2.3 KB, or x 0.6 KB lean, plus 2 GB for the real tokens and
#    bundles) and refuses to start without it.
# 1. Fills a ledger with COUNT synthetic tokens (hidden helper `tka ledger
#    bench-fill [--lean]`: serials made as issuance makes them at each
#    token's issue time, increasing CMIDs spread over their space, so the
#    fill is an append) and prints the time and the disk size.
# 2. Issues N generated requests (`tka token issue-bulk --bundle`, RSA-2048
#    PS256, --days 20: they fall due for renewal) into the big ledger, timed,
#    plus 10 and 1,000 more for a small and a medium entitlement.
# 3. (a) ROUNDS rounds of issue-bulk of BATCH fresh requests (--days 90)
#    into a new empty ledger and into the big one, the order alternating
#    from round to round; per round the change, then the median.
#    Goal: within 10 % of the empty ledger.
# 4. (b) Times, as whole processes (one python3 process spawning them, a
#    different key each run), RUNS runs of `ledger show SERIAL` (a real and
#    a synthetic token), `ledger list --machine CMID` (a real and a
#    synthetic machine), `entitlement show E` (10 and 1,000 seats): warm
#    (the ledger in the page cache, each key run once untimed first) and
#    cold (the ledger's pages dropped from the page cache with
#    posix_fadvise(DONTNEED) before each run; the binary stays cached).
#    Goal: median <= 20 ms.
# 5. (c) ROUNDS rounds of `token renew-bulk --expiring-within 30d --bundle`
#    (renewing the N tokens of step 2 again each round: a renewal keeps
#    their 20-day lifetime) and issue-bulk of N fresh requests (--days 90)
#    into the big ledger, the order alternating; per round renew/issue,
#    then the median. Goal: >= 0.8.
# 6. Prints the query plans (EXPLAIN QUERY PLAN, python3's sqlite3) of
#    those look-ups and of the renewal's three (the live tokens expiring by
#    the limit, their machines' later tokens, the due rows by serial; each
#    machine's newest and the order are chosen by tka, not SQLite).
# The work directory, the big ledger included, is removed at exit.
# Environment: TKA (the binary; default: build release), COUNT, N (default
# 100000), BATCH (default 10000), ROUNDS (default 3), RUNS (default 21),
# WORK (a directory to use and keep instead of a temporary one),
# ONLY=STEPS (with the WORK of an earlier complete run: run only the
# steps named, a comma list of a, b and c, on its big ledger again; e.g.
# `ONLY=a,b` on a quiet machine after a generation that ran under load).
set -eu

lean=
COUNT=${COUNT:-}
for a in "$@"; do
    case "$a" in
        --ten-million) lean=--lean; COUNT=${COUNT:-10000000} ;;
        *) echo "usage: $0 [--ten-million]" >&2; exit 2 ;;
    esac
done
COUNT=${COUNT:-1000000}
N=${N:-100000}
BATCH=${BATCH:-10000}
ROUNDS=${ROUNDS:-3}
RUNS=${RUNS:-21}
if [ -z "${TKA:-}" ]; then
    cargo build --release --quiet --bin tka --bin tka-full
    TKA="$(pwd)/target/release/tka"
fi
command -v python3 >/dev/null || { echo "python3 not found (the timer)" >&2; exit 2; }
if [ -n "${WORK:-}" ]; then
    work=$WORK
    mkdir -p "$work"
else
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    trap 'exit 130' INT TERM
fi
unset TKA_HOME TKA_LEDGER_URL
big="$work/big.sqlite"

per_token=2300
[ -n "$lean" ] && per_token=600
need=$((COUNT / 1000 * per_token / 1000 + 2048))
avail=$(($(df -Pk "$work" | awk 'NR == 2 { print $4 }') / 1024))
echo "disk: $avail MiB free in $(df -P "$work" | awk 'NR == 2 { print $6 }'), about $need MiB needed"
[ "$avail" -ge "$need" ] || { echo "not enough free disk for COUNT=$COUNT" >&2; exit 2; }

now() { date +%s.%N; }
rate() { awk -v n="$1" -v a="$2" -v b="$3" 'BEGIN { printf "%.0f", n / (b - a) }'; }
load() { cut -d' ' -f1 /proc/loadavg; }
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.4f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
size() { du -m "$1" | cut -f1; }
drop_ledger() { rm -f "$1" "$1-wal" "$1-shm"; }
# The next generated machine's number, kept in the work directory so that
# a run with ONLY= also makes machines the ledger has never seen.
first=0
[ -f "$work/first" ] && first=$(cat "$work/first")
requests() { # FILE COUNT: fresh generated requests (machines never used before in this run)
    rm -f "$1"
    "$TKA" request generate-test --product bench --count "$2" --first "$first" --out "$1" >/dev/null
    first=$((first + $2))
    echo "$first" >"$work/first"
}
# issue LEDGER REQUESTS DAYS [ENTITLEMENT]: prints tokens/s; the bundle is left in $work/out.jsonl
issue() {
    n=$(wc -l <"$2")
    rm -f "$work/out.jsonl"
    sync
    a=$(now)
    "$TKA" token issue-bulk --home "$work/home" --ledger "$1" --entitlement "${4:-bench}" --days "$3" \
        --requests-file "$2" --bundle "$work/out.jsonl" --quiet >/dev/null
    b=$(now)
    rate "$n" "$a" "$b"
}

# (b): times the look-ups on $big.
lookups() {
echo "(b) look-ups on the ledger of $(python3 -c 'import sqlite3, sys; print(sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True).execute("SELECT count(*) FROM tokens").fetchone()[0])' "$big") tokens ($(size "$big") MiB), whole processes, $RUNS runs each, a different key per run, ms:"
python3 - "$RUNS" "$TKA" "$big" "$work/real.txt" "$COUNT" <<'EOF'
import os, random, sqlite3, statistics, sys, time
runs, tka, big, real, fill_max = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
null = os.open(os.devnull, os.O_WRONLY)
pairs = [line.split() for line in open(real)]
db = sqlite3.connect(f"file:{big}?mode=ro", uri=True)
fill = [db.execute("SELECT serial, cmid FROM tokens WHERE rowid = ?", (random.randint(1, fill_max),)).fetchone()
        for _ in range(runs)]
db.close()
real_keys = random.sample(pairs, runs)
def cold():
    for suffix in ("", "-wal", "-shm"):
        try:
            fd = os.open(big + suffix, os.O_RDONLY)
        except FileNotFoundError:
            continue
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        os.close(fd)
def run(args):
    t0 = time.perf_counter_ns()
    pid = os.posix_spawn(tka, [tka, *args], os.environ, file_actions=[(os.POSIX_SPAWN_DUP2, null, 1)])
    _, status, ru = os.wait4(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"tka {' '.join(args)} failed")
    cpu.append((ru.ru_utime + ru.ru_stime) * 1e3)
    return (time.perf_counter_ns() - t0) / 1e6
cases = [
    ("ledger show SERIAL (a real token)", [["ledger", "show", s, "--ledger", big] for s, _ in real_keys]),
    ("ledger show SERIAL (a synthetic token)", [["ledger", "show", s, "--ledger", big] for s, _ in fill]),
    ("ledger list --machine CMID (a real machine)", [["ledger", "list", "--machine", c, "--ledger", big] for _, c in real_keys]),
    ("ledger list --machine CMID (a synthetic machine)", [["ledger", "list", "--machine", c, "--ledger", big] for _, c in fill]),
    ("entitlement show small (10 seats)", [["entitlement", "show", "small", "--ledger", big]] * runs),
    ("entitlement show medium (1,000 seats)", [["entitlement", "show", "medium", "--ledger", big]] * runs),
]
cpu = []
def show(times):
    return f"median {statistics.median(times):5.1f} (min {min(times):5.1f}, max {max(times):6.1f})"
for name, commands in cases:
    warm, cpu = [], []
    for args in commands:
        run(args)
        cpu.pop()
        warm.append(run(args))
    warm_cpu, cpu = cpu, []
    cold_times = []
    for args in commands:
        cold()
        cold_times.append(run(args))
    worst = max(statistics.median(warm), statistics.median(cold_times))
    print(f"  {name}: warm {show(warm)}, CPU {statistics.median(warm_cpu):.1f}; cold {show(cold_times)}, CPU {statistics.median(cpu):.1f}"
          f" -> {'met' if worst <= 20 else 'NOT met'} (goal: median wall <= 20)")
EOF
# The cold runs dropped the ledger from the page cache: read it back (untimed).
cat "$big" >/dev/null
echo "  load $(load); for scale, tka --version: $(python3 -c '
import os, statistics, sys, time
null = os.open(os.devnull, os.O_WRONLY)
t, c = [], []
for _ in range(21):
    t0 = time.perf_counter_ns()
    pid = os.posix_spawn(sys.argv[1], [sys.argv[1], "--version"], os.environ, file_actions=[(os.POSIX_SPAWN_DUP2, null, 1)])
    _, _, ru = os.wait4(pid, 0)
    t.append((time.perf_counter_ns() - t0) / 1e6)
    c.append((ru.ru_utime + ru.ru_stime) * 1e3)
print(f"median {statistics.median(t):.1f} ms, CPU {statistics.median(c):.1f} ms")' "$TKA")"
}

# (a): issuance into the big ledger against an empty one.
step_a() {
echo "(a) issue-bulk of $BATCH requests (--bundle), a new empty ledger against the big one, alternating:"
: >"$work/r_a"
: >"$work/big_rates"
i=1
while [ "$i" -le "$ROUNDS" ]; do
    l0=$(load)
    requests "$work/reqs.txt" "$BATCH"
    drop_ledger "$work/empty.sqlite"
    "$TKA" entitlement add --ledger "$work/empty.sqlite" --product bench --machines 9000000 --name bench >/dev/null
    if [ $((i % 2)) = 1 ]; then
        e=$(issue "$work/empty.sqlite" "$work/reqs.txt" 90)
        b=$(issue "$big" "$work/reqs.txt" 90)
        order="empty first"
    else
        b=$(issue "$big" "$work/reqs.txt" 90)
        e=$(issue "$work/empty.sqlite" "$work/reqs.txt" 90)
        order="big first"
    fi
    drop_ledger "$work/empty.sqlite"
    echo "$b" >>"$work/big_rates"
    awk -v a="$e" -v b="$b" 'BEGIN { printf "%.4f\n", (b - a) * 100 / a }' >>"$work/r_a"
    echo "  round $i ($order, load $l0): empty $e tokens/s, big $b tokens/s ($(tail -n 1 "$work/r_a" | awk '{ printf "%+.1f%%", $1 }'))"
    i=$((i + 1))
done
rm -f "$work/out.jsonl"
echo "  median change: $(median <"$work/r_a" | awk '{ printf "%+.1f%%", $1 }') (goal: no worse than -10%)"
}

# (c): renewal of the N due tokens against issuance, both into the big ledger.
# renew: renews every due token of the big ledger, prints tokens/s
renew() {
    rm -f "$work/renew.jsonl"
    sync
    a=$(now)
    "$TKA" token renew-bulk --home "$work/home" --ledger "$big" --expiring-within 30d \
        --bundle "$work/renew.jsonl" --quiet >/dev/null
    z=$(now)
    renewed=$(wc -l <"$work/renew.jsonl")
    rm -f "$work/renew.jsonl"
    [ "$renewed" = "$N" ] || { echo "renew-bulk renewed $renewed tokens, expected $N" >&2; exit 1; }
    rate "$renewed" "$a" "$z"
}
step_c() {
echo "(c) renew-bulk --expiring-within 30d (--bundle) of the $N due tokens against issue-bulk of $N fresh requests, both into the big ledger, alternating:"
: >"$work/r_c"
i=1
while [ "$i" -le "$ROUNDS" ]; do
    l0=$(load)
    requests "$work/reqs.txt" "$N"
    if [ $((i % 2)) = 1 ]; then
        rr=$(renew)
        ri=$(issue "$big" "$work/reqs.txt" 90)
        order="renewal first"
    else
        ri=$(issue "$big" "$work/reqs.txt" 90)
        rr=$(renew)
        order="issuance first"
    fi
    rm -f "$work/out.jsonl"
    awk -v r="$rr" -v b="$ri" 'BEGIN { printf "%.4f\n", r / b }' >>"$work/r_c"
    echo "  round $i ($order, load $l0): renew-bulk $rr tokens/s, issue-bulk $ri tokens/s, ratio $(tail -n 1 "$work/r_c" | awk '{ printf "%.2f", $1 }')"
    i=$((i + 1))
done
echo "  median ratio: $(median <"$work/r_c" | awk '{ printf "%.2f", $1 }') (goal: >= 0.80); ledger now $(size "$big") MiB"
}

if [ -n "${ONLY:-}" ]; then
    [ -n "${WORK:-}" ] && [ -f "$big" ] && [ -f "$work/real.txt" ] && [ -d "$work/home" ] ||
        { echo "ONLY= needs the WORK directory of an earlier complete run" >&2; exit 2; }
    echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, load $(load), tka $("$TKA" --version | cut -d' ' -f2), steps $ONLY"
    for step in $(echo "$ONLY" | tr ',' ' '); do
        case "$step" in
            a) step_a ;;
            b) lookups ;;
            c) step_c ;;
            *) echo "ONLY: unknown step $step (a, b or c)" >&2; exit 2 ;;
        esac
    done
    exit 0
fi

echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, load $(load), tka $("$TKA" --version | cut -d' ' -f2)"
"$TKA" issuer init --home "$work/home" --root-bits 2048 --ca-bits 2048 --insecure-no-passphrase --org bench >/dev/null
drop_ledger "$big"
t0=$(now)
"$TKA" ledger bench-fill --ledger "$big" --count "$COUNT" $lean >/dev/null
t1=$(now)
echo "1. bench-fill${lean:+ --lean} of $COUNT tokens: $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f s", b - a }')," \
    "ledger $(size "$big") MiB ($(awk -v s="$(stat -c %s "$big")" -v n="$COUNT" 'BEGIN { printf "%.0f", s / n }') bytes per token)"

"$TKA" entitlement add --ledger "$big" --product bench --machines 9000000 --name bench >/dev/null
"$TKA" entitlement add --ledger "$big" --product bench --machines 10 --name small >/dev/null
"$TKA" entitlement add --ledger "$big" --product bench --machines 1000 --name medium >/dev/null
requests "$work/reqs.txt" "$N"
r=$(issue "$big" "$work/reqs.txt" 20)
python3 -c 'import json, sys
for line in open(sys.argv[1]):
    t = json.loads(line)
    print(t["serial"], t["cmid"])' "$work/out.jsonl" >"$work/real.txt"
requests "$work/reqs.txt" 10
issue "$big" "$work/reqs.txt" 200 small >/dev/null
requests "$work/reqs.txt" 1000
issue "$big" "$work/reqs.txt" 200 medium >/dev/null
rm -f "$work/out.jsonl"
echo "2. issue-bulk of $N renewable tokens (--days 20) into the $COUNT-token ledger: $r tokens/s; ledger now $(size "$big") MiB"

step_a

lookups

step_c

echo "query plans (EXPLAIN QUERY PLAN, SQLite $(python3 -c 'import sqlite3; print(sqlite3.sqlite_version)')):"
python3 - "$big" <<'EOF'
import sqlite3, sys
db = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
sel = """SELECT t.serial FROM tokens t JOIN jws_headers h ON h.id = t.header_id
         LEFT JOIN revocations r ON r.serial = t.serial"""
queries = [
    ("ledger show SERIAL", f"{sel} WHERE t.serial = 'S'"),
    ("ledger list --machine CMID", f"{sel} WHERE TRUE AND t.cmid = 'C' ORDER BY t.issued_at, t.serial"),
    ("entitlement show E: its seats", "SELECT cmid, counted_at FROM seats WHERE entitlement_id = 1 ORDER BY counted_at, cmid"),
    ("renew-bulk: 1. live tokens expiring by the limit",
     """SELECT t.serial, t.cmid, t.product, t.entitlement_id, t.expires
          FROM tokens t LEFT JOIN revocations r ON r.serial = t.serial
         WHERE t.released_at IS NULL AND r.serial IS NULL AND t.expires IS NOT NULL AND t.expires <= 1
           AND (CAST(NULL AS BIGINT) IS NULL OR t.entitlement_id = NULL)
           AND (CAST(NULL AS TEXT) IS NULL OR t.product = NULL)"""),
    ("renew-bulk: 2. their machines' later live tokens (4,096 CMIDs a statement)",
     """SELECT DISTINCT n.cmid, n.product, n.entitlement_id
          FROM tokens n LEFT JOIN revocations nr ON nr.serial = n.serial
         WHERE n.released_at IS NULL AND nr.serial IS NULL AND (n.expires IS NULL OR n.expires > 1)
           AND n.cmid IN (SELECT value FROM json_each('["C"]'))"""),
    ("renew-bulk: 3. the due tokens' rows (4,096 serials a statement)",
     """SELECT t.serial, t.entitlement_id, t.product, t.cmid, t.components, t.issued_at, t.expires, t.header_id, t.body
          FROM tokens t WHERE t.serial IN (SELECT value FROM json_each('["S"]'))"""),
]
for name, q in queries:
    print(f"  {name}:")
    for row in db.execute(f"EXPLAIN QUERY PLAN {q}"):
        print(f"    {row[3]}")
EOF
echo "done $(date -u '+%H:%M UTC'), load $(load)"
