#!/usr/bin/env python3
"""charrnn.js against `charrnn generate`: one stream's characters per second
for the same model, under Node and in headless Chromium, on each of
charrnn.js's backends; the web folder's size against its weights'; and how
long the exported page takes, from loopback, until it can generate.

Trains the config's model for two steps (speed does not depend on the
weights), exports it with `--format web`, then runs --rounds rounds, each
measuring every contender in turn (the machine is noisy: rounds alternate
and every round is printed, then the medians).
- charrnn generate: the wall time of `--length N` less that of `--length 0`
  (the load and the prime), over N;
- charrnn.js: generate({length: N}) after load and a warm-up of 300
  characters (the JIT compiles the hot loops), timed inside the runtime
  (performance.now), under Node and in the page.

  /usr/bin/python3 benchmarks/web_speed.py [--config configs/lstm.json] [--data FILE]
      [--length 4000] [--rounds 3] [--charrnn build/charrnn] [--work DIR]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "tests"))
from script_support import StaticSite, Unavailable, start_chromium  # noqa: E402
from machine import cpu_summary  # noqa: E402

SETTINGS = {"prime": "The ", "temperature": 0.8, "seed": 1}
BACKENDS = {"wasm-simd": {"backend": "wasm-simd"}, "js": {"backend": "js"}}  # load() options

NODE_BENCH = """
const [runtime, folder, length, settings, options] = process.argv.slice(1);
const { load } = await import(runtime);
const model = await load(folder, JSON.parse(options));
await model.generate({ ...JSON.parse(settings), length: 300 });  // warm-up: the JIT compiles the hot loops
const started = performance.now();
const text = await model.generate({ ...JSON.parse(settings), length: Number(length) });
const seconds = (performance.now() - started) / 1000;
console.log(JSON.stringify({ backend: model.backend, chars_per_s: Number(length) / seconds, chars: [...text].length }));
"""

PAGE_BENCH = """
const [base, length, settings, options, done] = arguments;
import(base + "charrnn.js").then(async ({ load }) => {
  const model = await load(base, options);
  await model.generate({ ...settings, length: 300 });  // warm-up: the JIT compiles the hot loops
  const started = performance.now();
  await model.generate({ ...settings, length });
  done({ backend: model.backend, chars_per_s: length / ((performance.now() - started) / 1000) });
}).catch((e) => done({ error: String(e) }));
"""


def run(args, **kw):
    result = subprocess.run(args, capture_output=True, text=True, **kw)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({result.returncode}): {result.stderr[-800:]}")
    return result.stdout


def generate_rate(binary, checkpoint, length):
    def seconds(n):
        started = time.perf_counter()
        run([binary, "generate", "--checkpoint", checkpoint, "--prime", SETTINGS["prime"], "--length", str(n),
             "--temperature", str(SETTINGS["temperature"]), "--seed", str(SETTINGS["seed"])])
        return time.perf_counter() - started
    return length / (seconds(length) - seconds(0))


def node_rate(folder, length, options):
    out = run(["node", "--input-type=module", "-e", NODE_BENCH, os.path.join(folder, "charrnn.js"), folder,
               str(length), json.dumps(SETTINGS), json.dumps(options)])
    return json.loads(out)


def page_rate(browser, url, length, options):
    browser.set_script_timeout(300)
    got = browser.execute_async_script(PAGE_BENCH, url, length, SETTINGS, options)
    if "error" in got:
        raise RuntimeError(f"charrnn.js in the page: {got['error']}")
    return got


def page_load_ms(browser, url):
    started = time.perf_counter()
    browser.get(url + "index.html")
    while browser.execute_script("return document.body && document.body.dataset.state") != "ready":
        if time.perf_counter() - started > 30:
            raise RuntimeError("the page did not become ready in 30 s")
        time.sleep(0.005)
    return (time.perf_counter() - started) * 1000


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=os.path.join(here, "..", "configs", "lstm.json"))
    parser.add_argument("--data", default=os.path.join(here, "..", "..", "shared", "data", "tinyshakespeare.txt"))
    parser.add_argument("--length", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--charrnn", default=os.path.join(here, "..", "build", "charrnn"))
    parser.add_argument("--work", default=None)
    args = parser.parse_args()
    work = args.work or tempfile.mkdtemp(prefix="charrnn-web-speed-")
    os.makedirs(work, exist_ok=True)
    binary = os.path.abspath(args.charrnn)
    checkpoint, folder = os.path.join(work, "model.pt"), os.path.join(work, "web")
    run([binary, "train", "--config", args.config, "--set", f"data.path={os.path.abspath(args.data)}",
         "--set", f"train.checkpoint={checkpoint}", "--set", "train.steps=2", "--set", "train.eval_every=2",
         "--set", "train.max_seconds=0"], env={**os.environ, "XDG_CACHE_HOME": os.path.join(work, "cache")})
    run([binary, "export", "--format", "web", "--checkpoint", checkpoint, "--out", folder])
    with open(os.path.join(folder, "charrnn.json"), encoding="utf-8") as f:
        info = json.load(f)
    with open(os.path.join(folder, "manifest.json"), encoding="utf-8") as f:
        weight_files = {entry["filename"] for entry in json.load(f).values()}
    sizes = {name: os.path.getsize(os.path.join(folder, name)) for name in os.listdir(folder)}
    weights = sum(size for name, size in sizes.items() if name in weight_files)
    print(f"machine: {cpu_summary()}")
    print(f"model: {info['cell']} {info['num_layers']}x{info['hidden_size']}, embedding {info['embedding_dim']}, "
          f"{info['vocab_size']} characters ({args.config})")
    print(f"folder: {sum(sizes.values()) / 1024:.0f} KB, weights {weights / 1024:.0f} KB "
          f"(+{100 * (sum(sizes.values()) - weights) / weights:.1f}%); others: "
          + ", ".join(f"{name} {size / 1024:.1f} KB" for name, size in sorted(sizes.items()) if name not in weight_files))

    try:
        browser = start_chromium(work)
    except Unavailable as e:
        print(f"(no Chromium figures: {e})")
        browser = None
    site = StaticSite(folder)
    results = {}

    def record(name, value):
        results.setdefault(name, []).append(value)
        return value

    try:
        for r in range(1, args.rounds + 1):
            line = [f"round {r}:", f"charrnn generate {record('charrnn generate', generate_rate(binary, checkpoint, args.length)):,.0f}"]
            for backend, options in BACKENDS.items():
                got = node_rate(folder, args.length, options)
                line.append(f"node/{got['backend']} {record('charrnn.js node/' + backend, got['chars_per_s']):,.0f}")
            if browser:
                # the page first: a module imports from the page's own origin
                line.append(f"page ready {record('page ready (ms)', page_load_ms(browser, site.url)):.0f} ms")
                for backend, options in BACKENDS.items():
                    got = page_rate(browser, site.url, args.length, options)
                    line.append(f"chromium/{got['backend']} {record('charrnn.js chromium/' + backend, got['chars_per_s']):,.0f}")
            print("  ".join(line), flush=True)
    finally:
        if browser:
            browser.quit()
        site.close()
    print(f"medians over {args.rounds} rounds ({args.length} characters per run, chars/s unless marked):")
    for name, values in results.items():
        print(f"  {name:32s} {statistics.median(values):10,.0f}")


if __name__ == "__main__":
    main()
