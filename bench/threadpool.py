#!/usr/bin/env python3
"""The seed program fanout replaces: a ThreadPoolExecutor running
`ping -c 3 -W 1 HOST` per host through subprocess.

usage: threadpool.py WORKERS HOSTFILE   (one host per line)
Prints "HOST up" or "HOST down" per host, in input order.
"""
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor


def ping(host):
    r = subprocess.run(["ping", "-c", "3", "-W", "1", host],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return host, r.returncode == 0


def main():
    workers = int(sys.argv[1])
    with open(sys.argv[2]) as f:
        hosts = [line.strip() for line in f if line.strip()]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for host, ok in pool.map(ping, hosts):
            print(host, "up" if ok else "down")


if __name__ == "__main__":
    main()
