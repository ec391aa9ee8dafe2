#!/usr/bin/env bash
# bench/store.sh: what --db costs a sweep. 65,536 loopback ICMP targets with
# and without --db, alternating, in one run; prints every run, the medians
# and their ratio (the goal: with --db at most 1.10x without). Run by hand,
# as root, inside the lab:
#
#   bench/lab.sh up && bench/lab.sh exec bash bench/store.sh; bench/lab.sh down
#
# ROUNDS (default 11) pairs of runs; TARGETS (default 127.0.0.0/16).
# IDLE_AB=1 adds a third run per round: --db committing at normal priority
# (FANOUT_STORE_NOIDLE=1), to see whether the SCHED_IDLE commit thread pays.
# BASE_BIN=PATH (a fanout built from another commit, e.g. main's) adds its
# own pair of runs to every round, interleaved with the others, and prints
# its ratio beside this one's: before and after a change under the same load.
# PROFILE=DIR writes a CPU profile of the warm-up runs, without and with --db,
# to DIR/plain.prof and DIR/db.prof, and prints where the CPU went.
# fanout is built with -tags fanout_debug (its hooks act only on those
# variables, none of which the timed runs set but FANOUT_STORE_NOIDLE).
set -uo pipefail
cd "$(dirname "$0")/.."

if [ -z "${FANOUT_LAB:-}" ]; then
	echo "store.sh: run inside the lab: bench/lab.sh exec bash bench/store.sh" >&2
	exit 2
fi
[ -x /usr/bin/time ] || apt-get install -y time >/dev/null

ROUNDS=${ROUNDS:-11}
TARGETS=${TARGETS:-127.0.0.0/16}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
FANOUT=${FANOUT_BIN:-$work/fanout}
IDLE_AB=${IDLE_AB:-0}
PROFILE=${PROFILE:-}
BASE_BIN=${BASE_BIN:-}
if [ -n "$BASE_BIN" ] && [ ! -x "$BASE_BIN" ]; then
	echo "store.sh: BASE_BIN=$BASE_BIN is not an executable" >&2
	exit 2
fi
[ -n "${FANOUT_BIN:-}" ] || go build -tags fanout_debug -o "$FANOUT" ./cmd/fanout || exit 1

echo "== bench/store.sh $(date -u +%FT%TZ) on $(nproc) cores, lab namespace $FANOUT_LAB"
echo "uptime at start: $(uptime)"
echo "sweep: fanout ping -q -o jsonl --output-file /dev/null $TARGETS (x$ROUNDS each, alternating)"

# one NAME ARGS...: runs fanout ping with ARGS, prints wall/cpu/rss and the
# results stored (for --db), appends the wall time to $work/NAME and the cpu
# time to $work/NAME.cpu.
one() {
	local name=$1
	shift
	local env=() bin=$FANOUT
	[ "$name" = db-noidle ] && env=(FANOUT_STORE_NOIDLE=1)
	case $name in *-base) bin=$BASE_BIN ;; esac
	# Wall time from the shell's microsecond clock: GNU time's %e has 10 ms
	# steps, 2% of this sweep.
	local t0=$EPOCHREALTIME
	env "${env[@]}" /usr/bin/time -f "%e %U %S %M" -o "$work/time" "$bin" ping -q -o jsonl --output-file /dev/null "$@" "$TARGETS" 2>"$work/err"
	local code=$? t1=$EPOCHREALTIME
	read -r _ user sys rss < <(tail -1 "$work/time")
	local wall; wall=$(echo "${t1/./} - ${t0/./}" | bc | awk '{printf "%.4f", $1/1e6}')
	echo "$wall" >>"$work/$name"
	echo "$user + $sys" | bc >>"$work/$name.cpu"
	local stored=""
	if [ "${name%-base}" != plain ] && [ "$name" != warmup ]; then
		stored=$("$bin" sweeps -o jsonl "$work/bench.db" | tail -1 | sed -E 's/.*"done":([0-9]+).*"up":([0-9]+).*/\1 stored, \2 up/')
	fi
	printf '  %-8s %7.3f s wall %6.2f s cpu %7.1f MB peak  exit %s  %s\n' \
		"$name" "$wall" "$(echo "$user + $sys" | bc)" "$(echo "scale=1; $rss / 1024" | bc)" "$code" "$stored"
	grep -v '^ *$' "$work/err" | grep -v '^sweep ' | head -2 | sed 's/^/           stderr: /'
}

median() { sort -n "$1" | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

one warmup >/dev/null # page cache, ARP-free loopback, binary in memory
if [ -n "$PROFILE" ]; then
	mkdir -p "$PROFILE"
	FANOUT_CPUPROFILE=$PROFILE/plain.prof "$FANOUT" ping -q -o jsonl --output-file /dev/null "$TARGETS" 2>/dev/null
	rm -f "$work"/bench.db*
	FANOUT_CPUPROFILE=$PROFILE/db.prof "$FANOUT" ping -q -o jsonl --output-file /dev/null --db "$work/bench.db" "$TARGETS" 2>/dev/null
	for p in plain db; do
		echo "== CPU profile, $p: $PROFILE/$p.prof (go tool pprof -top $FANOUT $PROFILE/$p.prof)"
		go tool pprof -top -nodecount 15 "$FANOUT" "$PROFILE/$p.prof" 2>/dev/null | sed -n '4,22p'
	done
	cp "$FANOUT" "$PROFILE/fanout"
fi
for i in $(seq "$ROUNDS"); do
	rm -f "$work"/bench.db*
	if [ $((i % 2)) = 1 ]; then
		one plain
		one db --db "$work/bench.db"
	else
		one db --db "$work/bench.db"
		one plain
	fi
	if [ "$IDLE_AB" = 1 ]; then
		rm -f "$work"/bench.db*
		one db-noidle --db "$work/bench.db"
	fi
	if [ -n "$BASE_BIN" ]; then
		rm -f "$work"/bench.db*
		if [ $((i % 2)) = 1 ]; then
			one db-base --db "$work/bench.db"
			one plain-base
		else
			one plain-base
			one db-base --db "$work/bench.db"
		fi
	fi
done
plain=$(median "$work/plain")
db=$(median "$work/db")
echo "median without --db: ${plain} s"
echo "median with    --db: ${db} s"
echo "ratio (with/without): $(echo "scale=3; $db / $plain" | bc | sed 's/^\./0./')  (goal <= 1.10)"
# CPU time is steadier than wall time on a shared machine: what --db costs.
plaincpu=$(median "$work/plain.cpu")
dbcpu=$(median "$work/db.cpu")
printf 'median cpu without --db: %.2f s, with: %.2f s, ratio %.3f\n' "$plaincpu" "$dbcpu" "$(echo "scale=3; $dbcpu / $plaincpu" | bc)"
if [ "$IDLE_AB" = 1 ]; then
	noidle=$(median "$work/db-noidle")
	echo "median with --db, commits at normal priority: ${noidle} s, ratio $(echo "scale=3; $noidle / $plain" | bc | sed 's/^\./0./') (vs $(echo "scale=3; $db / $plain" | bc | sed 's/^\./0./') on the idle thread)"
fi
if [ -n "$BASE_BIN" ]; then
	pb=$(median "$work/plain-base")
	dbb=$(median "$work/db-base")
	echo "BASE_BIN $BASE_BIN: median without --db ${pb} s, with ${dbb} s, ratio $(echo "scale=3; $dbb / $pb" | bc | sed 's/^\./0./')"
	printf 'BASE_BIN median cpu without --db: %.2f s, with: %.2f s, ratio %.3f\n' "$(median "$work/plain-base.cpu")" "$(median "$work/db-base.cpu")" \
		"$(echo "scale=3; $(median "$work/db-base.cpu") / $(median "$work/plain-base.cpu")" | bc)"
fi
echo "uptime at end: $(uptime)"
