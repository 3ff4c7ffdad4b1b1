"""What the metrics cost the hot path (issue 13): the order benchmark's throughput with the
endpoint off and on, alternated in the same run, reported as a ratio.

    python -m bench.metrics_bench [--orders 10000] [--repeat 3]

- ``off``: 2 processes of ``conveyor run orders`` without ``CONVEYOR_HTTP_PORT`` (each counts
  into its own in-memory registry, nothing serves it: what every process did before issue 13,
  plus the counting);
- ``on``: ``conveyor run orders --processes 2`` with ``CONVEYOR_HTTP_PORT`` (prometheus_client's
  multiprocess mode: every sample written to a shared memory-mapped file) and a scraper
  reading ``/metrics`` every second, with the observer reading the broker's and the outbox's
  figures every second.

Preloaded queue, low-contention mix, clock from the moment every worker consumes (the order
benchmark's ``throughput``). The code before issue 13 is measured by running
``python -m bench.orders_bench`` in a worktree of that commit in the same hour.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import sys
import threading
import urllib.request

from bench import orders_bench
from conveyor import devservices


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def scrape_every_second(port: int, stop: threading.Event, seen: list[int]) -> None:
    while not stop.wait(1.0):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
                seen.append(len(response.read()))
        except OSError:
            pass  # not listening yet


def run_on(services, *, orders: int) -> dict:
    port = free_port()
    stop, seen = threading.Event(), []
    scraper = threading.Thread(target=scrape_every_second, args=(port, stop, seen), daemon=True)
    scraper.start()
    try:
        result = _throughput_group(services, orders=orders, env={
            "CONVEYOR_HTTP_PORT": str(port), "CONVEYOR_HTTP_HOST": "127.0.0.1",
            "CONVEYOR_BROKER_VIEW_INTERVAL": "1"})
    finally:
        stop.set()
        scraper.join()
    return {**result, "scrapes": len(seen), "scrape_bytes": max(seen, default=0)}


def _throughput_group(services, *, orders: int, env: dict) -> dict:
    """The order benchmark's throughput, one `--processes 2` parent (its children consume)."""
    argv = [*orders_bench.CONVEYOR, "--processes", "2"]
    original = orders_bench.harness.Stage.wait_consuming

    def wait_for_both(self, queue: str = "conveyor.orders", *, timeout: float = 60) -> None:
        self.processes.append(self.processes[0])  # two consumers behind the one parent
        try:
            original(self, queue, timeout=timeout)
        finally:
            self.processes.pop()
    orders_bench.harness.Stage.wait_consuming = wait_for_both
    try:
        return orders_bench.throughput(services, mix="low-contention", argv=argv, processes=1, orders=orders,
                                       env=env)
    finally:
        orders_bench.harness.Stage.wait_consuming = original


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args()
    runs: dict[str, list[dict]] = {"off": [], "on": []}
    with devservices.provide_services(log=lambda s: print(s, file=sys.stderr)) as services:
        for n in range(args.repeat):
            for name in ("off", "on") if n % 2 == 0 else ("on", "off"):
                result = (orders_bench.throughput(services, mix="low-contention", argv=orders_bench.CONVEYOR,
                                                  processes=2, orders=args.orders)
                          if name == "off" else run_on(services, orders=args.orders))
                runs[name].append(result)
                print(f"  {name:3}  {result['orders_per_s']:8.1f} orders/s"
                      + (f"  ({result['scrapes']} scrapes, {result['scrape_bytes']} bytes)" if name == "on" else "")
                      + (f"  problems: {result['problems']}" if result["problems"] else ""), flush=True)
    summary = {name: {"median": statistics.median(r["orders_per_s"] for r in rs),
                      "min": min(r["orders_per_s"] for r in rs), "max": max(r["orders_per_s"] for r in rs)}
               for name, rs in runs.items()}
    ratio = summary["on"]["median"] / summary["off"]["median"]
    print(f"metrics endpoint off: {summary['off']['median']:.0f} orders/s "
          f"({summary['off']['min']:.0f}–{summary['off']['max']:.0f}); on, scraped every second: "
          f"{summary['on']['median']:.0f} ({summary['on']['min']:.0f}–{summary['on']['max']:.0f}); "
          f"on/off {ratio:.3f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"runs": runs, "summary": summary, "on_over_off": ratio}, f, indent=2)
    problems = [p for rs in runs.values() for r in rs for p in r["problems"]]
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
