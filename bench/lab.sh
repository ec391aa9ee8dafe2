#!/bin/sh
# lab.sh up|down|exec CMD...: the lab network namespace by hand, for benchmarks.
# Same namespace as internal/lab builds for tests, under the fixed name
# fanout-lab: 127.0.0.0/16 answers, 127.1.0.0/16 drops ICMP echo and TCP SYN.
set -eu
NS=${FANOUT_LAB_NS:-fanout-lab}

usage() { echo "usage: $0 up|down|status|exec CMD [ARGS...]" >&2; exit 2; }

up() {
	if ip netns list | grep -qx "$NS\( .*\)\?"; then
		echo "lab: namespace $NS already up" >&2
		return 0
	fi
	ip netns add "$NS"
	# Anything failing after add must not leave a half-built namespace.
	trap 'ip netns del "$NS" 2>/dev/null' EXIT
	ip -n "$NS" link set lo up
	# Input hook, not output: an output drop makes sendto fail with EPERM.
	ip netns exec "$NS" nft -f - <<'RULES'
table inet fanoutlab {
	chain input {
		type filter hook input priority 0; policy accept;
		ip daddr 127.1.0.0/16 icmp type echo-request drop
		ip daddr 127.1.0.0/16 tcp flags & (syn | ack) == syn drop
	}
}
RULES
	ip netns exec "$NS" sh -c "echo '0 2147483647' > /proc/sys/net/ipv4/ping_group_range"
	trap - EXIT
	echo "lab: namespace $NS up (live 127.0.0.0/16, dead 127.1.0.0/16)" >&2
}

down() {
	if ip netns list | grep -qx "$NS\( .*\)\?"; then
		ip netns del "$NS"
		echo "lab: namespace $NS removed" >&2
	fi
}

[ $# -ge 1 ] || usage
[ "$(id -u)" = 0 ] || { echo "lab: needs root (ip netns)" >&2; exit 1; }
cmd=$1; shift
case $cmd in
up) up ;;
down) down ;;
status) ip netns list | grep -x "$NS\( .*\)\?" && ip netns exec "$NS" nft list table inet fanoutlab ;;
exec)
	[ $# -ge 1 ] || usage
	ip netns list | grep -qx "$NS\( .*\)\?" || { echo "lab: namespace $NS is not up (run: $0 up)" >&2; exit 1; }
	FANOUT_LAB=$NS exec ip netns exec "$NS" "$@" ;;
*) usage ;;
esac
