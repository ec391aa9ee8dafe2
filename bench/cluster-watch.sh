#!/bin/sh
# bench/cluster-watch.sh [N]: a watch on the cluster, by hand (needs root).
#
# On the latency-bound fleet of bench/cluster.sh (bench/clusterfleet: every
# SYN-ACK held 50 ms by an NFQUEUE verdict delay, inside a namespace of this
# script), a tcp watch of N (default 30000) targets run by 1, 3 and 6
# workers, each -c 100, each round's share started at once (--spread=false:
# the capacity, not the pacing): the shortest interval (whole seconds) at which no
# round is late (a round is late when it ends after the next one is due),
# over rounds 2 to ROUNDS (default 5; round 1 is a warm-up). Intervals are
# tried upwards from 70% of the ideal (N / (2000 x workers) seconds). The
# target: at least 2.5x shorter with 3 workers than with 1. Each trial is
# bounded: ROUNDS + 2 intervals, then the watch is stopped.
#
# Each trial runs on a fresh cluster (a server on an empty store, new
# workers), all killed and waited for after it: no trial inherits the
# previous one's rounds still running or draining, nor its stored results.
#
# Then (PARTS "ssh"): watch ssh on the cluster against the in-process fleet
# (internal/lab/cmd/sshfleet) with every banner held 50 ms: SSH_N (default
# 2000) hosts, 3 workers -c 100 --max-connections SSH_N (each keeps a
# connection to every host it owns, whatever its share), every SSH_EVERY
# (default 10) seconds, for
# ROUNDS rounds: the fleet's count of TCP connections accepted after round 1
# and at the end (kept connections: no new one while membership holds), and
# the workers' CPU per host-round over rounds 2..ROUNDS beside round 1's.
# PARTS (default "tcp ssh") picks the parts.
#
# Everything runs on loopback inside a network namespace this script
# creates; nothing leaves the machine. Needs iptables (apt-get install -y
# iptables) for the NFQUEUE rule.
set -eu
N=${1:-30000}
ROUNDS=${ROUNDS:-5}
PARTS=${PARTS:-tcp ssh}
SSH_N=${SSH_N:-2000}
SSH_EVERY=${SSH_EVERY:-10}
want() { case " $PARTS " in *" $1 "*) return 0 ;; esac; return 1; }
ROOT=$(cd "$(dirname "$0")/.." && pwd)
NS=fanout-cwatchbench
PORT=7777
[ "$(id -u)" = 0 ] || { echo "cluster-watch.sh: needs root (ip netns, iptables)" >&2; exit 1; }
command -v iptables >/dev/null || { echo "cluster-watch.sh: needs iptables (apt-get install -y iptables)" >&2; exit 1; }
command -v bc >/dev/null || { echo "cluster-watch.sh: needs bc" >&2; exit 1; }
[ "$N" -ge 1 ] && [ "$N" -le 65536 ] || { echo "cluster-watch.sh: N must be 1..65536" >&2; exit 2; }
[ "$ROUNDS" -ge 2 ] && [ "$ROUNDS" -le 20 ] || { echo "cluster-watch.sh: ROUNDS must be 2..20" >&2; exit 2; }
[ "$SSH_N" -ge 1 ] && [ "$SSH_N" -le 65536 ] || { echo "cluster-watch.sh: SSH_N must be 1..65536" >&2; exit 2; }

T=$(mktemp -d)
PIDS=""
cleanup() {
	for p in $PIDS; do kill "$p" 2>/dev/null || true; done
	for p in $PIDS; do wait "$p" 2>/dev/null || true; done
	ip netns del "$NS" 2>/dev/null || true
	rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

bg() { "$@" & PIDS="$PIDS $!"; LAST=$!; }
stop() { # pid: TERM, then KILL if it has not exited within 30 s; waited for
	kill "$1" 2>/dev/null || true
	_polls=0
	while kill -0 "$1" 2>/dev/null && [ $_polls -lt 600 ]; do
		_polls=$((_polls + 1))
		sleep 0.05
	done
	kill -9 "$1" 2>/dev/null || true
	wait "$1" 2>/dev/null || true
}
waitlog() { # file pattern seconds: wait for pattern in file
	_polls=0
	until grep -q "$2" "$1" 2>/dev/null; do
		_polls=$((_polls + 1))
		[ $_polls -le $(($3 * 20)) ] || return 1
		sleep 0.05
	done
}

echo "== build"
(cd "$ROOT" && go build -o "$T/fanout" ./cmd/fanout && go build -o "$T/fleet" ./bench/clusterfleet && go build -o "$T/sshfleet" ./internal/lab/cmd/sshfleet)
F=$T/fanout
echo "uptime before: $(uptime)"

ip netns add "$NS"
ip -n "$NS" link set lo up
ip netns exec "$NS" iptables -A OUTPUT -p tcp --sport $PORT --tcp-flags SYN,ACK SYN,ACK -j NFQUEUE --queue-num 7 --queue-bypass
ns() { ip netns exec "$NS" "$@"; }
bg ip netns exec "$NS" "$T/fleet" -listen 0.0.0.0:$PORT -queue 7 -delay 50ms >"$T/fleet.log" 2>&1
waitlog "$T/fleet.log" ready 20 || { echo "fleet not ready" >&2; cat "$T/fleet.log" >&2; exit 1; }

last=$((N - 1))
TARGETS="127.0.0.0-127.$((last >> 16 & 255)).$((last >> 8 & 255)).$((last & 255))"

# cluster W TAG: a fresh cluster for one trial: a server on an empty store
# and W workers -c 100, each started and ready. Sets URL and CLUSTER (pids).
cluster() {
	_p=$((4400 + $1))
	rm -rf "$T/store-$2"
	bg ip netns exec "$NS" "$F" server --listen 127.0.0.1:$_p --store "$T/store-$2" 2>"$T/server-$2.log"
	CLUSTER=$LAST
	waitlog "$T/server-$2.log" "ready on" 30 || { cat "$T/server-$2.log" >&2; exit 1; }
	_i=1
	while [ $_i -le "$1" ]; do
		bg ip netns exec "$NS" "$F" worker --server nats://127.0.0.1:$_p -c 100 --name "w$_i" 2>"$T/worker-$2-$_i.log"
		CLUSTER="$LAST $CLUSTER" # workers first, the server last
		waitlog "$T/worker-$2-$_i.log" "pulling tasks" 30 || { cat "$T/worker-$2-$_i.log" >&2; exit 1; }
		_i=$((_i + 1))
	done
	URL=nats://127.0.0.1:$_p
}

# uncluster TAG: end the trial's cluster: every worker, then the server,
# killed and waited for (kill waits for each process to exit: no round of
# the trial's watch still runs, drains or stores anywhere), and its store
# removed. The next trial starts from nothing.
uncluster() {
	for _x in $CLUSTER; do stop "$_x"; done
	rm -rf "$T/store-$1"
	CLUSTER=""
}

# trial W EVERY: 0 when rounds 2..ROUNDS of a watch every EVERY s, run by W
# workers of a fresh cluster, were on time.
trial() {
	cluster "$1" "$1-$2"
	id=$(ns "$F" watch tcp -p $PORT --every "${2}s" --timeout 1s --spread=false --server "$URL" --detach "$TARGETS" 2>"$T/submit.log") || { cat "$T/submit.log" >&2; exit 1; }
	bg ip netns exec "$NS" "$F" watch events --server "$URL" "$id" >/dev/null 2>"$T/events-$id.log"
	ev=$LAST
	ok=0
	if waitlog "$T/events-$id.log" "^round $ROUNDS:" $((($ROUNDS + 2) * $2 + 30)); then
		r=2
		while [ $r -le "$ROUNDS" ]; do
			grep "^round $r:" "$T/events-$id.log" | grep -q "on time" || ok=1
			r=$((r + 1))
		done
	else
		ok=1 # the rounds did not even end in time
	fi
	stop "$ev"
	ns "$F" watch stop --server "$URL" "$id" 2>/dev/null || true
	uncluster "$1-$2"
	grep "^round" "$T/events-$id.log" | sed "s/^/    /" >&2
	return $ok
}

shortest() { # workers -> the shortest on-time interval, in $T/every-$1
	w=$1
	every=$(echo "x = 0.7 * $N / (2000 * $w); scale=0; if (x < 1) 1 else (x + 0.999) / 1" | bc -l)
	while :; do
		echo "  $w workers, every ${every}s (load $(cut -d" " -f1-3 /proc/loadavg)):" >&2
		if trial "$w" "$every"; then break; fi
		[ "$every" -lt 120 ] || { echo "cluster-watch.sh: $w workers late even every ${every}s" >&2; exit 1; }
		every=$(echo "scale=0; ($every * 5 + 3) / 4" | bc) # +25%, at least +1
	done
	echo "$every" >"$T/every-$w"
}

if want tcp; then
	echo
	echo "== shortest on-time interval: a tcp watch of $N targets, SYN-ACK held 50 ms, -c 100 per worker"
	echo "   (each trial on a fresh cluster: a new server on an empty store and new workers, all killed and"
	echo "   waited for after the trial, so no trial inherits the last one's rounds, backlog or results)"
	for w in 1 3 6; do
		shortest $w
		printf '%d worker(s): every %ss (ideal %.1fs)\n' $w "$(cat "$T/every-$w")" "$(echo "$N / (2000 * $w)" | bc -l)"
	done
	E1=$(cat "$T/every-1") E3=$(cat "$T/every-3") E6=$(cat "$T/every-6")
	R3=$(echo "$E1 / $E3" | bc -l)
	printf 'interval 1 vs 3 workers: %.2fx shorter (target >= 2.50x): %s\n' "$R3" "$(echo "$R3 >= 2.5" | bc -l | sed 's/1/PASS/;s/0/FAIL/')"
	printf 'interval 1 vs 6 workers: %.2fx shorter\n' "$(echo "$E1 / $E6" | bc -l)"
fi

# cpu PIDS...: user+system seconds of the processes so far.
cpu() {
	_t=0
	for _p in "$@"; do
		_t=$(echo "$_t + $(awk '{ print $14 + $15 }' "/proc/$_p/stat")" | bc)
	done
	echo "scale=3; $_t / $(getconf CLK_TCK)" | bc
}
# accepted: the fleet's count of TCP connections so far.
accepted() {
	# Counted before the signal: the fleet may print before grep reads.
	_before=$(grep -c "sshfleet: accepted" "$T/sshfleet.log" || true)
	kill -USR1 "$SSHFLEET"
	_polls=0
	until [ "$(grep -c "sshfleet: accepted" "$T/sshfleet.log" || true)" -gt "$_before" ]; do
		_polls=$((_polls + 1))
		[ $_polls -le 200 ] || break
		sleep 0.05
	done
	grep "sshfleet: accepted" "$T/sshfleet.log" | tail -1 | awk '{ print $3 }' | tr -d ,
}
if want ssh; then
	echo
	# Each worker keeps up to SSH_N connections (--max-connections): at
	# least the hosts it owns (about SSH_N / 3, more while a worker is
	# missing), so what is counted is reuse, not the LRU bound of -c.
	KEEP=$SSH_N
	echo "== watch ssh on the cluster: $SSH_N fleet hosts, banner held 50 ms, 3 workers -c 100 --max-connections $KEEP, every ${SSH_EVERY}s, $ROUNDS rounds"
	ssh-keygen -q -t ed25519 -N '' -f "$T/id"
	bg ip netns exec "$NS" "$T/sshfleet" -listen 0.0.0.0:2200 -handshake-delay 50ms -known-hosts "$T/known" -authorized-keys "$T/id.pub" -for 15m >"$T/sshfleet.log" 2>&1
	SSHFLEET=$LAST
	waitlog "$T/sshfleet.log" "listening on port" 20 || { cat "$T/sshfleet.log" >&2; exit 1; }
	p=4420
	bg ip netns exec "$NS" "$F" server --listen 127.0.0.1:$p --store "$T/store-ssh" 2>"$T/server-ssh.log"
	srv=$LAST
	waitlog "$T/server-ssh.log" "ready on" 30 || { cat "$T/server-ssh.log" >&2; exit 1; }
	ws=""
	for i in 1 2 3; do
		bg ip netns exec "$NS" "$F" worker --server nats://127.0.0.1:$p -c 100 --max-connections "$KEEP" --name "s$i" --allow ssh \
			-F none --no-agent --identity "$T/id" --known-hosts "$T/known" 2>"$T/worker-ssh-$i.log"
		ws="$ws $LAST"
		waitlog "$T/worker-ssh-$i.log" "pulling tasks" 30 || { cat "$T/worker-ssh-$i.log" >&2; exit 1; }
	done
	last=$((SSH_N - 1))
	hosts="127.2.0.0-127.2.$((last >> 8 & 255)).$((last & 255))"
	id=$(ns "$F" watch ssh --server nats://127.0.0.1:$p --every "${SSH_EVERY}s" --spread=false -p 2200 -l bench --detach "$hosts" -- echo hello world 2>"$T/submit-ssh.log") || { cat "$T/submit-ssh.log" >&2; exit 1; }
	bg ip netns exec "$NS" "$F" watch events --server nats://127.0.0.1:$p "$id" >/dev/null 2>"$T/events-ssh.log"
	ev=$LAST
	waitlog "$T/events-ssh.log" "^round 1:" $((SSH_EVERY * 3 + 60)) || { echo "round 1 never ended" >&2; cat "$T/events-ssh.log" >&2; exit 1; }
	c1=$(cpu $ws)
	a1=$(accepted)
	waitlog "$T/events-ssh.log" "^round $ROUNDS:" $(((ROUNDS + 2) * SSH_EVERY + 60)) || { echo "round $ROUNDS never ended" >&2; cat "$T/events-ssh.log" >&2; exit 1; }
	c2=$(cpu $ws)
	a2=$(accepted)
	stop "$ev"
	ns "$F" watch stop --server nats://127.0.0.1:$p "$id" 2>/dev/null || true
	grep "^round" "$T/events-ssh.log" | sed "s/^/    /"
	for x in $ws; do stop "$x"; done
	stop "$srv"
	stop "$SSHFLEET"
	echo "connections accepted by the fleet: $a1 after round 1, $a2 after round $ROUNDS (want $SSH_N and $SSH_N: kept)"
	printf 'workers CPU: round 1 %.3f ms per host; rounds 2-%d %.3f ms per host-round (%.2fx round 1)\n' \
		"$(echo "$c1 * 1000 / $SSH_N" | bc -l)" "$ROUNDS" "$(echo "($c2 - $c1) * 1000 / ($SSH_N * ($ROUNDS - 1))" | bc -l)" \
		"$(echo "($c2 - $c1) / ($ROUNDS - 1) / $c1" | bc -l)"
fi
echo "uptime after: $(uptime)"
