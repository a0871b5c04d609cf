#!/usr/bin/env python3
"""charrnn's ONNX export in onnx's checker, onnxruntime-node and onnxruntime-web.

Trains a small model for every cell (rnn, gru, lstm) at 1, 2 and 3 layers on
a text it writes itself, exports each as ONNX (`--format onnx`) and as
TorchScript (whose forward gives charrnn's own logits, in Python's torch),
and checks:
  - onnx.checker.check_model(full_check=True) passes; the metadata holds the
    vocabulary, cell, sizes and sample section of the export;
  - onnxruntime-node (pinned in package-lock.json, installed by npm ci)
    gives charrnn's logits and state within 1e-4: a prime at once (batch 1,
    zero state), a batch of 3 from a given state, and the same batch one
    character at a time with hn (and cn) fed back;
  - docs/onnx.md's JavaScript example, run as written, gives the text of
    `charrnn generate --temperature 0` (and docs/onnx.md's Python example
    too, where python has onnxruntime);
  - onnxruntime-web (wasm) in headless Chromium, served from a loopback
    HTTP server, gives the same logits for every model.
And the ONNX export of a TorchScript export is the same file as of its
checkpoint; a charrnn given an unknown --format refuses it (exit 2).

Usage: check_onnx.py CHARRNN_BINARY WORK_DIR   (run by ctest)
Exits 77 (skipped) when python's onnx, node, npm or the packages are
missing; the browser part alone is skipped (and said) without chromium.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import time

here = os.path.dirname(os.path.abspath(__file__))
source_dir = os.path.join(here, "..", "..")
sys.path.insert(0, os.path.join(here, ".."))
import script_support  # noqa: E402
from script_support import (StaticSite, Unavailable, as_printed, charrnn, check, continuation, finish,  # noqa: E402
                            make_text, npm_ci, start_chromium)

script_support.quiet = True
TOLERANCE = 1e-4
PRIME = "the night "
CELLS, LAYERS = ["rnn", "gru", "lstm"], [1, 2, 3]


def skip(why):
    print(f"skipped: {why} (scripts/lib/deps.sh installs python3-onnx, python3-torch, nodejs and npm)")
    sys.exit(77)


def install_packages(work):
    """npm ci into WORK_DIR (kept between runs while package-lock.json is unchanged), beside the test's scripts."""
    try:
        npm_ci(here, work)
    except Unavailable as e:
        skip(f"onnxruntime could not be installed: {e}")
    for name in ["cases.mjs", "check.mjs", "page.html"]:
        shutil.copy(os.path.join(here, name), work)


def train_models(binary, work):
    """{(cell, layers): (checkpoint, onnx, torchscript)}, two trainings at a time."""
    corpus = os.path.join(work, "text.txt")
    make_text(corpus)
    models, running = {}, []
    for cell in CELLS:
        for layers in LAYERS:
            name = f"{cell}{layers}"
            ckpt = os.path.join(work, name + ".pt")
            models[(cell, layers)] = (ckpt, os.path.join(work, name + ".onnx"), os.path.join(work, name + ".ts.pt"))
            running.append(subprocess.Popen(
                [binary, "train", "--config", os.path.join(source_dir, "configs", "tiny.json"),
                 "--set", f"data.path={corpus}", "--set", f"train.checkpoint={ckpt}", "--set", f"model.cell={cell}",
                 "--set", f"model.num_layers={layers}", "--set", "train.steps=20", "--set", "train.eval_every=20",
                 "--set", "train.device=cpu", "--set", f"sample.prime={PRIME}", "--set", "sample.temperature=0.6"],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=dict(os.environ, OMP_NUM_THREADS="1")))
            if len(running) == 2:
                wait_all(running)
    wait_all(running)
    for ckpt, onnx_path, ts_path in models.values():
        charrnn(binary, "export", "--checkpoint", ckpt, "--format", "onnx", "--out", onnx_path)
        charrnn(binary, "export", "--checkpoint", ckpt, "--out", ts_path)
    return models


def wait_all(processes):
    for p in processes:
        _, err = p.communicate()
        if p.returncode != 0:
            raise RuntimeError(f"charrnn train failed ({p.returncode}): {err}")
    processes.clear()


def reference(module, case):
    """charrnn's logits and state for a case: the TorchScript export's forward."""
    import torch
    ids = torch.tensor(case["ids"], dtype=torch.long)
    shape = (case["layers"], len(case["ids"]), case["hidden"])
    state = [torch.tensor(case["h0"]).view(shape)]
    if "c0" in case:
        state.append(torch.tensor(case["c0"]).view(shape))
    with torch.no_grad():
        logits, new_state = module(ids, state)
    return logits, new_state


def make_cases(module, seed):
    """Batch 1 from zeros (a prime at once), a batch of 3 from a random state,
    and that batch again one character at a time."""
    import torch
    g = torch.Generator().manual_seed(seed)
    layers, hidden, vocab = module.num_layers, module.hidden_size, module.vocab_size
    lstm = module.cell == "lstm"
    prime_ids = [module.vocab.index(ch) for ch in PRIME]
    cases = []
    for ids, random_state, stepwise in [([prime_ids], False, False), (None, True, False), (None, True, True)]:
        if ids is None:
            ids = torch.randint(0, vocab, (3, 9), generator=g).tolist()
        n = layers * len(ids) * hidden
        draw = (lambda: (torch.randn(n, generator=g) * 0.5).tolist()) if random_state else (lambda: [0.0] * n)
        case = {"ids": ids, "h0": draw(), "layers": layers, "hidden": hidden, "stepwise": stepwise}
        if lstm:
            case["c0"] = draw()
        if stepwise:  # the same ids and state as the case before
            case.update({k: cases[-1][k] for k in ["ids", "h0", "c0"] if k in cases[-1]})
        cases.append(case)
    return cases


def compare(what, module, cases, got):
    import torch
    check(got["inputs"] == (["ids", "h0", "c0"] if module.cell == "lstm" else ["ids", "h0"])
          and got["outputs"] == (["logits", "hn", "cn"] if module.cell == "lstm" else ["logits", "hn"]),
          f"{what}: inputs {got['inputs']}, outputs {got['outputs']}")
    for case, result in zip(cases, got["results"]):
        logits, state = reference(module, case)
        B, T, V = logits.shape
        if case["stepwise"]:
            ours = torch.stack([torch.tensor(step).view(B, V) for step in result["logits"]], 1)
            dims_ok = all(d == [B, 1, V] for d in result["dims"])
        else:
            ours = torch.tensor(result["logits"][0]).view(B, T, V)
            dims_ok = result["dims"] == [[B, T, V]]
        label = f"{what}: {'stepwise' if case['stepwise'] else 'whole'} batch {B}, time {T}"
        diff = (ours - logits).abs().max().item()
        check(dims_ok and diff <= TOLERANCE, f"{label}: logits within {TOLERANCE} (max diff {diff:.2g}, dims {result['dims'][:1]})")
        for name, reference_state in zip(["hn", "cn"], state):
            ours_state = torch.tensor(result[name]).view(reference_state.shape)
            diff = (ours_state - reference_state).abs().max().item()
            check(diff <= TOLERANCE, f"{label}: {name} within {TOLERANCE} (max diff {diff:.2g})")


def check_model_file(onnx_path, module, ckpt_config):
    import onnx
    model = onnx.load(onnx_path)
    try:
        onnx.checker.check_model(model, full_check=True)
        check(True, f"{onnx_path}: onnx.checker.check_model(full_check=True)")
    except Exception as e:  # onnx.checker.ValidationError, shape inference errors
        check(False, f"{onnx_path}: onnx.checker.check_model(full_check=True): {e}")
    meta = {p.key: p.value for p in model.metadata_props}
    check(model.opset_import[0].version == 14, f"{onnx_path}: opset 14")
    check(json.loads(meta["charrnn.vocab"]) == list(module.vocab), f"{onnx_path}: charrnn.vocab is the export's vocabulary")
    check(meta["charrnn.cell"] == module.cell and int(meta["charrnn.num_layers"]) == module.num_layers
          and int(meta["charrnn.hidden_size"]) == module.hidden_size
          and int(meta["charrnn.embedding_dim"]) == module.embedding_dim
          and int(meta["charrnn.vocab_size"]) == module.vocab_size
          and int(meta["charrnn.trained_steps"]) == module.trained_steps == 20
          and meta["charrnn.version"] == module.charrnn_version, f"{onnx_path}: cell, sizes, steps and version")
    check(json.loads(meta["charrnn.sample"]) == ckpt_config["sample"] and ckpt_config["sample"]["prime"] == PRIME,
          f"{onnx_path}: charrnn.sample is the checkpoint's sample section: {meta['charrnn.sample']}")


def doc_example(language):
    """The ```LANGUAGE block of docs/onnx.md, as a reader copies it."""
    text = open(os.path.join(source_dir, "docs", "onnx.md"), encoding="utf-8").read()
    blocks = re.findall(r"```" + language + r"\n(.*?)```", text, re.S)
    assert len(blocks) == 1, f"docs/onnx.md has {len(blocks)} ```{language} blocks"
    return blocks[0]


def check_greedy_text(binary, work, models):
    sample_js = os.path.join(work, "sample.mjs")
    with open(sample_js, "w", encoding="utf-8") as f:
        f.write(doc_example("js"))
    sample_py = os.path.join(work, "sample.py")
    with open(sample_py, "w", encoding="utf-8") as f:
        f.write(doc_example("python"))
    has_ort_python = subprocess.run([sys.executable, "-c", "import onnxruntime"], capture_output=True).returncode == 0
    if not has_ort_python:
        print("note: python has no onnxruntime; docs/onnx.md's Python example is only compiled, not run")
        compile(doc_example("python"), "docs/onnx.md's Python example", "exec")  # a SyntaxError fails the test
    for (cell, layers), (ckpt, onnx_path, _) in models.items():
        expected = as_printed(PRIME + continuation(binary, ckpt, PRIME, 60, 0, 0))
        result = subprocess.run(["node", sample_js, onnx_path, PRIME, "60", "0"], cwd=work, capture_output=True,
                                text=True, encoding="utf-8", timeout=60)
        text = result.stdout[:-1] if result.stdout.endswith("\n") else result.stdout  # the example adds a newline
        check(result.returncode == 0 and as_printed(text) == expected,
              f"{cell}{layers}: docs/onnx.md's JS example, greedy, gives charrnn generate's text\n"
              f"  js:       {result.stdout!r} {result.stderr[-300:]}\n  generate: {expected!r}")
        if has_ort_python:
            result = subprocess.run([sys.executable, sample_py, onnx_path, PRIME, "60", "0"], capture_output=True,
                                    text=True, encoding="utf-8", timeout=60)
            check(result.returncode == 0 and as_printed(result.stdout[:-1]) == expected,
                  f"{cell}{layers}: docs/onnx.md's Python example, greedy, gives charrnn generate's text "
                  f"{result.stdout!r} {result.stderr[-300:]}")


def check_web(work, jobs):
    """jobs: [(label, module, cases, onnx_path)]: the same cases in onnxruntime-web."""
    site = os.path.join(work, "site")
    shutil.rmtree(site, ignore_errors=True)
    os.makedirs(os.path.join(site, "models"))
    os.symlink(os.path.join(work, "node_modules", "onnxruntime-web", "dist"), os.path.join(site, "dist"))
    shutil.copy(os.path.join(work, "cases.mjs"), site)
    shutil.copy(os.path.join(work, "page.html"), os.path.join(site, "index.html"))
    for _, _, _, onnx_path in jobs:
        shutil.copy(onnx_path, os.path.join(site, "models"))
    try:
        browser = start_chromium(work)
    except Unavailable as e:
        print(f"skipped: the onnxruntime-web part ({e})")
        return
    server = StaticSite(site)
    try:
        browser.set_script_timeout(60)
        browser.get(server.url)
        for label, module, cases, onnx_path in jobs:
            got = browser.execute_async_script("""
                const [url, cases, done] = arguments;
                const wait = () => window.pageReady
                    ? window.runModel(url, cases).then((r) => done(JSON.stringify(r)), (e) => done("error: " + e))
                    : setTimeout(wait, 50);
                wait();""", "/models/" + os.path.basename(onnx_path), cases)
            if not check(not got.startswith("error"), f"{label}: onnxruntime-web runs the model: {got[:300]}"):
                continue
            compare(label, module, cases, json.loads(got))
    finally:
        browser.quit()
        server.close()


def main():
    binary, work = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    try:
        import onnx  # noqa: F401
        import torch
    except ImportError as e:
        skip(f"python lacks {e.name}")
    os.makedirs(work, exist_ok=True)
    for entry in os.listdir(work):  # keep node_modules and the lock it came from
        if entry not in ("node_modules", "package-lock.json"):
            path = os.path.join(work, entry)
            shutil.rmtree(path) if os.path.isdir(path) and not os.path.islink(path) else os.remove(path)
    install_packages(work)
    bad = subprocess.run([binary, "export", "--checkpoint", "x.pt", "--format", "tflite", "--out", "m"],
                         capture_output=True, text=True)
    check(bad.returncode == 2 and "--format must be one of torchscript, web, onnx" in bad.stderr,
          f"an unknown --format is a usage error: {bad.returncode} {bad.stderr.strip()}")

    started = time.time()
    models = train_models(binary, work)
    print(f"trained and exported {len(models)} models in {time.time() - started:.1f} s", flush=True)
    _, onnx_path, ts_path = models[("lstm", 2)]
    from_export = os.path.join(work, "from-export.onnx")
    charrnn(binary, "export", "--checkpoint", ts_path, "--format", "onnx", "--out", from_export)
    check(open(from_export, "rb").read() == open(onnx_path, "rb").read(),
          "export --format onnx from a TorchScript export writes the same bytes as from its checkpoint")
    jobs, modules = [], {}
    for i, ((cell, layers), (ckpt, onnx_path, ts_path)) in enumerate(models.items()):
        module = torch.jit.load(ts_path)
        modules[(cell, layers)] = module
        check_model_file(onnx_path, module, json.loads(module.config_json))
        jobs.append({"model": onnx_path, "cases": make_cases(module, i)})
    result = subprocess.run(["node", os.path.join(work, "check.mjs")], input=json.dumps(jobs), cwd=work,
                            capture_output=True, text=True, timeout=120)
    if not check(result.returncode == 0, f"onnxruntime-node runs every model: {result.stderr[-1000:]}"):
        return finish()
    for job, got, key in zip(jobs, json.loads(result.stdout), models):
        compare(f"onnxruntime-node {key[0]}{key[1]}", modules[key], job["cases"], got)

    print(f"onnxruntime-node done at {time.time() - started:.1f} s", flush=True)
    check_greedy_text(binary, work, models)
    print(f"greedy text done at {time.time() - started:.1f} s", flush=True)
    web = [(f"onnxruntime-web {cell}{layers}", modules[(cell, layers)], job["cases"], job["model"])
           for job, (cell, layers) in zip(jobs, models)]
    check_web(work, web)
    print(f"onnxruntime-web done at {time.time() - started:.1f} s", flush=True)
    return finish()


if __name__ == "__main__":
    sys.exit(main())
