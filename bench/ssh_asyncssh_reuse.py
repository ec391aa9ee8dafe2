#!/usr/bin/python3
"""asyncio + asyncssh keeping its connections: ROUNDS rounds of one command on
every host, connecting once (at most C at a time) and opening one session per
host per round on the kept connection: the best a Python user gets for a
poller. Prints per round the wall time, hosts up, this process's CPU per
host-round and the machine's busy time per host-round (/proc/stat).

usage: ssh_asyncssh_reuse.py CONCURRENCY ROUNDS HOSTFILE PORT USER KEY KNOWN_HOSTS KEX COMMAND
The peer of bench/ssh-reuse.sh (issue #16's "asyncssh keeping its 1,000
connections").
"""
import asyncio
import os
import sys
import time
import warnings

warnings.filterwarnings("ignore")  # asyncssh's cryptography deprecation noise
import asyncssh  # noqa: E402


def machine_busy():
    f = open("/proc/stat").readline().split()
    hz = os.sysconf("SC_CLK_TCK")
    return sum(int(f[i]) for i in (1, 2, 3, 6, 7, 8)) / hz


async def connect(sem, host, port, user, key, known, kex):
    async with sem:
        try:
            return await asyncssh.connect(host, port=port, username=user, client_keys=[key],
                                          known_hosts=known, kex_algs=[kex],
                                          agent_path=None, connect_timeout=60, keepalive_interval=30)
        except Exception as e:
            print(f"{host}: {type(e).__name__}: {e}", file=sys.stderr)
            return None


async def run(sem, conn, command):
    if conn is None:
        return False
    async with sem:
        try:
            r = await conn.run(command, check=False)
            return r.exit_status == 0 and r.stdout == "hello world\n"
        except Exception as e:
            print(f"{type(e).__name__}: {e}", file=sys.stderr)
            return False


async def main():
    c, rounds, hostfile, port, user, keyfile, khfile, kex = sys.argv[1:9]
    command = " ".join(sys.argv[9:])
    hosts = [h.strip() for h in open(hostfile) if h.strip()]
    n = len(hosts)
    key = asyncssh.read_private_key(keyfile)
    known = asyncssh.read_known_hosts(khfile)
    sem = asyncio.Semaphore(int(c))
    conns = None
    first = rest = None
    for r in range(1, int(rounds) + 1):
        cpu0, busy0, t0 = time.process_time(), machine_busy(), time.monotonic()
        if conns is None:
            conns = await asyncio.gather(*(connect(sem, h, int(port), user, key, known, kex) for h in hosts))
        ok = await asyncio.gather(*(run(sem, cn, command) for cn in conns))
        wall, cpu, busy = time.monotonic() - t0, time.process_time() - cpu0, machine_busy() - busy0
        print(f"  {'asyncssh kept':<18} round {r}: wall {wall:7.2f}s  up {sum(ok)}/{n}  "
              f"client cpu {1000 * cpu / n:6.3f} ms/host  machine busy {1000 * busy / n:6.2f} ms/host", flush=True)
        v = (wall, cpu, busy)
        if r == 1:
            first = v
        else:
            rest = tuple((rest[i] if rest else 0) + v[i] / (int(rounds) - 1) for i in range(3))
    if rest:
        print(f"  {'asyncssh kept':<18} rounds 2-{rounds} vs round 1: wall {rest[0] / first[0]:.3f}, "
              f"client cpu {rest[1] / first[1]:.3f}, machine busy {rest[2] / first[2]:.3f}")
        print(f"RESULT asyncssh_kept wall={rest[0]:.3f} cpu_ms={1000 * rest[1] / n:.4f} "
              f"busy_ms={1000 * rest[2] / n:.4f} busy_ratio={rest[2] / first[2]:.4f}")
    for cn in conns:
        if cn is not None:
            cn.close()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
