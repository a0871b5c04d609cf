// The page charrnn serve answers GET / with: a prompt, the sampling
// controls, Generate and Stop, the text streamed in as it arrives and the
// rate. Self-contained (no CDN, no other file), so it works offline.
#pragma once

namespace charrnn::cli {

inline constexpr const char* kPlaygroundHtml = R"html(<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>charrnn playground</title>
<style>
  body { font-family: system-ui, sans-serif; max-width: 56rem; margin: 1.5rem auto; padding: 0 1rem; color: #222; }
  h1 { font-size: 1.3rem; }
  textarea { width: 100%; height: 6rem; font-family: ui-monospace, monospace; font-size: 0.95rem; }
  .controls { display: flex; flex-wrap: wrap; gap: 0.8rem; margin: 0.6rem 0; align-items: end; }
  .controls label { display: flex; flex-direction: column; font-size: 0.8rem; }
  .controls input { width: 6rem; }
  #key { width: 12rem; }
  button { padding: 0.4rem 1.1rem; font-size: 1rem; }
  #output { white-space: pre-wrap; font-family: ui-monospace, monospace; border: 1px solid #ccc; padding: 0.8rem;
            min-height: 8rem; background: #fafafa; }
  #prompt-echo { color: #777; }
  #status { font-size: 0.85rem; color: #555; margin: 0.4rem 0; min-height: 1.2rem; }
  #note { font-size: 0.85rem; color: #555; margin: 0.4rem 0; }
  .error { color: #a00; }
</style>
</head>
<body>
<h1>charrnn playground <span id="model" style="font-weight: normal; color: #666"></span></h1>
<textarea id="prompt" placeholder="Text for the model to continue"></textarea>
<div class="controls">
  <label>length <input id="length" type="number" min="0" value="300"></label>
  <label>temperature <input id="temperature" type="number" min="0" max="2" step="0.05" value="0.8"></label>
  <label>top-k <input id="top_k" type="number" min="0" step="1" value="0"></label>
  <label>top-p <input id="top_p" type="number" min="0.01" max="1" step="0.01" value="1"></label>
  <label>seed (empty: random) <input id="seed" type="number" step="1" value=""></label>
  <label>API key <input id="key" type="password" placeholder="only if the server needs one"></label>
  <button id="generate">Generate</button>
  <button id="stop" disabled>Stop</button>
</div>
<div id="status"></div>
<div id="note"></div>
<div id="output"><span id="prompt-echo"></span><span id="text"></span></div>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
let controller = null;
let promptEdited = false;  // the model's own prime fills the prompt until the user types

function headers() {
  const h = { "Content-Type": "application/json" };
  if ($("key").value) h["Authorization"] = "Bearer " + $("key").value;
  return h;
}

async function showModel() {
  try {
    const res = await fetch("/v1/models", { headers: headers() });
    if (!res.ok) return;
    const m = (await res.json()).data[0];
    $("model").textContent = `${m.id}: ${m.cell} ${m.num_layers}x${m.hidden_size}, ${m.vocab_size} characters`;
    if (!promptEdited && m.sample_prime) $("prompt").value = m.sample_prime;
  } catch (e) { /* the page works without it */ }
}

async function generate() {
  // a server with a key names its model (and fills in its prime) once the key is in
  if (!$("model").textContent) await showModel();
  const body = {
    prompt: $("prompt").value,
    max_tokens: Number($("length").value),
    temperature: Number($("temperature").value),
    top_k: Number($("top_k").value),
    top_p: Number($("top_p").value),
    stream: true,
  };
  if ($("seed").value !== "") body.seed = Number($("seed").value);
  $("prompt-echo").textContent = body.prompt;
  $("text").textContent = "";
  $("status").textContent = "waiting for the first character...";
  $("status").className = "";
  $("generate").disabled = true;
  $("stop").disabled = false;
  controller = new AbortController();
  const started = performance.now();
  let chars = 0, first = null, reason = "";
  try {
    const res = await fetch("/v1/completions", { method: "POST", headers: headers(), body: JSON.stringify(body),
                                                 signal: controller.signal });
    if (!res.ok) {
      const err = await res.json().catch(() => ({ error: { message: res.statusText } }));
      throw new Error(`${res.status}: ${err.error.message}`);
    }
    const replaced = res.headers.get("X-Charrnn-Prompt-Substitutions");
    $("note").textContent = replaced ? `characters the model never saw were replaced: ${replaced}` : "";
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const event = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        if (!event.startsWith("data: ")) continue;
        const data = event.slice(6);
        if (data === "[DONE]") continue;
        const choice = JSON.parse(data).choices[0];
        if (choice.text) {
          if (first === null) first = performance.now();
          $("text").textContent += choice.text;
          chars += [...choice.text].length;
        }
        if (choice.finish_reason) reason = choice.finish_reason;
        const seconds = (performance.now() - (first ?? started)) / 1000;
        $("status").textContent = `${chars} characters, ${seconds > 0 ? (chars / seconds).toFixed(0) : "-"} chars/s` +
          (first !== null ? `, first after ${((first - started)).toFixed(0)} ms` : "");
      }
    }
    $("status").textContent += reason ? ` (done: ${reason})` : " (done)";
  } catch (e) {
    if (e.name === "AbortError") {
      $("status").textContent += " (stopped)";
    } else {
      $("status").textContent = "error " + e.message;
      $("status").className = "error";
    }
  } finally {
    $("generate").disabled = false;
    $("stop").disabled = true;
    controller = null;
  }
}

$("generate").addEventListener("click", generate);
$("stop").addEventListener("click", () => controller && controller.abort());
$("prompt").addEventListener("keydown", (e) => { if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) generate(); });
$("prompt").addEventListener("input", () => { promptEdited = true; });
$("key").addEventListener("change", () => { if (!$("model").textContent) showModel(); });
showModel();
</script>
</body>
</html>
)html";

}  // namespace charrnn::cli
