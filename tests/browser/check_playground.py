#!/usr/bin/env python3
"""The playground page of `charrnn serve` in a real browser.

Trains a small model on a text it writes itself, starts `charrnn serve
--api-key` on a loopback port and drives Debian's chromium (headless, a
fresh profile) through chromium-driver with selenium, as a user would:
types a prompt and the sampling settings, clicks Generate, and reads the
text the page streams in. Checks that the page shows charrnn generate's
very text for the same prompt, length, settings and seed, that it arrived
in more than one piece, that a wrong key shows the server's 401 message,
that "show probabilities" colours each character by the probability the
API gives it and shows, on hover, the API's own top_logprobs there, and
that Stop ends a long stream and frees its slot on the server.

Usage: check_playground.py CHARRNN_BINARY WORK_DIR   (run by ctest)
Exits 77 (skipped) when selenium, chromium or chromium-driver is missing or
the browser does not start; non-zero on any failed check.
"""
import json
import math
import os
import shutil
import sys
import time
import urllib.request

from selenium.webdriver.common.action_chains import ActionChains

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, ".."))
from script_support import (Server, as_printed, shown_character, check, continuation, finish, chromium_or_skip,  # noqa: E402
                            train_small_model, wait_for)

KEY = "sekret"



def set_field(browser, element_id, value):
    field = browser.find_element("id", element_id)
    field.clear()
    field.send_keys(str(value))


def text_of(browser, element_id):
    return browser.execute_script(f"return document.getElementById('{element_id}').textContent;")


def status_of(browser):
    return text_of(browser, "status")


def fill_in(browser, key, prompt, length, temperature, top_k, top_p, seed):
    for element_id, value in [("key", key), ("prompt", prompt), ("length", length), ("temperature", temperature),
                              ("top_k", top_k), ("top_p", top_p), ("seed", seed)]:
        set_field(browser, element_id, value)


def generate(browser):
    """Clicks Generate and waits for the page to say it is done; returns the
    streamed text and how many times the page changed it while streaming."""
    # count the page's updates of the text: more than one means it streamed in
    browser.execute_script("""
        window.textUpdates = 0;
        new MutationObserver(() => { window.textUpdates += 1; })
            .observe(document.getElementById('text'), {childList: true, characterData: true, subtree: true});""")
    browser.find_element("id", "generate").click()
    wait_for(lambda: "(done" in status_of(browser) or "error" in status_of(browser), 60, "the page to finish")
    return text_of(browser, "text"), browser.execute_script("return window.textUpdates;")


def active_streams(url):
    request = urllib.request.Request(url + "/metrics", headers={"Authorization": f"Bearer {KEY}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        for line in response.read().decode().splitlines():
            if line.startswith("charrnn_active_streams "):
                return int(float(line.split()[1]))
    raise RuntimeError("/metrics has no charrnn_active_streams")


def api_logprobs(url, body):
    request = urllib.request.Request(url + "/v1/completions", data=json.dumps(body).encode(),
                                     headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.load(response)["choices"][0]


def bucket(probability):
    """The page's colour class for a probability (its legend's bounds)."""
    return "p" + str(sum(probability >= bound for bound in (0.05, 0.2, 0.5, 0.8)))


def check_probabilities(browser, url):
    """Show probabilities: the page's colours and hovers against the API's
    logprobs for the same request (same seed, same numbers)."""
    browser.find_element("id", "show-probs").click()
    prompt, length, seed = "my love ", 120, 11
    fill_in(browser, KEY, prompt, length, 0.9, 0, 1, seed)
    text, _ = generate(browser)
    want = api_logprobs(url, {"prompt": prompt, "max_tokens": length, "temperature": 0.9, "seed": seed,
                              "logprobs": 5})
    l = want["logprobs"]
    check(text == want["text"] and len(l["tokens"]) == length, "with probabilities shown, the same text as the API's")
    spans = browser.find_elements("css selector", "#text .ch")
    classes = [span.get_attribute("class").split()[1] for span in spans]
    check(len(spans) == length and classes == [bucket(math.exp(v)) for v in l["token_logprobs"]],
          f"each character coloured by its probability: {len(spans)} spans, classes {sorted(set(classes))}")
    check(len(set(classes)) > 1, f"the colours differ between characters: {sorted(set(classes))}")
    check(not browser.find_element("id", "legend").get_attribute("hidden"), "the legend names the colours")
    hovered = 0
    # every 13th character, or the next one that is not a line break (a
    # newline's box is empty: a mouse cannot point at it, a keyboard can)
    samples = sorted({next(j for j in range(i, length) if l["tokens"][j] != "\n") for i in range(0, length - 10, 13)})
    for i in samples:
        ActionChains(browser).move_to_element(spans[i]).perform()
        wait_for(lambda: browser.find_element("id", "alternatives").is_displayed(), 5, "the alternatives to show")
        rows = browser.execute_script("""
            return [...document.querySelectorAll('#alternatives tr')].map(
                (tr) => [...tr.cells].map((td) => td.textContent));""")
        expected = sorted(l["top_logprobs"][i].items(), key=lambda kv: -kv[1])
        shown = [(ch, f"{100 * math.exp(v):.1f}%") for ch, v in expected]
        as_shown = [(shown_character(row[0]), row[1]) for row in rows]
        check(as_shown == shown, f"hovering character {i} shows the API's top_logprobs: {as_shown} vs {shown}")
        title = spans[i].get_attribute("title")
        check(title.endswith(f"{100 * math.exp(l['token_logprobs'][i]):.1f}%"),
              f"character {i}'s own probability is readable without colour: {title!r}")
        hovered += 1
    check(hovered >= 8, f"{hovered} characters hovered")
    newline = next((i for i, token in enumerate(l["tokens"]) if token == "\n"), None)
    if newline is not None:
        browser.execute_script("arguments[0].focus();", spans[newline])
        wait_for(lambda: "newline" in browser.find_element("id", "alternatives").text, 5, "a focused newline's numbers")
    browser.find_element("id", "show-probs").click()  # off again: plain text


def main():
    binary, work = sys.argv[1], sys.argv[2]
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    browser = chromium_or_skip(work)
    try:
        checkpoint = train_small_model(binary, work, prime="the night ")
        # --max-length: a stream long enough (about a million characters)
        # to be still running when Stop is clicked
        with Server(binary, checkpoint, "--api-key", KEY, "--max-length", "1000000") as server:
            browser.get(server.url + "/")
            check(browser.title and "charrnn" in browser.title.lower(), f"GET / is the playground: {browser.title!r}")
            # the prompt starts as the model's own prime, once the key lets the page ask for it
            check(browser.find_element("id", "prompt").get_attribute("value") == "",
                  "the page holds nothing of the model before the key is in")
            set_field(browser, "key", KEY)
            browser.find_element("id", "length").click()  # leaving the key field is its change event
            wait_for(lambda: browser.find_element("id", "prompt").get_attribute("value") == "the night ", 10,
                     "the prompt to start as the model's sample.prime")

            fill_in(browser, "wrong", "the night is ", 50, 0.8, 0, 1, 5)
            generate(browser)
            status = status_of(browser)
            check(status.startswith("error 401") and "error" in browser.find_element("id", "status").get_attribute("class"),
                  f"a wrong key shows the server's 401: {status!r}")

            prompt = "the night is "
            fill_in(browser, KEY, prompt, 3000, 0.8, 0, 1, 5)
            text, updates = generate(browser)
            expected = continuation(binary, checkpoint, prompt, 3000, 0.8, 5)
            check(as_printed(text) == expected,
                  f"the page shows charrnn generate's text for the same seed ({len(text)} characters)\n"
                  f"  page:     {text[:80]!r}...\n  generate: {expected[:80]!r}...")
            check(text_of(browser, "prompt-echo") == prompt, "the prompt is shown before the text")
            check(updates > 1, f"the text streamed in: {updates} updates of the page")
            status = status_of(browser)
            check("chars/s" in status and "(done: length)" in status, f"the status shows chars/s and the end: {status!r}")

            fill_in(browser, KEY, "my love ", 400, 1.2, 5, 0.9, 9)
            text, _ = generate(browser)
            expected = continuation(binary, checkpoint, "my love ", 400, 1.2, 9, top_k=5, top_p=0.9)
            check(as_printed(text) == expected, f"top-k 5, top-p 0.9, temperature 1.2: generate's text too ({text[:40]!r}...)")

            check_probabilities(browser, server.url)

            # a pasted prompt: its no-break space is replaced, the page says so, and the
            # text is what charrnn generate gives for the same typed prompt
            check(text_of(browser, "note") == "", "no note while nothing was replaced")
            fill_in(browser, KEY, "my\u00a0love ", 200, 0.8, 0, 1, 4)
            text, _ = generate(browser)
            expected = continuation(binary, checkpoint, "my love ", 200, 0.8, 4)
            check(as_printed(text) == expected, f"a folded prompt gives generate's text ({text[:40]!r}...)")
            note = text_of(browser, "note")
            check("U+00A0 -> U+0020 (x1)" in note, f"the page names what was replaced: {note!r}")

            # Stop: a stream as long as the server allows, stopped once text arrives
            fill_in(browser, KEY, prompt, 1000000, 0.8, 0, 1, "")
            browser.find_element("id", "generate").click()
            wait_for(lambda: len(text_of(browser, "text")) > 0, 30, "the first text")
            browser.find_element("id", "stop").click()
            wait_for(lambda: "(stopped)" in status_of(browser) or "(done" in status_of(browser), 30, "the page to stop")
            shown = len(text_of(browser, "text"))
            check("(stopped)" in status_of(browser) and shown < 1000000,
                  f"Stop ends the stream: {shown} of 1000000 characters, {status_of(browser)!r}")
            check(browser.find_element("id", "generate").is_enabled()
                  and not browser.find_element("id", "stop").is_enabled(), "after Stop, Generate is enabled again")
            freed = False
            for _ in range(100):
                freed = active_streams(server.url) == 0
                if freed:
                    break
                time.sleep(0.1)
            check(freed, "the stopped stream's slot is freed on the server (charrnn_active_streams 0)")
            model = text_of(browser, "model")
            check("songs: lstm" in model, f"once the key is in, the page names the model: {model!r}")
    finally:
        browser.quit()
    return finish()


if __name__ == "__main__":
    sys.exit(main())
