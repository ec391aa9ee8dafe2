#!/bin/sh
# bench/cluster.sh [N]: fanout's cluster mode, by hand (needs root).
#
# 1. Scaling on a latency-bound fleet: N (default 30000) tcp connects to a
#    fleet whose every SYN-ACK is held 50 ms (bench/clusterfleet: an NFQUEUE
#    verdict delay, inside a namespace of this script), each worker capped at
#    -c 100: 1 vs 3 vs 6 workers. The ideal is 2000 targets/s per worker;
#    the target is >= 2.5x from 1 to 3 workers. A local run with -c 100 (one
#    process, no cluster) is printed beside it.
# 2. Overhead of the cluster path: the same ICMP /16 sweep (65,536 live
#    loopback hosts in the lab namespace) run locally and through a server
#    and one worker with the same -c (default), 5 interleaved rounds;
#    goal: median under 25% slower.
# 3. The embedded server's start-up time (fresh store), median of 5.
# PARTS (default 123) picks the parts to run, e.g. PARTS=2 sh bench/cluster.sh.
#
# Everything runs on loopback inside network namespaces this script (or
# bench/lab.sh) creates; nothing leaves the machine. iptables is needed for
# the NFQUEUE rule (nftables' own queue expression is not built into every
# kernel): apt-get install -y iptables.
set -eu
N=${1:-30000}
PARTS=${PARTS:-123}
want() { case "$PARTS" in *"$1"*) return 0 ;; esac; return 1; }
ROOT=$(cd "$(dirname "$0")/.." && pwd)
NS=fanout-clusterbench
PORT=7777
[ "$(id -u)" = 0 ] || { echo "cluster.sh: needs root (ip netns, iptables)" >&2; exit 1; }
command -v iptables >/dev/null || { echo "cluster.sh: needs iptables (apt-get install -y iptables)" >&2; exit 1; }
[ "$N" -ge 1 ] && [ "$N" -le 65536 ] || { echo "cluster.sh: N must be 1..65536" >&2; exit 2; }

T=$(mktemp -d)
PIDS=""
LAB_UP=0
cleanup() {
	for p in $PIDS; do kill "$p" 2>/dev/null || true; done
	for p in $PIDS; do wait "$p" 2>/dev/null || true; done
	ip netns del "$NS" 2>/dev/null || true
	[ "$LAB_UP" = 1 ] && "$ROOT/bench/lab.sh" down || true
	rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

now() { date +%s.%N; }
p50() { grep -o '"rtt_ms":[0-9.]*' "$1" | cut -d: -f2 | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
secs() { echo "$2 - $1" | bc -l; }
fmt() { printf '%.2f' "$1"; }
# bg runs a command (not a shell function: its pid must be the program's)
# in the background and remembers it for cleanup.
bg() { "$@" & PIDS="$PIDS $!"; LAST=$!; }
stop() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }
waitlog() { # file pattern: wait up to 20s for pattern in file
	_polls=0 # sh has no locals: a name no caller uses
	until grep -q "$2" "$1" 2>/dev/null; do
		_polls=$((_polls + 1))
		[ $_polls -le 400 ] || { echo "cluster.sh: timeout waiting for '$2' in $1:" >&2; cat "$1" >&2; exit 1; }
		sleep 0.05
	done
}

echo "== build"
(cd "$ROOT" && go build -o "$T/fanout" ./cmd/fanout && go build -o "$T/fleet" ./bench/clusterfleet)
F=$T/fanout
echo "uptime before: $(uptime)"

if want 1; then
ip netns add "$NS"
ip -n "$NS" link set lo up
ip netns exec "$NS" iptables -A OUTPUT -p tcp --sport $PORT --tcp-flags SYN,ACK SYN,ACK -j NFQUEUE --queue-num 7 --queue-bypass
ns() { ip netns exec "$NS" "$@"; }
bg ip netns exec "$NS" "$T/fleet" -listen 0.0.0.0:$PORT -queue 7 -delay 50ms >"$T/fleet.log" 2>&1
FLEET=$LAST
waitlog "$T/fleet.log" ready

last=$((N - 1))
TARGETS="127.$((last >> 16 & 255)).$((last >> 8 & 255)).$((last & 255))"
TARGETS="127.0.0.0-$TARGETS"

echo
echo "== 1. scaling: $N tcp connects, SYN-ACK held 50 ms, -c 100 per worker"
t0=$(now)
ns "$F" tcp -p $PORT -c 100 -q --progress never -o jsonl "$TARGETS" >"$T/local.jsonl" || true
t1=$(now)
LOCAL=$(secs "$t0" "$t1")
[ "$(wc -l <"$T/local.jsonl")" = "$N" ] || { echo "local run: $(wc -l <"$T/local.jsonl") results, want $N" >&2; exit 1; }
printf 'local, one process -c 100:  %7ss  %7.0f targets/s  rtt p50 %s ms\n' "$(fmt "$LOCAL")" "$(echo "$N / $LOCAL" | bc -l)" "$(p50 "$T/local.jsonl")"
for c in 300 600; do
	t0=$(now)
	ns "$F" tcp -p $PORT -c $c -q --progress never -o jsonl "$TARGETS" >"$T/local-$c.jsonl" || true
	t1=$(now)
	s=$(secs "$t0" "$t1")
	printf 'local, one process -c %d:  %7ss  %7.0f targets/s  rtt p50 %s ms (the machine'"'"'s ceiling for %d workers)\n' $c "$(fmt "$s")" "$(echo "$N / $s" | bc -l)" "$(p50 "$T/local-$c.jsonl")" $((c / 100))
done

cluster_run() { # workers -> seconds in $T/secs-$1
	w=$1 p=$((4300 + w))
	bg ip netns exec "$NS" "$F" server --listen 127.0.0.1:$p --store "$T/store-$w" 2>"$T/server-$w.log"
	srv=$LAST
	waitlog "$T/server-$w.log" "ready on"
	ws=""
	i=1
	while [ $i -le "$w" ]; do
		bg ip netns exec "$NS" "$F" worker --server nats://127.0.0.1:$p -c 100 --name "w$i" 2>"$T/worker-$w-$i.log"
		ws="$ws $LAST"
		waitlog "$T/worker-$w-$i.log" "pulling tasks"
		i=$((i + 1))
	done
	t0=$(now)
	ns "$F" tcp -p $PORT -q --progress never -o jsonl --server nats://127.0.0.1:$p "$TARGETS" >"$T/cluster-$w.jsonl" 2>"$T/submit-$w.log" || true
	t1=$(now)
	got=$(wc -l <"$T/cluster-$w.jsonl")
	uniq=$(grep -o '"index":[0-9]*' "$T/cluster-$w.jsonl" | sort -u | wc -l)
	[ "$got" = "$N" ] && [ "$uniq" = "$N" ] || { echo "cluster, $w workers: $got results ($uniq distinct), want $N" >&2; cat "$T/submit-$w.log" >&2; exit 1; }
	for x in $ws; do stop "$x"; done
	stop "$srv"
	secs "$t0" "$t1" >"$T/secs-$w"
	echo "  ($w workers: results per worker: $(grep -o '"worker":"[^"]*"' "$T/cluster-$w.jsonl" | sort | uniq -c | awk '{printf "%s=%s ", substr($2,11,length($2)-11), $1}'))" >&2
}
cluster_run 1
C1=$(cat "$T/secs-1")
printf 'cluster, 1 worker  -c 100:  %7ss  %7.0f targets/s  rtt p50 %s ms\n' "$(fmt "$C1")" "$(echo "$N / $C1" | bc -l)" "$(p50 "$T/cluster-1.jsonl")"
cluster_run 3
C3=$(cat "$T/secs-3")
printf 'cluster, 3 workers -c 100:  %7ss  %7.0f targets/s  rtt p50 %s ms\n' "$(fmt "$C3")" "$(echo "$N / $C3" | bc -l)" "$(p50 "$T/cluster-3.jsonl")"
cluster_run 6
C6=$(cat "$T/secs-6")
printf 'cluster, 6 workers -c 100:  %7ss  %7.0f targets/s  rtt p50 %s ms\n' "$(fmt "$C6")" "$(echo "$N / $C6" | bc -l)" "$(p50 "$T/cluster-6.jsonl")"
R3=$(echo "$C1 / $C3" | bc -l)
R6=$(echo "$C1 / $C6" | bc -l)
printf 'throughput 3 vs 1 workers: %.2fx (target >= 2.50x): %s\n' "$R3" "$(echo "$R3 >= 2.5" | bc -l | sed 's/1/PASS/;s/0/FAIL/')"
printf 'throughput 6 vs 1 workers: %.2fx\n' "$R6"
printf '1 cluster worker vs local run, same -c: %.2fx the time\n' "$(echo "$C1 / $LOCAL" | bc -l)"
stop "$FLEET"
ip netns del "$NS"
fi

if want 2; then
echo
echo "== 2. overhead: ICMP sweep of 127.0.0.0/16 in the lab, local vs server + 1 worker"
if ! ip netns list | grep -q '^fanout-lab\b'; then
	"$ROOT/bench/lab.sh" up
	LAB_UP=1
fi
lab() { "$ROOT/bench/lab.sh" exec "$@"; }
# One server and one worker for all rounds (as a cluster would be), local and
# cluster runs interleaved so that both see the same machine load.
bg ip netns exec fanout-lab "$F" server --listen 127.0.0.1:4399 --store "$T/store-ping" 2>"$T/server-ping.log"
srv=$LAST
waitlog "$T/server-ping.log" "ready on"
bg ip netns exec fanout-lab "$F" worker --server nats://127.0.0.1:4399 --name pinger 2>"$T/worker-ping.log"
wk=$LAST
waitlog "$T/worker-ping.log" "pulling tasks"
: >"$T/ping-local"
: >"$T/ping-cluster"
for round in 1 2 3 4 5; do
	t0=$(now)
	lab "$F" ping -q --progress never -o jsonl --all-addresses 127.0.0.0/16 >"$T/ping-local.jsonl" || true
	t1=$(now)
	l=$(secs "$t0" "$t1")
	[ "$(wc -l <"$T/ping-local.jsonl")" = 65536 ] || { echo "local ping: $(wc -l <"$T/ping-local.jsonl") results" >&2; exit 1; }
	t0=$(now)
	lab "$F" ping -q --progress never -o jsonl --all-addresses --server nats://127.0.0.1:4399 127.0.0.0/16 >"$T/ping-cluster.jsonl" 2>"$T/submit-ping.log" || true
	t1=$(now)
	c=$(secs "$t0" "$t1")
	[ "$(wc -l <"$T/ping-cluster.jsonl")" = 65536 ] || { echo "cluster ping: $(wc -l <"$T/ping-cluster.jsonl") results" >&2; cat "$T/submit-ping.log" >&2; exit 1; }
	echo "$l" >>"$T/ping-local"
	echo "$c" >>"$T/ping-cluster"
	printf 'round %d: local %ss, cluster %ss (%.2fx)\n' "$round" "$(fmt "$l")" "$(fmt "$c")" "$(echo "$c / $l" | bc -l)"
done
stop "$wk"
stop "$srv"
med() { sort -n "$1" | sed -n 3p; }
best() { sort -n "$1" | sed -n 1p; }
ML=$(med "$T/ping-local")
MC=$(med "$T/ping-cluster")
OV=$(echo "($MC / $ML - 1) * 100" | bc -l)
printf 'median of 5: local %ss, cluster %ss: cluster path %+.1f%% (goal < +25%%): %s\n' "$(fmt "$ML")" "$(fmt "$MC")" "$OV" \
	"$(echo "$OV < 25" | bc -l | sed 's/1/PASS/;s/0/FAIL/')"
printf 'best of 5:   local %ss, cluster %ss: %+.1f%%\n' "$(fmt "$(best "$T/ping-local")")" "$(fmt "$(best "$T/ping-cluster")")" \
	"$(echo "($(best "$T/ping-cluster") / $(best "$T/ping-local") - 1) * 100" | bc -l)"
fi

if want 3; then
echo
echo "== 3. embedded server start-up (fresh store, 127.0.0.1)"
for i in 1 2 3 4 5; do
	bg "$F" server --listen 127.0.0.1:4398 --store "$T/store-start-$i" 2>"$T/start-$i.log"
	waitlog "$T/start-$i.log" "ready on"
	stop "$LAST"
	sed -n 's/.* in \([0-9.]*\) ms.*/\1/p' "$T/start-$i.log"
done | sort -n >"$T/startup"
printf 'start-up (New to ready): %s ms median; all: %s\n' "$(sed -n 3p "$T/startup")" "$(tr '\n' ' ' <"$T/startup")"
fi
echo
echo "uptime after: $(uptime)"
