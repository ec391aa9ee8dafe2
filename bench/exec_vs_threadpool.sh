#!/usr/bin/env bash
# fanout exec against the seed's Python thread pool, both running
# `ping -c 3 -W 1 HOST` over the same live loopback hosts, in one run.
# Prints wall, CPU (user+sys, children included) and peak RSS of each, and
# the ratios. Targets (issue #2):
#   255 hosts:  fanout wall <= 1.15 x one ping; fanout below the pool's wall, CPU, RSS
#   2048 hosts: fanout -c 2048 wall <= 2 x one ping
# Run by hand from the repository root: bench/exec_vs_threadpool.sh
# Loopback only (127.0.0.0/8); bounded: two sweeps of 255 and 2048 hosts.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v /usr/bin/time >/dev/null || { echo "needs GNU time: apt-get install -y time" >&2; exit 2; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go build -o "$tmp/fanout" ./cmd/fanout

# 127.0.0.1..255, and 2048 hosts 127.0.8.0..127.0.15.255 (all answer).
for i in $(seq 1 255); do echo "127.0.0.$i"; done >"$tmp/h255"
for a in $(seq 8 15); do for b in $(seq 0 255); do echo "127.0.$a.$b"; done; done >"$tmp/h2048"

# measure NAME CMD...: runs CMD under GNU time, stdout to $tmp/NAME.out;
# sets wall, cpu (s) and rss (MB) of NAME in the assoc arrays.
declare -A WALL CPU RSS
measure() {
	local name=$1; shift
	/usr/bin/time -f "%e %U %S %M" -o "$tmp/$name.time" "$@" >"$tmp/$name.out" 2>"$tmp/$name.err" || true
	read -r w u s m <"$tmp/$name.time" || { cat "$tmp/$name.time" "$tmp/$name.err" >&2; exit 1; }
	WALL[$name]=$w
	CPU[$name]=$(awk -v u="$u" -v s="$s" 'BEGIN{printf "%.2f", u+s}')
	RSS[$name]=$(awk -v m="$m" 'BEGIN{printf "%.1f", m/1024}')
	printf "  %-28s wall %6.2fs  cpu %6.2fs  peak rss %6.1f MB\n" "$name" "$w" "${CPU[$name]}" "${RSS[$name]}"
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b == 0) print "inf"; else printf "%.2f", a/b }'; }
check() { # check LABEL VALUE LIMIT
	local ok; ok=$(awk -v v="$2" -v l="$3" 'BEGIN{print (v <= l) ? "ok" : "MISSED"}')
	printf "  %-44s %6s  (target <= %s)  %s\n" "$1" "$2" "$3" "$ok"
}
count() { grep -c "$2" "$tmp/$1.out" || true; }

echo "uptime: $(uptime)"
echo "cores: $(nproc); ping: $(ping -V 2>&1 | head -1); ping_group_range: $(cat /proc/sys/net/ipv4/ping_group_range)"
echo "(GNU time's peak rss is the largest single process: fanout or python, not the pings)"
echo
echo "one ping:"
measure "ping -c 3 -W 1 127.0.0.1" ping -c 3 -W 1 127.0.0.1
PING=${WALL["ping -c 3 -W 1 127.0.0.1"]}

echo
echo "255 hosts (127.0.0.1-255):"
measure "threadpool.py 255 workers" python3 bench/threadpool.py 255 "$tmp/h255"
measure "fanout exec -c 255" "$tmp/fanout" exec -c 255 "@$tmp/h255" -- ping -c 3 -W 1 {}
echo "  up: threadpool $(count "threadpool.py 255 workers" ' up$')/255, fanout $(count "fanout exec -c 255" ' ok ')/255"
check "fanout wall / one ping" "$(ratio "${WALL["fanout exec -c 255"]}" "$PING")" 1.15
check "fanout wall / threadpool wall" "$(ratio "${WALL["fanout exec -c 255"]}" "${WALL["threadpool.py 255 workers"]}")" 1
check "fanout cpu / threadpool cpu" "$(ratio "${CPU["fanout exec -c 255"]}" "${CPU["threadpool.py 255 workers"]}")" 1
check "fanout peak rss / threadpool peak rss" "$(ratio "${RSS["fanout exec -c 255"]}" "${RSS["threadpool.py 255 workers"]}")" 1

echo
echo "2048 hosts (127.0.8.0-127.0.15.255):"
measure "threadpool.py 255 workers" python3 bench/threadpool.py 255 "$tmp/h2048"
measure "fanout exec -c 2048" "$tmp/fanout" exec -c 2048 "@$tmp/h2048" -- ping -c 3 -W 1 {}
echo "  up: threadpool $(count "threadpool.py 255 workers" ' up$')/2048, fanout $(count "fanout exec -c 2048" ' ok ')/2048"
check "fanout wall / one ping" "$(ratio "${WALL["fanout exec -c 2048"]}" "$PING")" 2
info() { printf "  %-44s %6s  (no target)\n" "$1" "$2"; }
info "fanout wall / threadpool wall" "$(ratio "${WALL["fanout exec -c 2048"]}" "${WALL["threadpool.py 255 workers"]}")"
info "fanout cpu / threadpool cpu" "$(ratio "${CPU["fanout exec -c 2048"]}" "${CPU["threadpool.py 255 workers"]}")"
info "fanout peak rss / threadpool peak rss" "$(ratio "${RSS["fanout exec -c 2048"]}" "${RSS["threadpool.py 255 workers"]}")"
echo
echo "uptime: $(uptime)"
echo
echo "control: the same 2048-wide sweep of a 2-second command with no network"
echo "(root's ping uses a raw ICMP socket, and the kernel offers every ICMP packet"
echo "to every raw socket, so each of 2048 pings in flight costs more than each of 255):"
measure "fanout exec -c 2048 sleep 2" "$tmp/fanout" exec -c 2048 "@$tmp/h2048" -- sleep 2
check "fanout wall / 2s" "$(ratio "${WALL["fanout exec -c 2048 sleep 2"]}" 2)" 2
echo
echo "uptime: $(uptime)"
