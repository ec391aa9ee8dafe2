#!/usr/bin/env bash
# bench/watch.sh: fanout watch in steady state, beside a one-shot sweep of the
# same set and beside Debian's blackbox_exporter, in one run. By hand, as root,
# inside the lab, on a quiet machine:
#
#   bench/lab.sh up && bench/lab.sh exec bash bench/watch.sh; bench/lab.sh down
#
# (a) a ping watch of the 65,536 live lab addresses every 5 s for 50 rounds:
#     peak RSS at round 50 vs round 5 (want within 5%: no growth), CPU per
#     round vs a one-shot `fanout ping` of the same set (want within 10%),
#     and no live target ever reported down (no change printed);
# (b) blackbox_exporter (one HTTP /probe per target per scrape, module icmp)
#     at 1,000 loopback targets, scraped 5 times, beside a 10-round fanout
#     watch of the same 1,000: exporter CPU per probe vs fanout CPU per
#     target-round (want < 0.05x), and targets each reported down;
# (c) SSH polling cost: bench/ssh-reuse.sh (1,000 hosts on one real OpenSSH
#     sshd, the bench/ssh.sh set-up, 5 rounds back to back): fanout watch
#     ssh beside asyncssh keeping its connections and pssh with OpenSSH
#     ControlPersist: rounds 2-5 machine cost vs round 1 (want <= 0.30),
#     client CPU per host-round vs asyncssh's (want <= 0.2x), round wall vs
#     asyncssh's (want <= 1x), and pssh's round wall vs fanout's (want >= 3x);
# (d) metrics: a ping watch of 10,000 lab targets every 2 s (per-target
#     series on), D_ROUNDS (30) rounds, scraped every 0.5 s: scrape time (want under
#     50 ms) and the watch's CPU per round with scrapes vs without, in all
#     and per scrape (want a scrape under 2% of a round).
#
# Bounded: (a) 51 rounds of 5 s (about 4-5 minutes, cut at 15), (b) 5,000
# probes and 10 rounds of 1 s (cut at 5 minutes), (c) as bench/ssh-reuse.sh
# bounds each tool, (d) two runs of D_ROUNDS (default 30) rounds of 2 s (each cut at
# minutes). ROUNDS=N shortens (a); AB_BIN=PATH runs, in (a), a second
# fanout binary's watch (an older build) at the same time on the same set,
# and prints its peak RSS at round 5 and ROUNDS beside ours (both then
# see each other's replies: (a)'s CPU figures are not a lone watch's);
# SCRAPE_GZIP=1 makes (d)'s scrapes ask
# for gzip, as Prometheus does; SSH_N=N and SSH_ROUNDS=R set (c)'s hosts
# and rounds (default 1000 and 5);
# PARTS="a b c d" chooses. (b) and (d) need curl, (b)
# prometheus-blackbox-exporter, (c) python3-asyncssh and pssh: apt-get
# install -y them before entering the lab (it has no network); without them
# those parts, or anchors, are skipped.
set -uo pipefail
cd "$(dirname "$0")/.."

if [ -z "${FANOUT_LAB:-}" ]; then
	echo "watch.sh: run inside the lab: bench/lab.sh exec bash bench/watch.sh" >&2
	exit 2
fi
[ -x /usr/bin/time ] || apt-get install -y time >/dev/null
command -v bc >/dev/null || apt-get install -y bc >/dev/null

work=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
	rm -rf "$work"
}
trap cleanup EXIT
FANOUT=${FANOUT_BIN:-$work/fanout}
[ -n "${FANOUT_BIN:-}" ] || go build -o "$FANOUT" ./cmd/fanout || exit 1
ROUNDS=${ROUNDS:-50}
# (d) rounds: D_ROUNDS (default 30); rounds 3..D_ROUNDS are measured.
D_ROUNDS=${D_ROUNDS:-30}
PARTS=${PARTS:-a b c d}
HZ=$(getconf CLK_TCK)
part() { case " $PARTS " in *" $1 "*) return 0 ;; esac; return 1; }

echo "== bench/watch.sh $(date -u +%FT%TZ) on $(nproc) cores, lab namespace $FANOUT_LAB"
echo "uptime at start: $(uptime)"

# cpu PID: user+system seconds of PID so far.
cpu() { awk -v hz="$HZ" '{ printf "%.3f", ($14 + $15) / hz }' "/proc/$1/stat"; }
# hwm PID: peak RSS of PID so far, kB.
hwm() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"; }
# rss_split PID: resident memory now, anonymous (the Go heap and runtime)
# and file-backed (the binary's pages), MB: what a peak is made of.
rss_split() { awk '/^RssAnon:/ { a = $2 } /^RssFile:/ { f = $2 } END { printf "anon %.1f MB, file %.1f MB", a / 1024, f / 1024 }' "/proc/$1/status"; }
ratio() { echo "scale=3; $1 / $2" | bc; }

# wait_round FILE N LIMIT: waits until FILE has the summary line of round N
# (or LIMIT seconds passed); fails when it never came.
wait_round() {
	local i=0
	while ! grep -q "^round $2:" "$1"; do
		sleep 0.2
		i=$((i + 1))
		[ $i -lt $(($3 * 5)) ] || return 1
	done
}

# hwm_trace FILE PID OUT: until PID exits, appends "round peak_kB" to OUT
# each time FILE gains a round summary line: the rounds where the peak rose.
hwm_trace() {
	local n last=0
	while kill -0 "$2" 2>/dev/null; do
		n=$(grep -c '^round [0-9]*:' "$1")
		if [ "$n" != "$last" ]; then
			last=$n
			echo "$n $(hwm "$2")" >>"$3"
		fi
		sleep 0.2
	done
}

# rises OUT: the rounds at which hwm_trace saw the peak grow, with it (MB).
rises() { awk '$2 > p { if (p) printf " %d (%.1f)", $1, $2 / 1024; p = $2 }' "$1"; }

part_a() {
echo
echo "(a) steady state: watch ping --every 5s of 127.0.0.0/16, $ROUNDS rounds${AB_BIN:+, beside a watch of $AB_BIN at the same time}"
/usr/bin/time -f "%e %U %S %M" -o "$work/time1" "$FANOUT" ping -q 127.0.0.0/16 >/dev/null 2>&1
read -r wall1 user1 sys1 rss1 < <(tail -1 "$work/time1")
once_cpu=$(echo "$user1 + $sys1" | bc)
# One round more than measured: round ROUNDS is read while it still runs.
"$FANOUT" watch ping --every 5s --rounds $((ROUNDS + 1)) -o jsonl 127.0.0.0/16 >"$work/changes" 2>"$work/rounds" &
wpid=$!
pids+=("$wpid")
(sleep 900; kill "$wpid" 2>/dev/null) &
pids+=($!)
: >"$work/hwm"
hwm_trace "$work/rounds" "$wpid" "$work/hwm" &
pids+=($!)
local bpid=
if [ -n "${AB_BIN:-}" ]; then
	"$AB_BIN" watch ping --every 5s --rounds $((ROUNDS + 1)) -o jsonl 127.0.0.0/16 >/dev/null 2>"$work/rounds.ab" &
	bpid=$!
	pids+=("$bpid")
	(sleep 900; kill "$bpid" 2>/dev/null) &
	pids+=($!)
	: >"$work/hwm.ab"
	hwm_trace "$work/rounds.ab" "$bpid" "$work/hwm.ab" &
	pids+=($!)
fi
if wait_round "$work/rounds" 5 120; then
	cpu5=$(cpu "$wpid")
	rss5=$(hwm "$wpid")
	split5=$(rss_split "$wpid")
	[ -z "$bpid" ] || ! wait_round "$work/rounds.ab" 5 120 || rss5b=$(hwm "$bpid")
	if wait_round "$work/rounds" "$ROUNDS" 600; then
		cpuN=$(cpu "$wpid")
		rssN=$(hwm "$wpid")
		splitN=$(rss_split "$wpid")
		[ -z "$bpid" ] || ! wait_round "$work/rounds.ab" "$ROUNDS" 120 || rssNb=$(hwm "$bpid")
		late=$(grep -c "late by" "$work/rounds")
		per_round=$(echo "scale=3; ($cpuN - $cpu5) / ($ROUNDS - 5)" | bc)
		printf '  one-shot fanout ping -q 127.0.0.0/16:  %6.2f s wall, %6.3f s cpu, %6.1f MB peak\n' "$wall1" "$once_cpu" "$(echo "scale=1; $rss1 / 1024" | bc)"
		printf '  watch, peak RSS at round 5: %6.1f MB, at round %d: %6.1f MB: %sx (want <= 1.05)\n' \
			"$(echo "scale=1; $rss5 / 1024" | bc)" "$ROUNDS" "$(echo "scale=1; $rssN / 1024" | bc)" "$(ratio "$rssN" "$rss5")"
		printf '  resident at round 5: %s; at round %d: %s\n' "$split5" "$ROUNDS" "$splitN"
		printf '  peak RSS rose at rounds (MB):%s\n' "$(rises "$work/hwm")"
		if [ -n "$bpid" ]; then
			if [ -n "${rss5b:-}" ] && [ -n "${rssNb:-}" ]; then
				printf '  AB_BIN watch, peak RSS at round 5: %6.1f MB, at round %d: %6.1f MB: %sx\n' \
					"$(echo "scale=1; $rss5b / 1024" | bc)" "$ROUNDS" "$(echo "scale=1; $rssNb / 1024" | bc)" "$(ratio "$rssNb" "$rss5b")"
				printf '  AB_BIN peak RSS rose at rounds (MB):%s\n' "$(rises "$work/hwm.ab")"
			else
				echo "  AB_BIN watch: round 5 or $ROUNDS never came:"; tail -3 "$work/rounds.ab"
			fi
		fi
		printf '  watch CPU per round (rounds 6-%d): %6.3f s, %sx a one-shot sweep (want <= 1.10)\n' \
			"$ROUNDS" "$per_round" "$(ratio "$per_round" "$once_cpu")"
		printf '  changes printed (live targets reported down or other): %d (want 0); late rounds: %d of %d\n' \
			"$(grep -c . "$work/changes")" "$late" $((ROUNDS + 1))
	else
		echo "  round $ROUNDS never came; last lines:"; tail -3 "$work/rounds"
	fi
else
	echo "  round 5 never came; stderr:"; tail -3 "$work/rounds"
fi
kill "$wpid" $bpid 2>/dev/null
}

part_b() {
echo
echo "(b) blackbox_exporter (module icmp, one /probe per target per scrape) vs fanout watch, 1,000 loopback targets"
if ! command -v prometheus-blackbox-exporter >/dev/null || ! command -v curl >/dev/null; then
	# The lab namespace has no network: install before entering it.
	echo "  skipped: apt-get install -y prometheus-blackbox-exporter curl (outside the lab), then run again"
	return
fi
# 1,000 live lab addresses: 127.0.1.0 - 127.0.4.231
seq 0 999 | awk '{ printf "127.0.%d.%d\n", 1 + int($1 / 256), $1 % 256 }' >"$work/targets"
cat >"$work/blackbox.yml" <<'YML'
modules:
  icmp:
    prober: icmp
    timeout: 2s
    icmp:
      preferred_ip_protocol: ip4
YML
prometheus-blackbox-exporter --config.file="$work/blackbox.yml" --web.listen-address=127.0.0.1:19115 \
	>"$work/bb.log" 2>&1 &
bpid=$!
pids+=("$bpid")
i=0
until curl -fs http://127.0.0.1:19115/metrics >/dev/null; do
	sleep 0.1; i=$((i + 1)); [ $i -lt 100 ] || { echo "  exporter did not start:"; tail -3 "$work/bb.log"; return; }
done
bb0=$(cpu "$bpid")
: >"$work/bb.out"
for scrape in 1 2 3 4 5; do
	# A scrape of every target, 50 at a time, as Prometheus' parallel
	# scrapes of one job would.
	timeout 60 xargs -P 50 -I{} sh -c \
		'curl -fs "http://127.0.0.1:19115/probe?module=icmp&target={}" | awk -v t={} "/^probe_success /{ print t, \$2 }"' \
		<"$work/targets" >>"$work/bb.out"
done
bb1=$(cpu "$bpid")
probes=$(grep -c . "$work/bb.out")
bb_down=$(awk '$2 != 1' "$work/bb.out" | wc -l)
bb_ms=$(echo "scale=3; ($bb1 - $bb0) * 1000 / $probes" | bc)

/usr/bin/time -f "%U %S" -o "$work/time2" timeout 300 "$FANOUT" watch ping --every 1s --rounds 10 -q -o jsonl "@$work/targets" >"$work/fw.out" 2>/dev/null
read -r fu fs < <(tail -1 "$work/time2")
fw_cpu=$(echo "$fu + $fs" | bc)
fw_ms=$(echo "scale=4; $fw_cpu * 1000 / 10000" | bc)
printf '  blackbox_exporter: %d probes, %s ms exporter CPU per probe, %d probes reported down\n' "$probes" "$bb_ms" "$bb_down"
printf '  fanout watch:      10000 target-rounds (10 rounds, start-up included), %s ms CPU per target-round, %d changes (down) printed\n' "$fw_ms" "$(grep -c . "$work/fw.out")"
printf '  fanout / blackbox_exporter CPU: %sx (want < 0.05)\n' "$(ratio "$fw_ms" "$bb_ms")"
kill "$bpid" 2>/dev/null
}

part_c() {
echo
echo "(c) SSH polling cost: bench/ssh-reuse.sh ${SSH_N:-1000} (fanout watch ssh beside asyncssh kept and pssh ControlPersist)"
FANOUT_BIN=$FANOUT ROUNDS=${SSH_ROUNDS:-5} bash bench/ssh-reuse.sh "${SSH_N:-1000}" 2>&1 | sed 's/^/  /'
}

part_d() {
echo
echo "(d) metrics: watch ping of 10,000 lab targets every 2s, $D_ROUNDS rounds, per-target series on; without, then with scrapes every 0.5s"
if ! command -v curl >/dev/null; then
	echo "  skipped: apt-get install -y curl (outside the lab), then run again"
	return
fi
# 10,000 live lab addresses: 127.0.1.0 - 127.0.40.15
seq 0 9999 | awk '{ printf "127.0.%d.%d\n", 1 + int($1 / 256), $1 % 256 }' >"$work/t10k"
local scrape per wall spid=
for scrape in 0 1; do
	: >"$work/m.err"
	# One round more than measured: round D_ROUNDS is read while the watch runs.
	"$FANOUT" watch ping --every 2s --rounds $((D_ROUNDS + 1)) --metrics 127.0.0.1:0 "@$work/t10k" >/dev/null 2>"$work/m.err" &
	local mpid=$! # fanout's own pid: its CPU is read from /proc
	pids+=("$mpid")
	(sleep $((D_ROUNDS * 2 + 120)); kill "$mpid" 2>/dev/null) &
	pids+=($!)
	if ! wait_round "$work/m.err" 2 60; then
		echo "  round 2 never came:"; tail -3 "$work/m.err"; kill "$mpid" 2>/dev/null; return
	fi
	local c2; c2=$(cpu "$mpid")
	local url; url=$(sed -n 's/^fanout: metrics at //p' "$work/m.err")
	if [ $scrape = 1 ]; then
		: >"$work/scrapes"
		(while kill -0 "$mpid" 2>/dev/null && ! grep -q "^round $D_ROUNDS:" "$work/m.err"; do
			curl -s ${SCRAPE_GZIP:+--compressed} -o "$work/scrape.txt" -w '%{time_total}\n' "$url" >>"$work/scrapes"
			sleep 0.5
		done) &
		spid=$!
		pids+=("$spid")
	fi
	if ! wait_round "$work/m.err" "$D_ROUNDS" $((D_ROUNDS * 2 + 100)); then
		echo "  round $D_ROUNDS never came:"; tail -3 "$work/m.err"; kill "$mpid" 2>/dev/null; return
	fi
	local c12; c12=$(cpu "$mpid")
	kill "$mpid" 2>/dev/null
	wait "$mpid" 2>/dev/null
	per[$scrape]=$(echo "scale=4; ($c12 - $c2) / ($D_ROUNDS - 2)" | bc)
	# round N: ... changes in W s, ...: rounds 3-D_ROUNDS's wall
	wall[$scrape]=$(awk -v last="$D_ROUNDS" '/^round [0-9]+:/ { r = $2; sub(/:/, "", r); if (r + 0 < 3 || r + 0 > last) next; w = $0; sub(/.* in /, "", w); sub(/s.*/, "", w); s += w; n++ } END { if (n) printf "%.3f", s / n }' "$work/m.err")
done
wait "$spid" 2>/dev/null
local n ms_med ms_max series
n=$(grep -c . "$work/scrapes")
ms_med=$(sort -n "$work/scrapes" | awk '{ a[NR] = $1 } END { if (NR) printf "%.1f", 1000 * a[int((NR + 1) / 2)] }')
ms_max=$(sort -n "$work/scrapes" | awk 'END { if (NR) printf "%.1f", 1000 * $1 }')
series=$(grep -c '^fanout_up{' "$work/scrape.txt")
printf '  scrape of %d fanout_up series: median %s ms, max %s ms, %d scrapes (want under 50 ms)\n' "$series" "$ms_med" "$ms_max" "$n"
# Rounds 3 to D_ROUNDS are measured.
printf '  watch CPU per round: %s s without scrapes, %s s with %s scrapes a round: +%s%%, +%s%% a scrape (want under 2%%)\n' \
	"${per[0]}" "${per[1]}" "$(echo "scale=1; $n / ($D_ROUNDS - 2)" | bc)" \
	"$(echo "scale=2; 100 * (${per[1]} - ${per[0]}) / ${per[0]}" | bc)" \
	"$(echo "scale=2; 100 * (${per[1]} - ${per[0]}) / ${per[0]} / ($n / ($D_ROUNDS - 2))" | bc)"
printf '  round wall (rounds 3-%s): %s s without, %s s with\n' "$D_ROUNDS" "${wall[0]}" "${wall[1]}"
}

for p in a b c d; do
	part $p && part_$p
done
echo
echo "uptime at end: $(uptime)"
