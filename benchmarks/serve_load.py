#!/usr/bin/env python3
"""Load on `charrnn serve`: starts the server on a loopback port, then for
each client count runs that many streaming clients at once (each one
request of --max-tokens characters from the same --prompt), and prints the
aggregate characters per second, the time to the first character (p50,
p99) and the largest gaps between characters (p99 over all clients). Beside
it, `charrnn generate` on the same model and temperature, one stream and 64
at once, for the rates the decoder reaches without HTTP: each is timed at
two lengths and the difference taken, so model loading and reading the
prompt do not count. Every client count is compared with the baseline of
as many streams (1 client with one stream, more with 64). Rounds alternate
server and generate; every round is printed, and the medians.

The load clients run on the same cores as the server. The server's own CPU
time per thousand characters (from /proc) and the clients' (this process's,
from getrusage) are both printed, and a rate net of the clients: the
characters over the wall time less the clients' CPU time spread over the
cores, what the server reached on the CPU the clients left it.

With --logprobs N, every client count runs twice a round, without and with
`logprobs: N` on every request (which goes first alternates between
rounds), and the medians are compared: what per-character probabilities
cost the server.

  /usr/bin/python3 benchmarks/serve_load.py --checkpoint models/lstm.pt \\
      [--clients 1,8,64,256] [--max-tokens 300] [--rounds 2] [--logprobs 5] [--charrnn build/charrnn]

Standard library only (threads and http.client); bounded in count and time.
"""
import argparse
import http.client
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import threading
import time

from machine import cpu_model

here = os.path.dirname(os.path.abspath(__file__))


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))] if values else float("nan")


def one_client(port, body, out, timeout):
    start = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    conn.request("POST", "/v1/completions", body=body, headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    first, last, chars, gaps, status = None, None, 0, [], response.status
    if status == 200:
        for line in response:
            if not line.startswith(b"data: ") or line.startswith(b"data: [DONE]"):
                continue
            text = json.loads(line[6:])["choices"][0]["text"]
            if not text:
                continue
            now = time.perf_counter()
            if first is None:
                first = now
            elif last is not None:
                gaps.append(now - last)
            last = now
            chars += len(text)
    conn.close()
    out.append({"status": status, "chars": chars, "ttfc": (first - start) if first else None, "gaps": gaps})


def cpu_seconds(pid):
    """User + system CPU time of a process so far, from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load(port, pid, clients, prompt, max_tokens, timeout, logprobs=None):
    request = {"prompt": prompt, "max_tokens": max_tokens, "temperature": 0.8, "stream": True}
    if logprobs is not None:
        request["logprobs"] = logprobs
    body = json.dumps(request)
    results, threads = [], []
    cpu_before = cpu_seconds(pid)
    own_before = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    for _ in range(clients):
        t = threading.Thread(target=one_client, args=(port, body, results, timeout))
        t.start()
        threads.append(t)
    for t in threads:
        t.join(timeout)
    wall = time.perf_counter() - start
    server_cpu = cpu_seconds(pid) - cpu_before
    own = resource.getrusage(resource.RUSAGE_SELF)
    client_cpu = own.ru_utime + own.ru_stime - own_before.ru_utime - own_before.ru_stime
    cores = len(os.sched_getaffinity(0))
    ok = [r for r in results if r["status"] == 200]
    chars = sum(r["chars"] for r in ok)
    gaps = [g for r in ok for g in r["gaps"]]
    ttfc = [r["ttfc"] for r in ok if r["ttfc"] is not None]
    return {"clients": clients, "logprobs": logprobs, "ok": len(ok), "failed": clients - len(ok), "chars": chars,
            "server_cpu_ms_per_kchar": 1e6 * server_cpu / max(chars, 1),
            "client_cpu_ms_per_kchar": 1e6 * client_cpu / max(chars, 1),
            "chars_per_s": chars / wall, "net_chars_per_s": chars / max(wall - client_cpu / cores, 1e-9), "ttfc_p50_ms": 1e3 * percentile(ttfc, 50),
            "ttfc_p99_ms": 1e3 * percentile(ttfc, 99), "gap_p99_ms": 1e3 * percentile(gaps, 99)}


def generate_seconds(args, samples, length):
    start = time.perf_counter()
    subprocess.run([args.charrnn, "generate", "--checkpoint", args.checkpoint, "--prime", args.prompt,
                    "--length", str(length), "--num-samples", str(samples), "--seed", "1",
                    "--temperature", "0.8"], capture_output=True, text=True, check=True)
    return time.perf_counter() - start


def generate_rate(args, samples):
    """`charrnn generate`'s characters per second for `samples` streams, start-up
    (loading the model, reading the prompt) taken out: the difference between
    two lengths."""
    short, extra = args.max_tokens, args.baseline_chars // samples if samples > 1 else args.baseline_chars
    return samples * extra / (generate_seconds(args, samples, short + extra) - generate_seconds(args, samples, short))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--charrnn", default=os.path.join(here, "..", "build", "charrnn"))
    parser.add_argument("--clients", default="1,8,64,256")
    parser.add_argument("--prompt", default="The state of the art")  # 20 characters
    parser.add_argument("--max-tokens", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=120)
    parser.add_argument("--baseline-chars", type=int, default=60000,
                        help="characters the generate baselines add to the longer of their two runs (over all streams)")
    parser.add_argument("--logprobs", type=int, default=None,
                        help="also run every client count with logprobs N on each request, and compare")
    args = parser.parse_args()

    server = subprocess.Popen([args.charrnn, "serve", "--checkpoint", args.checkpoint, "--port", "0", "--slots", "64",
                               "--queue", "256"], stderr=subprocess.PIPE, text=True)
    try:
        port = None
        while port is None:
            line = server.stderr.readline()
            if not line:
                sys.exit("error: charrnn serve ended before listening")
            m = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
            port = int(m.group(1)) if m else None
        rows, generated = [], {1: [], 64: []}
        for r in range(args.rounds):
            for samples in generated:
                generated[samples].append(generate_rate(args, samples))
            variants = [None] if args.logprobs is None else [None, args.logprobs][::1 if r % 2 == 0 else -1]
            for clients in [int(c) for c in args.clients.split(",")]:
                for logprobs in variants:
                    row = load(port, server.pid, clients, args.prompt, args.max_tokens, args.timeout, logprobs)
                    row["round"] = r + 1
                    rows.append(row)
                    print(f"round {r + 1}, {clients} clients, logprobs {logprobs}: {row['chars_per_s']:.0f} chars/s",
                          file=sys.stderr)
    finally:
        server.terminate()
        server.wait(30)

    print(f"CPU: {cpu_model()}; {args.max_tokens} characters per request from a {len(args.prompt)}-character prompt\n")
    print("| round | clients | logprobs | served | chars/s | net of clients | server CPU per 1k chars | "
          "clients' CPU per 1k chars | first char p50 | first char p99 | gap p99 |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        lp = "-" if row["logprobs"] is None else row["logprobs"]
        print(f"| {row['round']} | {row['clients']} | {lp} | {row['ok']}/{row['clients']} | {row['chars_per_s']:.0f} | "
              f"{row['net_chars_per_s']:.0f} | {row['server_cpu_ms_per_kchar']:.1f} ms | "
              f"{row['client_cpu_ms_per_kchar']:.1f} ms | {row['ttfc_p50_ms']:.1f} ms | {row['ttfc_p99_ms']:.1f} ms | "
              f"{row['gap_p99_ms']:.1f} ms |")
    baseline = {samples: statistics.median(rates) for samples, rates in generated.items()}
    print()
    for samples, rates in generated.items():
        print(f"`charrnn generate --num-samples {samples}`, start-up taken out, each round: "
              f"{', '.join(f'{g:.0f}' for g in rates)} chars/s; median {baseline[samples]:.0f}")
    for clients in sorted({row["clients"] for row in rows}):
        plain = [row for row in rows if row["clients"] == clients and row["logprobs"] is None]
        rate = statistics.median(row["chars_per_s"] for row in plain)
        net = statistics.median(row["net_chars_per_s"] for row in plain)
        base = baseline[1 if clients == 1 else 64]
        line = (f"- {clients} clients: median {rate:.0f} chars/s, {100 * rate / base:.0f}% of generate's "
                f"{1 if clients == 1 else 64}-stream rate; net of the clients' CPU {net:.0f}, {100 * net / base:.0f}%")
        if args.logprobs is not None:
            scored = [row["chars_per_s"] for row in rows if row["clients"] == clients and row["logprobs"] is not None]
            line += (f"; with logprobs {args.logprobs}: {statistics.median(scored):.0f} chars/s, "
                     f"{100 * statistics.median(scored) / rate:.0f}% of it")
        print(line)


if __name__ == "__main__":
    main()
