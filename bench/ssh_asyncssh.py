#!/usr/bin/python3
"""asyncio + asyncssh: run one command on every host, at most C at a time.

usage: ssh_asyncssh.py CONCURRENCY HOSTFILE PORT USER KEY KNOWN_HOSTS KEX COMMAND
Prints "HOST: line" per output line, like pdsh; failures on stderr.
The peer of bench/ssh.sh (issue #4: "a Python asyncio + asyncssh script").
"""
import asyncio
import sys
import warnings

warnings.filterwarnings("ignore")  # asyncssh's cryptography deprecation noise
import asyncssh  # noqa: E402


async def one(sem, host, port, user, key, known, kex, command, out):
    async with sem:
        try:
            async with asyncssh.connect(host, port=port, username=user, client_keys=[key],
                                        known_hosts=known, kex_algs=[kex],
                                        agent_path=None, connect_timeout=60) as conn:
                r = await conn.run(command, check=False)
                for line in r.stdout.splitlines():
                    out.append(f"{host}: {line}\n")
                return r.exit_status == 0
        except Exception as e:  # a per-host failure, as pdsh would report it
            print(f"{host}: {type(e).__name__}: {e}", file=sys.stderr)
            return False


async def main():
    c, hostfile, port, user, keyfile, khfile, kex = sys.argv[1:8]
    command = " ".join(sys.argv[8:])
    hosts = [h.strip() for h in open(hostfile) if h.strip()]
    key = asyncssh.read_private_key(keyfile)
    known = asyncssh.read_known_hosts(khfile)
    sem = asyncio.Semaphore(int(c))
    out = []
    ok = await asyncio.gather(*(one(sem, h, int(port), user, key, known, kex, command, out) for h in hosts))
    sys.stdout.writelines(out)
    return 0 if all(ok) else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
