#!/usr/bin/env bash
# bench/ping.sh: fanout ping beside fping, zmap and the seed's Python thread
# pool, in one run, each tool at its fastest settings and each checked for the
# number of live hosts it found. Run by hand, as root, inside the lab:
#
#   bench/lab.sh up && bench/lab.sh exec bash bench/ping.sh; bench/lab.sh down
#
# In the lab 127.0.0.0/16 (and every other 127.x except 127.1) answers and
# 127.1.0.0/16 drops echo requests. Traffic stays on the namespace's loopback.
set -uo pipefail
cd "$(dirname "$0")/.."

if [ -z "${FANOUT_LAB:-}" ]; then
	echo "ping.sh: run inside the lab: bench/lab.sh exec bash bench/ping.sh" >&2
	exit 2
fi
[ -x /usr/bin/time ] || apt-get install -y time >/dev/null
for tool in fping python3 ping; do
	command -v $tool >/dev/null || { echo "ping.sh: $tool not found" >&2; exit 2; }
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# FANOUT_BIN names a prebuilt binary; by default this tree is built.
FANOUT=${FANOUT_BIN:-$work/fanout}
[ -n "${FANOUT_BIN:-}" ] || go build -o "$FANOUT" ./cmd/fanout || exit 1
go build -o "$work/ping_floor" ./bench/ping_floor || exit 1

echo "== bench/ping.sh $(date -u +%FT%TZ) on $(nproc) cores, lab namespace $FANOUT_LAB"
echo "uptime at start: $(uptime)"

# run NAME WANT CMD...: runs CMD under GNU time; its stdout, one live host
# per line, is counted; prints wall, CPU, peak RSS, hosts found and whether
# that is the expected WANT. Sets WALL, RSS and FOUND.
run() {
	local name=$1 want=$2
	shift 2
	/usr/bin/time -f "%e %U %S %M %x" -o "$work/time" "$@" >"$work/out" 2>"$work/err"
	# GNU time starts with "Command exited with non-zero status N" then.
	read -r WALL user sys RSS code < <(tail -1 "$work/time")
	FOUND=$(sort -u "$work/out" | grep -c .)
	local ok=ok
	[ "$FOUND" = "$want" ] || ok="WRONG (want $want)"
	printf '  %-44s %7.2f s wall %6.2f s cpu %7.1f MB peak  %8d found  %s  exit %s\n' \
		"$name" "$WALL" "$(echo "$user + $sys" | bc)" "$(echo "scale=1; $RSS / 1024" | bc)" "$FOUND" "$ok" "$code"
	local e
	e=$(grep -v '^ *$' "$work/err" | head -1)
	[ -n "$e" ] && printf '  %-44s stderr: %s\n' "" "$e"
	return 0
}

ratio() { echo "scale=2; $1 / $2" | bc; }

# fping -c prints per-host statistics; a host with replies has min/avg/max.
fping_count_alive() { fping "$@" 2>&1 | grep 'min/avg/max' | cut -d' ' -f1; }
export -f fping_count_alive

# The seed's thread pool (bench/threadpool.py) prints "HOST up|down".
pool_alive() { python3 bench/threadpool.py "$@" | awk '$2 == "up" { print $1 }'; }
export -f pool_alive

# zmap writes raw frames on lo; where the kernel does not deliver them (as in
# this lab namespace) it finds nothing, and the bench says so.
zmap_alive() {
	zmap -q -M icmp_echoscan -i lo -S 127.0.0.1 -G 00:00:00:00:00:00 -b /dev/null \
		-r 0 -c 1 -o - "$@" 2>/dev/null
}
export -f zmap_alive

echo
echo "(a) 127.0.0.0/16 live, one echo request per host, live hosts printed (fping -a)"
run "fping -a -q -i 0 -r 0 -g 127.0.0.0 127.0.255.255" 65536 \
	fping -a -q -i 0 -r 0 -g 127.0.0.0 127.0.255.255
fping_wall=$WALL
# --all-addresses: the 65,536 addresses of fping's range, .0 and .255 included.
run "fanout ping -q --alive --all-addresses 127.0.0.0/16" 65536 "$FANOUT" ping -q --alive --all-addresses 127.0.0.0/16
fanout_wall=$WALL
fanout16_rss=$RSS
echo "  fanout is $(ratio "$fping_wall" "$fanout_wall")x faster than fping (want >= 1.3x, and exactly 65536 found)"
echo "  (fping -i 0 has 65,535 sequence numbers, each held 10 s: it misses a host and exits 4)"
run "floor: bare Go loop, one raw socket, sendto" 65536 "$work/ping_floor"
floor_wall=$WALL
echo "  fanout takes $(ratio "$fanout_wall" "$WALL")x the floor's time on this machine now"
if command -v zmap >/dev/null; then
	run "zmap -M icmp_echoscan -i lo -r 0 -c 1" 65536 bash -c 'zmap_alive "$@"' _ 127.0.0.0/16
	if [ "$FOUND" = 0 ]; then
		echo "  zmap sent its probes from a packet socket, but in this namespace the kernel counts them"
		echo "  received on lo (IpInReceives) and delivers none (no reply, no error counter): no figure"
	else
		echo "  fanout is $(ratio "$WALL" "$fanout_wall")x faster than zmap"
	fi
else
	echo "  zmap not installed (apt-get install -y zmap)"
fi
echo "  nmap -sn: not comparable on loopback: nmap marks loopback targets up without sending a probe"

echo
echo "(b) 127.1.0.0/20 dead (4,094 hosts: fping -g and fanout both leave out .0 and .255), 1 s timeout, no retries"
run "fping -a -q -i 0 -r 0 -t 1000 -g 127.1.0.0/20" 0 fping -a -q -i 0 -r 0 -t 1000 -g 127.1.0.0/20
fping_wall=$WALL
run "fanout ping -q --alive --timeout 1s 127.1.0.0/20" 0 "$FANOUT" ping -q --alive --timeout 1s 127.1.0.0/20
echo "  fanout wall $WALL s (want <= 1.15 s); fping/fanout = $(ratio "$fping_wall" "$WALL")"

echo
echo "(c) ping -c 3 -i 1 -W 1 semantics over 255 hosts"
for kind in live dead; do
	if [ $kind = live ]; then net=127.0.0; want=255; else net=127.1.0; want=0; fi
	echo " $kind: $net.1-255"
	run "fanout ping --count 3 --interval 1s --timeout 1s" $want \
		"$FANOUT" ping -q --alive --count 3 --interval 1s --timeout 1s "$net.1-255"
	fanout_wall=$WALL
	run "fping -c 3 -p 1000 -i 0 -t 1000" $want bash -c 'fping_count_alive "$@"' _ -q -c 3 -p 1000 -i 0 -t 1000 -g "$net.1" "$net.255"
	fping_wall=$WALL
	seq 1 255 | sed "s/^/$net./" >"$work/hosts"
	run "python thread pool, 255 x ping -c 3 -W 1" $want bash -c 'pool_alive "$@"' _ 255 "$work/hosts"
	if [ $kind = live ]; then goal="want <= 2.1 s"; else goal="about 3 s: requests at 0, 1, 2 s, the last waits 1 s"; fi
	echo "  fanout $fanout_wall s ($goal); fping/fanout = $(ratio "$fping_wall" "$fanout_wall"); pool/fanout = $(ratio "$WALL" "$fanout_wall")"
done

echo
echo "(d) scale: 1,048,576 targets, every one live"
echo "  (127.16.0.0/12: the lab's 127.0.0.0/12 holds its dead 127.1.0.0/16; every 127.x answers alike)"
run "fanout ping -q --alive --all-addresses 127.16.0.0/12" 1048576 "$FANOUT" ping -q --alive --all-addresses 127.16.0.0/12
echo "  the floor's /16 time x 16 = $(echo "$floor_wall * 16" | bc) s on this machine now"
echo "  fanout /12 wall $WALL s (want < 10 s); peak RSS /16 $(echo "scale=1; $fanout16_rss / 1024" | bc) MB, /12 $(echo "scale=1; $RSS / 1024" | bc) MB (want < 50 MB, flat in N)"
echo "  fping: refuses ranges over 131,072 addresses (and holds 33 MB for a /16, see (a))"

echo
echo "uptime at end: $(uptime)"
