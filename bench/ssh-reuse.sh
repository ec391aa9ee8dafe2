#!/usr/bin/env bash
# SSH polling cost (issue #16): N hosts (default 1,000) played by one real
# OpenSSH sshd (the bench/ssh.sh set-up: port 2222 on 0.0.0.0, every
# 127.0.x.y a host), ROUNDS rounds (default 5) of `echo hello world` back to
# back, the ssh job built once and kept (as fanout watch ssh keeps it):
#   fanout, connections kept (rounds 2-5 open a session each);
#   fanout -reconnect (every round connects anew);
#   asyncssh keeping its connections (bench/ssh_asyncssh_reuse.py), if
#   python3-asyncssh is installed;
#   fanout watch ssh itself (the command line, rounds back to back),
#   measured per round from its summary lines;
#   pssh with OpenSSH ControlPersist (a master connection per host, kept
#   for the next rounds), if pssh is installed (apt-get install -y pssh).
# Per round: wall, hosts up, client CPU per host-round, machine busy per
# host-round; then rounds 2-5 against round 1, and the issue's targets:
#   fanout's rounds 2-5 cost the machine at most 30% of its round 1;
#   client CPU per host-round <= 0.2x asyncssh-with-reuse's;
#   round wall <= asyncssh-with-reuse's;
#   round wall at least 3x shorter than pssh with ControlPersist.
# The comparisons use fanout watch ssh's figures.
# By hand, as root, inside the lab namespace (sshd listens on 0.0.0.0):
#   bench/lab.sh up && bench/lab.sh exec bash bench/ssh-reuse.sh [N]
# Environment: ROUNDS (default 5, at most 20), C (fanout's sessions in
# flight, default N), PSSH_P (pssh's -p, default 256: bench/ssh.sh's),
# FANOUT_BIN (a built fanout), ASYNC_C (asyncssh's, default 128: bench/ssh.sh's tuned
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
PSSH_P=${PSSH_P:-256}
ASYNC=
/usr/bin/python3 -c 'import asyncssh' 2>/dev/null && ASYNC=1
PSSH=
command -v parallel-ssh >/dev/null && PSSH=1
HZ=$(getconf CLK_TCK)

tmp=$(mktemp -d /tmp/sshr.XXXX) # short: ControlPath sockets live under it
SSHD_PID=
WATCH_PID=
cleanup() {
	set +e
	[ -n "$WATCH_PID" ] && kill "$WATCH_PID" 2>/dev/null
	# pssh's ControlPersist masters, by pid (their command names our dir)
	for p in $(pgrep -f "$tmp/cm/" 2>/dev/null); do kill "$p" 2>/dev/null; done
	[ -n "$SSHD_PID" ] && kill "$SSHD_PID" 2>/dev/null && wait "$SSHD_PID" 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT
go build -o "$tmp/sshrounds" ./bench/sshrounds
FANOUT=${FANOUT_BIN:-$tmp/fanout}
[ -n "${FANOUT_BIN:-}" ] || go build -o "$FANOUT" ./cmd/fanout

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

# busy: the machine's busy seconds so far (/proc/stat: user, nice, system,
# irq, softirq, steal); pcpu PID...: the user+system seconds of those
# processes so far (0 for one gone).
busy() { awk -v hz="$HZ" 'NR == 1 { printf "%.3f", ($2 + $3 + $4 + $7 + $8 + $9) / hz; exit }' /proc/stat; }
pcpu() {
	local p sum=0
	for p in "$@"; do
		[ -r "/proc/$p/stat" ] || continue
		sum=$(awk -v hz="$HZ" -v s="$sum" '{ sub(/^.*\) /, ""); printf "%.3f", s + ($12 + $13) / hz }' "/proc/$p/stat" 2>/dev/null || echo "$sum")
	done
	echo "$sum"
}
# report LABEL FILE: per-round lines "ROUND WALL UP CPU BUSY" (seconds)
# in FILE, printed as sshrounds prints them, and its RESULT line.
report() {
	awk -v label="$1" -v n="$N" -v rounds="$ROUNDS" '
	{
		printf "  %-18s round %d: wall %7.2fs  up %d/%d  client cpu %6.3f ms/host  machine busy %6.2f ms/host\n", label, $1, $2, $3, n, 1000 * $4 / n, 1000 * $5 / n
		if ($1 == 1) { w1 = $2; c1 = $4; b1 = $5 } else { w += $2 / (rounds - 1); c += $4 / (rounds - 1); b += $5 / (rounds - 1) }
	}
	END {
		if (NR < rounds || w1 == 0 || c1 == 0 || b1 == 0) { print "  " label ": " NR " of " rounds " rounds measured"; exit }
		printf "  %-18s rounds 2-%d vs round 1: wall %.3f, client cpu %.3f, machine busy %.3f\n", label, rounds, w / w1, c / c1, b / b1
		gsub(/ /, "_", label)
		printf "RESULT %s wall=%.3f cpu_ms=%.4f busy_ms=%.4f busy_ratio=%.4f\n", label, w, 1000 * c / n, 1000 * b / n, b / b1
	}' "$2"
}

# fanout watch ssh, the command line: --every 10ms, so that each round is
# late and starts as the one before ends (back to back), no spread; each
# round measured between its summary line and the one before (the watch's
# CPU, the machine's busy time).
echo
echo "fanout watch ssh: $ROUNDS rounds"
: >"$tmp/watch.rounds"
# One round more than measured: the last is read while the watch runs.
"$FANOUT" watch ssh -F "$tmp/ssh_config" --no-agent -c "$C" --every 10ms --spread=false --rounds $((ROUNDS + 1)) \
	"@$tmp/hosts" -- echo hello world >"$tmp/watch.out" 2>"$tmp/watch.err" &
WATCH_PID=$!
c0=$(pcpu "$WATCH_PID"); b0=$(busy)
deadline=$((SECONDS + limit))
for r in $(seq "$ROUNDS"); do
	until grep -q "^round $r:" "$tmp/watch.err"; do
		kill -0 "$WATCH_PID" 2>/dev/null && [ $SECONDS -lt $deadline ] || break 2
		sleep 0.05
	done
	c1=$(pcpu "$WATCH_PID"); b1=$(busy)
	# round R: T targets, U up, D down, E errors, C changes in W s, ...
	grep "^round $r:" "$tmp/watch.err" | awk -v r="$r" -v c="$(echo "$c1 - $c0" | bc)" -v b="$(echo "$b1 - $b0" | bc)" \
		'{ w = $0; sub(/.* in /, "", w); sub(/s,.*/, "", w); print r, w, $5, c, b }' >>"$tmp/watch.rounds"
	c0=$c1; b0=$b1
done
kill "$WATCH_PID" 2>/dev/null || true
wait "$WATCH_PID" 2>/dev/null || true
WATCH_PID=
[ "$(wc -l <"$tmp/watch.rounds")" = "$ROUNDS" ] || { echo "  fanout watch ssh did not finish its rounds:"; tail -5 "$tmp/watch.err"; }
report "fanout watch ssh" "$tmp/watch.rounds" | tee "$tmp/watch"

# pssh with OpenSSH ControlPersist: round 1 leaves a master connection per
# host, later rounds multiplex a session on it. Client CPU: pssh and its ssh
# clients (reaped children), and the masters (daemons: read from /proc).
if [ -n "$PSSH" ]; then
	echo
	echo "pssh -p $PSSH_P with ControlPersist: $ROUNDS rounds"
	mkdir -p "$tmp/cm"
	: >"$tmp/pssh.rounds"
	for r in $(seq "$ROUNDS"); do
		m0=$(pcpu $(pgrep -f "$tmp/cm/")); b0=$(busy); t0=$(date +%s.%N)
		timeout "$limit" /usr/bin/time -f "%U %S" -o "$tmp/pssh.time" parallel-ssh -p "$PSSH_P" -t 120 -h "$tmp/hosts" \
			-x "-F $tmp/ssh_config -o BatchMode=yes -o ControlMaster=auto -o ControlPersist=600 -o ControlPath=$tmp/cm/%C" \
			echo hello world >"$tmp/pssh.out" 2>&1 || true
		t1=$(date +%s.%N); b1=$(busy); m1=$(pcpu $(pgrep -f "$tmp/cm/"))
		read -r pu ps < <(tail -1 "$tmp/pssh.time")
		echo "$r $(echo "$t1 - $t0" | bc) $(grep -c '\[SUCCESS\]' "$tmp/pssh.out") $(echo "$pu + $ps + $m1 - $m0" | bc) $(echo "$b1 - $b0" | bc)" >>"$tmp/pssh.rounds"
	done
	report "pssh ControlPersist" "$tmp/pssh.rounds" | tee "$tmp/pssh"
else
	echo "  (pssh not installed: no pssh ControlPersist anchor; apt-get install -y pssh)"
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
WATCHED=1
for f in kept reconnect watch ${ASYNC:+async} ${PSSH:+pssh}; do
	complete "$tmp/$f" && get "$tmp/$f" wall | grep -q . ||
		{ echo "  $f: not every host answered in every round, or rounds missing (above): its figures are not compared"; }
done
{ complete "$tmp/async" && get "$tmp/async" wall | grep -q .; } 2>/dev/null || ASYNC=
{ complete "$tmp/pssh" && get "$tmp/pssh" wall | grep -q .; } 2>/dev/null || PSSH=
{ complete "$tmp/watch" && get "$tmp/watch" wall | grep -q .; } || WATCHED=
ratio() { awk -v a="$(get "$1" "$3")" -v b="$(get "$2" "$3")" 'BEGIN{printf "%.3f", a/b}'; }
check "fanout kept (sshrounds): machine busy, rounds 2-$ROUNDS / round 1" "$(get "$tmp/kept" busy_ratio)" "<=" 0.30
check "fanout kept / -reconnect (sshrounds): machine busy per host-round" "$(ratio "$tmp/kept" "$tmp/reconnect" busy_ms)" "<=" 1
if [ -n "$WATCHED" ]; then
	check "fanout watch ssh: machine busy, rounds 2-$ROUNDS / round 1" "$(get "$tmp/watch" busy_ratio)" "<=" 0.30
	if [ -n "$ASYNC" ]; then
		check "fanout watch ssh / asyncssh kept: client cpu per host-round" "$(ratio "$tmp/watch" "$tmp/async" cpu_ms)" "<=" 0.2
		check "fanout watch ssh / asyncssh kept: round wall" "$(ratio "$tmp/watch" "$tmp/async" wall)" "<=" 1
	fi
	if [ -n "$PSSH" ]; then
		check "pssh ControlPersist / fanout watch ssh: round wall" "$(ratio "$tmp/pssh" "$tmp/watch" wall)" ">=" 3
		check "fanout watch ssh / pssh ControlPersist: client cpu per host-round" "$(ratio "$tmp/watch" "$tmp/pssh" cpu_ms)" "<=" 1
	fi
fi
echo "uptime at end: $(uptime)"
