"""Throughput and latency of ``unitok serve`` against in-process ``encode_batch``, in one run.

For image and audio encode requests, with 1 and 2 worker processes: a real server on 127.0.0.1
(the bundled suite), ``--concurrency`` client threads sending ``--requests`` requests through
``unitok.Client``; beside it, the same documents through ``tok.encode_batch`` in this process
(one torch thread, as each worker has). Latency is per request (the service: from sending to the
answer; in process: one ``encode`` call). Every answer is checked against the in-process ids.

    python benchmarks/service.py                       # writes its section of RESULTS.md
    python benchmarks/service.py --requests 16 --no-write
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from report import RESULTS, Section, command_line, machine_description, write_section

TITLE = "Service throughput (unitok serve)"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``unitok serve`` in a child process, for the length of a ``with`` block."""

    def __init__(self, workers: int, max_batch: int):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = [sys.executable, "-m", "unitok.cli", "serve", "--port", str(self.port), "--workers", str(workers),
                     "--max-batch", str(max_batch), "--max-queue", "4096"]

    def __enter__(self):
        from unitok.serve import Client, ServiceError

        self.proc = subprocess.Popen(self.args, env=dict(os.environ, OMP_NUM_THREADS="1"),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if Client(self.url).health()["ok"]:
                    return self
            except ServiceError:
                time.sleep(0.2)
            if self.proc.poll() is not None:
                break
        self.proc.kill()
        raise SystemExit(f"the server did not start: {self.proc.stderr.read()[-2000:]}")

    def __exit__(self, *exc):
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def documents(kind: str, n: int, image_size: int, audio_seconds: float) -> list:
    import torch

    import unitok

    g = torch.Generator().manual_seed(0)
    if kind == "image":
        return [unitok.Image(torch.randint(0, 256, (3, image_size, image_size), dtype=torch.uint8, generator=g))
                for _ in range(n)]
    rate = 24000
    t = torch.arange(int(audio_seconds * rate)) / rate
    return [unitok.Audio((0.3 * torch.sin(2 * torch.pi * (200 + 10 * i) * t)
                          + 0.05 * torch.rand(len(t), generator=g))[None].clamp(-1, 1).float(), rate) for i in range(n)]


def in_process(tok, docs: list) -> dict:
    tok.encode_batch(docs[:2])   # warm-up
    started = time.perf_counter()
    expected = tok.encode_batch(docs)
    batch_s = time.perf_counter() - started
    latencies = []
    for doc in docs:
        t0 = time.perf_counter()
        tok.encode(doc)
        latencies.append(time.perf_counter() - t0)
    return {"rate": len(docs) / batch_s, "lat": np.array(latencies), "expected": expected}


def service(url: str, docs: list, expected: list, concurrency: int) -> dict:
    from unitok.serve import Client

    client = Client(url)
    for doc in docs[:concurrency]:   # warm-up: connections and the workers' first calls
        client.encode(doc)

    def one(i):
        t0 = time.perf_counter()
        seq = client.encode(docs[i])
        took = time.perf_counter() - t0
        if seq != expected[i]:
            raise SystemExit(f"request {i}: the service's ids differ from the in-process ids")
        return took

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        latencies = list(pool.map(one, range(len(docs))))
    return {"rate": len(docs) / (time.perf_counter() - started), "lat": np.array(latencies)}


def ms(lat: np.ndarray, q: float) -> str:
    return f"{1000 * float(np.percentile(lat, q)):.1f}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=64, help="requests per measurement (default: 64)")
    p.add_argument("--concurrency", type=int, default=4, help="client threads (default: 4)")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts (default: 1 2)")
    p.add_argument("--max-batch", type=int, default=8, help="the server's --max-batch (default: 8)")
    p.add_argument("--image-size", type=int, default=128, help="image side in pixels (default: 128)")
    p.add_argument("--audio-seconds", type=float, default=1.0, help="audio length (default: 1.0)")
    p.add_argument("--results", type=Path, default=RESULTS)
    p.add_argument("--no-write", action="store_true", help="print the table only")
    args = p.parse_args(argv)

    import torch

    import unitok

    torch.set_num_threads(1)
    tok = unitok.load()
    kinds = {"image": f"image {args.image_size}x{args.image_size}", "audio": f"audio {args.audio_seconds:g} s"}
    docs = {k: documents(k, args.requests, args.image_size, args.audio_seconds) for k in kinds}
    local = {k: in_process(tok, docs[k]) for k in kinds}
    rows = []
    for workers in args.workers:
        with Server(workers, args.max_batch) as server:
            for k, what in kinds.items():
                s = service(server.url, docs[k], local[k]["expected"], args.concurrency)
                rows.append(f"| {what} | {workers} | {local[k]['rate']:.1f} | {s['rate']:.1f} | "
                            f"{s['rate'] / local[k]['rate']:.2f} | {ms(s['lat'], 50)} / {ms(s['lat'], 99)} | "
                            f"{ms(local[k]['lat'], 50)} / {ms(local[k]['lat'], 99)} |")
                print(rows[-1], flush=True)
    body = [
        f"- Machine: {machine_description()}; one torch thread per worker and in process",
        f"- Date: {time.strftime('%Y-%m-%d')}",
        f"- Command: `{command_line()}`",
        f"- {args.requests} encode requests per row from {args.concurrency} client threads (`unitok.Client`, "
        f"HTTP on 127.0.0.1, media as raw arrays in JSON), server `--max-batch {args.max_batch}`; every answer "
        f"equals the in-process ids. The client threads share the machine's cores with the workers.",
        "",
        "| requests | workers | in-process `encode_batch` items/s | service items/s | service / in-process | "
        "service p50 / p99 ms | in-process `encode` p50 / p99 ms |",
        "|---|---:|---:|---:|---:|---:|---:|",
        *rows,
    ]
    section = Section(TITLE, "\n".join(body))
    print("\n" + section.body)
    if not args.no_write:
        write_section(args.results, section)
        print(f"wrote '{TITLE}' in {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
