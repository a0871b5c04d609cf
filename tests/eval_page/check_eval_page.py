#!/usr/bin/env python3
"""The page of `charrnn eval --html` in a real browser, and eval's memory.

hover:  trains a small model on a text it writes, runs `charrnn eval --html
        page.html --per-char chars.jsonl --top-k 5` on another text of
        three pages (with characters the model never saw), opens the page
        from file:// in Debian's headless chromium through selenium and
        checks, as a user would see it: the summary's bpc is what eval
        prints; hovering characters on every page shows the same top-5
        characters and probabilities as the JSONL (to the page's stated
        precision: surprisals in 1/256 bit, probabilities to 4 digits);
        unknown and first characters say they are unscored; paging, the
        keyboard and a surprising span's link work; the console stays clean.
memory: eval --html of a 0.5 MB and a 5 MB text from a small alphabet with
        a tiny model: the largest resident set of the 5 MB run stays within
        15 MB of the 0.5 MB run's (a text held whole would add at least 18
        MB: 4.5 M more characters at 4 bytes each), the page stays under 32
        bytes per character, and chromium opens it with its first page
        shown and no console error.

Usage: check_eval_page.py hover|memory CHARRNN_BINARY WORK_DIR   (run by ctest)
Exits 77 (skipped) when selenium, chromium or chromium-driver is missing or
the browser does not start; non-zero on any failed check.
"""
import json
import math
import os
import random
import re
import shutil
import subprocess
import sys
import time

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, ".."))
from script_support import charrnn, check, finish, chromium_or_skip, train_small_model, wait_for  # noqa: E402

PAGE_CHARS = 10000  # SurprisalPageOptions' default
# 1/256 bit of surprisal is within 0.14% of the probability; 4 digits add 0.05%
PROBABILITY_TOLERANCE = 0.002



def console_errors(browser):
    return [entry["message"] for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]


def open_page(browser, path, seconds):
    browser.get("file://" + os.path.abspath(path))
    wait_for(lambda: browser.execute_script("return document.body && document.body.dataset.ready === 'true';"),
             seconds, "the page to be ready")


def text_of(browser, css):
    return browser.execute_script("const e = document.querySelector(arguments[0]); return e ? e.textContent : null;",
                                  css)


def write_eval_text(path):
    """About 25,000 characters of lines of words the model knows, with 'Z'
    and '€' (never in its training text) here and there."""
    rng = random.Random(5)
    words = "the night is fair and what light through yonder window breaks my love sings softly".split()
    lines = []
    while sum(len(line) + 1 for line in lines) < 25000:
        line = " ".join(rng.choice(words) for _ in range(rng.randint(4, 9))) + "."
        if rng.random() < 0.05:
            line = line.replace(" ", " Z€ ", 1)
        lines.append(line)
    text = "\n".join(lines)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return text


def go_to_page(browser, page):
    field = browser.find_element("id", "page-input")
    field.clear()
    field.send_keys(str(page + 1))
    browser.find_element("css selector", "#page-form button").click()
    wait_for(lambda: (text_of(browser, "#page-label") or "").startswith(f"Page {page + 1} of"), 5,
             f"page {page + 1} to show")


def hover(browser, offset):
    """Shows the page that holds `offset`, hovers its character and returns
    the tooltip: (heading lines, value line, [(code point, probability %)])."""
    from selenium.webdriver.common.action_chains import ActionChains
    go_to_page(browser, offset // PAGE_CHARS)
    span = browser.find_element("css selector", f'#text .c[data-i="{offset % PAGE_CHARS}"]')
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'});", span)
    ActionChains(browser).move_to_element(span).perform()
    wait_for(lambda: browser.execute_script("return !document.getElementById('tooltip').hidden;"), 5, "the tooltip")
    return browser.execute_script("""
        const t = document.getElementById('tooltip');
        return [t.querySelector('.tip-char div').textContent, t.querySelector('.tip-value').textContent,
                Array.from(t.querySelectorAll('.tip-top li')).map(
                    (li) => [Number(li.dataset.cp), li.querySelector('.tip-p').textContent])];""")


def close_enough(shown_percent, logprob):
    true = 100 * math.exp(logprob)
    return abs(float(shown_percent.rstrip("%")) - true) <= PROBABILITY_TOLERANCE * true


def check_hover(binary, work):
    browser = chromium_or_skip(work)
    try:
        checkpoint = train_small_model(binary, work, steps=40)
        text = write_eval_text(os.path.join(work, "held_out.txt"))
        page, jsonl = os.path.join(work, "page.html"), os.path.join(work, "chars.jsonl")
        printed = charrnn(binary, "eval", "--checkpoint", checkpoint, "--data", os.path.join(work, "held_out.txt"),
                          "--window", "64", "--html", page, "--per-char", jsonl, "--top-k", "5")
        bpc = re.search(r"^bpc\s+(\S+) bits/char", printed, re.M).group(1)
        scores = {}
        with open(jsonl, encoding="utf-8") as f:
            for line in f:
                j = json.loads(line)
                scores[j["offset"]] = j
        pages = math.ceil(len(text) / PAGE_CHARS)
        check(pages == 3, f"the text makes 3 pages of {PAGE_CHARS} characters ({len(text)} characters)")

        open_page(browser, page, 30)
        check(text_of(browser, "#bpc") == bpc, f"the summary's bpc is what eval prints ({text_of(browser, '#bpc')} vs {bpc})")
        check(text_of(browser, "#scored").replace(",", "") == str(len(scores)),
              f"the summary counts {len(scores)} characters scored")
        unknown = sum(1 for c in text if c in "Z€")
        check(text_of(browser, "#unknown").replace(",", "") == str(unknown), f"and {unknown} unknown")
        check(text_of(browser, "#lines").replace(",", "") == str(text.count("\n") + 1), "and every line")
        check(text_of(browser, "#page-label").startswith(f"Page 1 of {pages}"), "it opens on page 1")

        # a sample of characters on every page, the last ones included
        rng = random.Random(3)
        known = sorted(scores)
        sample = sorted(rng.sample(known, 24) + [known[-1], PAGE_CHARS + 5, 2 * PAGE_CHARS + 1])
        for offset in sample:
            if offset not in scores:
                continue
            heading, value, top = hover(browser, offset)
            want = scores[offset]
            ok_heading = heading.startswith(f"character {offset + 1}:")
            ok_value = "p = " in value and close_enough(value.split("p = ")[1].split(",")[0], want["logprob"])
            ok_top = [cp for cp, _ in top] == [ord(c) for c, _ in want["top"]] and all(
                close_enough(p, lp) for (_, p), (_, lp) in zip(top, want["top"]))
            check(ok_heading and ok_value and ok_top,
                  f"character {offset} (page {offset // PAGE_CHARS + 1}): the tooltip shows the JSONL's probability "
                  f"and top 5 ({value}; {top} vs {want['top']})")

        # what nothing scores
        z = text.index("Z")
        _, value, top = hover(browser, z)
        check("not in the model's vocabulary" in value and top == [], f"'Z' at {z} is marked unscored: {value}")
        _, value, _ = hover(browser, 0)
        check("first character" in value, f"the first character is marked unscored: {value}")

        # paging
        go_to_page(browser, 0)
        browser.find_element("id", "next").click()
        check(text_of(browser, "#page-label").startswith(f"Page 2 of {pages}"), "Next shows page 2")
        browser.find_element("id", "prev").click()
        check(text_of(browser, "#page-label").startswith(f"Page 1 of {pages}"), "Previous shows page 1 again")
        check(browser.execute_script("return document.getElementById('prev').disabled;"), "no page before the first")

        # the keyboard: focus, then the arrow keys
        from selenium.webdriver.common.keys import Keys
        browser.find_element("id", "next").click()
        area = browser.find_element("id", "text")
        browser.execute_script("arguments[0].focus();", area)
        area.send_keys(Keys.ARROW_RIGHT)
        area.send_keys(Keys.ARROW_RIGHT)
        heading = text_of(browser, "#tooltip .tip-char div")
        check((heading or "").startswith(f"character {PAGE_CHARS + 3}:"), f"the arrow keys move along the text: {heading}")

        # the most surprising span's link jumps to its page and marks it
        link = browser.find_element("css selector", "#spans a.span-link")
        start, end = int(link.get_attribute("data-start")), int(link.get_attribute("data-end"))
        link.click()
        check(text_of(browser, "#page-label").startswith(f"Page {start // PAGE_CHARS + 1} of"),
              f"the first span's link shows its page (character {start + 1})")
        check(browser.execute_script("return document.querySelectorAll('#text .mark').length;")
              == min(end, (start // PAGE_CHARS + 1) * PAGE_CHARS) - start, "and marks its characters")
        errors = console_errors(browser)
        check(not errors, f"the console shows no error: {errors}")
    finally:
        browser.quit()


def max_rss_kb(args, out_path):
    """Runs charrnn with `args` and returns its own largest resident set (KB)."""
    with open(out_path, "w") as out:
        child = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(child.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        with open(out_path) as f:
            raise RuntimeError(f"{' '.join(args)} failed: {f.read()}")
    return usage.ru_maxrss


def write_alphabet_text(path, size, seed):
    rng = random.Random(seed)
    words = ["abc", "bad", "cab", "dab", "ace", "bead", "fade", "ef"]
    parts, total = [], 0
    while total < size:
        line = " ".join(rng.choice(words) for _ in range(rng.randint(3, 9))) + "\n"
        parts.append(line)
        total += len(line)
    with open(path, "w", encoding="utf-8") as f:
        f.write("".join(parts)[:size])


def check_memory(binary, work):
    browser = chromium_or_skip(work)
    try:
        train_text, checkpoint = os.path.join(work, "alphabet.txt"), os.path.join(work, "tiny.pt")
        write_alphabet_text(train_text, 20000, 1)
        # the smallest cell, so that 5 M characters read one after another take seconds
        charrnn(binary, "train", "--config", os.path.join(here, "..", "..", "configs", "tiny.json"),
                "--set", f"data.path={train_text}", "--set", f"train.checkpoint={checkpoint}", "--set", "train.steps=10",
                "--set", "train.device=cpu", "--set", "model.cell=rnn", "--set", "model.hidden_size=8",
                "--set", "model.embedding_dim=4")
        rss, sizes = {}, {}
        for name, size in [("half", 500_000), ("five", 5_000_000)]:
            text, page = os.path.join(work, name + ".txt"), os.path.join(work, name + ".html")
            write_alphabet_text(text, size, 2)
            started = time.monotonic()
            rss[name] = max_rss_kb([binary, "eval", "--checkpoint", checkpoint, "--data", text, "--window", "4096",
                                    "--device", "cpu", "--html", page], os.path.join(work, name + ".out"))
            sizes[name] = os.path.getsize(page)
            print(f"{name}: {size} characters, max RSS {rss[name] / 1024:.1f} MB, page {sizes[name] / 1e6:.1f} MB "
                  f"({sizes[name] / size:.1f} bytes/character), {time.monotonic() - started:.1f} s", flush=True)
        check(rss["five"] <= rss["half"] + 15 * 1024,
              f"eval --html's memory stays flat: {rss['five'] / 1024:.1f} MB for 5 MB of text, "
              f"{rss['half'] / 1024:.1f} MB for 0.5 MB")
        check(sizes["five"] < 32 * 5_000_000, f"the page takes under 32 bytes per character ({sizes['five']} bytes)")

        started = time.monotonic()
        open_page(browser, os.path.join(work, "five.html"), 120)
        print(f"chromium opened the 5 MB page in {time.monotonic() - started:.1f} s", flush=True)
        check(text_of(browser, "#page-label").startswith(f"Page 1 of {math.ceil(5_000_000 / PAGE_CHARS)}"),
              "the 5 MB page opens on its first page")
        check(browser.execute_script("return document.querySelectorAll('#text .c').length;") == PAGE_CHARS,
              "with its characters shown")
        errors = console_errors(browser)
        check(not errors, f"the console shows no error: {errors}")
    finally:
        browser.quit()


def main():
    mode, binary, work = sys.argv[1], sys.argv[2], sys.argv[3]
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    {"hover": check_hover, "memory": check_memory}[mode](binary, work)
    return finish()


if __name__ == "__main__":
    sys.exit(main())
