#!/usr/bin/env bash
# SSH polling cost (issue #16): N hosts (default 1,000) played by one real
# OpenSSH sshd (the bench/ssh.sh set-up: port 2222 on 0.0.0.0, every
# 127.0.x.y a host), ROUNDS rounds (default 5) of `echo hello world` back to
# back, the ssh job built once and kept (as fanout watch ssh keeps it):
#   fanout, connections kept (rounds 2-5 open a session each);
#   fanout -reconnect (every round connects anew);
#   asyncssh keeping its connections (bench/ssh_asyncssh_reuse.py), if
#   python3-asyncssh is installed.
# Per round: wall, hosts up, client CPU per host-round, machine busy per
# host-round; then rounds 2-5 against round 1, and the issue's targets:
#   fanout's rounds 2-5 cost the machine at most 30% of its round 1;
#   client CPU per host-round <= 0.2x asyncssh-with-reuse's;
#   round wall <= asyncssh-with-reuse's.
# By hand, as root, inside the lab namespace (sshd listens on 0.0.0.0):
#   bench/lab.sh up && bench/lab.sh exec bash bench/ssh-reuse.sh [N]
# Environment: ROUNDS (default 5, at most 20), C (fanout's sessions in
# flight, default N), ASYNC_C (asyncssh's, default 128: bench/ssh.sh's tuned
# fan-out; at 1,000 at once, 622 of its connects timed out at 60 s on a
# loaded machine), KEX and KEY as in bench/ssh.sh. A tool that does not
# reach every host in every round is reported, and its figures are not
# compared.
set -euo pipefail
cd "$(dirname "$0")/.."
die() { echo "bench/ssh-reuse.sh: $*" >&2; exit 2; }
[ "$(id -u)" = 0 ] || die "needs root (sshd, mount namespace for a plain .bashrc)"
[ -n "${FANOUT_LAB:-}" ] || [ -n "${FORCE:-}" ] ||
	die "run inside the lab namespace (sshd listens on 0.0.0.0): bench/lab.sh up && bench/lab.sh exec bash bench/ssh-reuse.sh"
N=${1:-1000}
ROUNDS=${ROUNDS:-5}
C=${C:-$N}
ASYNC_C=${ASYNC_C:-128}
[ "$N" -ge 1 ] && [ "$N" -le 20000 ] || die "N from 1 to 20000"
[ "$ROUNDS" -ge 2 ] && [ "$ROUNDS" -le 20 ] || die "ROUNDS from 2 to 20"
PORT=2222
KEX=${KEX:-ecdh-sha2-nistp256}
KEY=${KEY:-ecdsa}
ASYNC=
/usr/bin/python3 -c 'import asyncssh' 2>/dev/null && ASYNC=1

tmp=$(mktemp -d)
SSHD_PID=
cleanup() {
	[ -n "$SSHD_PID" ] && kill "$SSHD_PID" 2>/dev/null && wait "$SSHD_PID" 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT
go build -o "$tmp/sshrounds" ./bench/sshrounds

ssh-keygen -q -t "$KEY" -N '' -C bench -f "$tmp/id"
ssh-keygen -q -t "$KEY" -N '' -C benchhost -f "$tmp/host"
cp "$tmp/id.pub" "$tmp/authorized_keys"
echo "[127.*]:$PORT $(cut -d' ' -f1,2 "$tmp/host.pub")" >"$tmp/known_hosts"
mkdir -p /run/sshd
# MaxSessions is per connection: one session a round here.
cat >"$tmp/sshd_config" <<CONF
Port $PORT
ListenAddress 0.0.0.0
HostKey $tmp/host
PidFile $tmp/sshd.pid
AuthorizedKeysFile $tmp/authorized_keys
StrictModes no
UsePAM no
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
MaxStartups 10000
MaxSessions 100
PerSourceMaxStartups none
UseDNS no
PrintMotd no
PrintLastLog no
X11Forwarding no
LogLevel ERROR
CONF
cat >"$tmp/ssh_config" <<CONF
Host *
  Port $PORT
  User root
  IdentityFile $tmp/id
  IdentitiesOnly yes
  UserKnownHostsFile $tmp/known_hosts
  GlobalKnownHostsFile /dev/null
  StrictHostKeyChecking yes
  KexAlgorithms $KEX
CONF
printf '# plain .bashrc for the ssh bench\n' >"$tmp/bashrc"
unshare --mount --propagation private sh -c \
	"mount --bind '$tmp/bashrc' /root/.bashrc && exec /usr/sbin/sshd -D -e -f '$tmp/sshd_config'" \
	2>"$tmp/sshd.log" &
SSHD_PID=$!
for _ in $(seq 50); do
	ssh -F "$tmp/ssh_config" -o BatchMode=yes 127.0.0.1 true 2>/dev/null && break
	sleep 0.1
done
ssh -F "$tmp/ssh_config" -o BatchMode=yes 127.0.0.1 true || { cat "$tmp/sshd.log"; die "sshd did not answer"; }

awk -v n="$N" 'BEGIN{for(i=0;i<n;i++) printf "127.0.%d.%d\n", 1+int(i/256), i%256}' >"$tmp/hosts"
echo "uptime: $(uptime)"
echo "N = $N hosts on one sshd, $ROUNDS rounds back to back, -c $C, echo hello world; key exchange $KEX, keys $KEY"

# Each run under a bound: rounds of N hosts at ~25 ms of sshd each, with room.
limit=$((ROUNDS * N / 5 + 300))
timeout "$limit" "$tmp/sshrounds" -c "$C" -rounds "$ROUNDS" -F "$tmp/ssh_config" "@$tmp/hosts" -- echo hello world | tee "$tmp/kept"
timeout "$limit" "$tmp/sshrounds" -c "$C" -rounds "$ROUNDS" -reconnect -F "$tmp/ssh_config" "@$tmp/hosts" -- echo hello world | tee "$tmp/reconnect"
if [ -n "$ASYNC" ]; then
	timeout "$limit" /usr/bin/python3 bench/ssh_asyncssh_reuse.py "$ASYNC_C" "$ROUNDS" "$tmp/hosts" "$PORT" root "$tmp/id" "$tmp/known_hosts" "$KEX" echo hello world | tee "$tmp/async"
else
	echo "  (python3-asyncssh not installed: no asyncssh anchor; apt-get install -y python3-asyncssh)"
fi

get() { awk -v k="$2" '/^RESULT/{for(i=3;i<=NF;i++){split($i,a,"="); if(a[1]==k) print a[2]}}' "$1"; }
check() { # check LABEL VALUE OP LIMIT
	local ok; ok=$(awk -v v="$2" -v l="$4" -v op="$3" 'BEGIN{print ((op == "<=" && v <= l) || (op == ">=" && v >= l)) ? "ok" : "MISSED"}')
	printf "  %-60s %8s  (target %s %s)  %s\n" "$1" "$2" "$3" "$4" "$ok"
}
echo
echo "rounds 2-$ROUNDS:  [$(uptime | sed 's/.*load/load/')]"
# complete FILE: every round reached every host.
complete() { ! grep -E ' round [0-9]+: wall +[0-9.]+s ' "$1" | grep -v " up $N/$N " | grep -q .; }
for f in kept reconnect ${ASYNC:+async}; do
	complete "$tmp/$f" || { echo "  $f: not every host answered in every round (above): its figures are not compared"; }
done
complete "$tmp/async" 2>/dev/null || ASYNC=
check "fanout kept: machine busy, rounds 2-$ROUNDS / round 1" "$(get "$tmp/kept" busy_ratio)" "<=" 0.30
check "fanout kept / -reconnect: machine busy per host-round" \
	"$(awk -v a="$(get "$tmp/kept" busy_ms)" -v b="$(get "$tmp/reconnect" busy_ms)" 'BEGIN{printf "%.3f", a/b}')" "<=" 1
if [ -n "$ASYNC" ]; then
	check "fanout kept / asyncssh kept: client cpu per host-round" \
		"$(awk -v a="$(get "$tmp/kept" cpu_ms)" -v b="$(get "$tmp/async" cpu_ms)" 'BEGIN{printf "%.3f", a/b}')" "<=" 0.2
	check "fanout kept / asyncssh kept: round wall" \
		"$(awk -v a="$(get "$tmp/kept" wall)" -v b="$(get "$tmp/async" wall)" 'BEGIN{printf "%.3f", a/b}')" "<=" 1
fi
