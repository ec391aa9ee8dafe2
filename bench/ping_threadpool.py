#!/usr/bin/env python3
"""The seed's program: a ThreadPoolExecutor running `ping -c 3 -W 1 HOST` per
host through subprocess. Prints the hosts that answered, one per line.

usage: ping_threadpool.py WORKERS FIRST LAST   (IPv4 addresses, inclusive)
"""
import ipaddress
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor


def ping(host):
    r = subprocess.run(["ping", "-c", "3", "-W", "1", host],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return host, r.returncode == 0


def main():
    workers = int(sys.argv[1])
    first = int(ipaddress.IPv4Address(sys.argv[2]))
    last = int(ipaddress.IPv4Address(sys.argv[3]))
    hosts = [str(ipaddress.IPv4Address(i)) for i in range(first, last + 1)]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for host, alive in pool.map(ping, hosts):
            if alive:
                print(host)


if __name__ == "__main__":
    main()
