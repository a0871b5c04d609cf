// The official OpenAI Node client, unmodified but for its base URL, against
// `charrnn serve`. Prints one JSON object of what it got; check_openai_client.py
// compares it with `charrnn generate`. Usage: node client.mjs CONFIG_JSON
import OpenAI from "openai";

const config = JSON.parse(process.argv[2]);
const client = new OpenAI({ baseURL: config.base_url, apiKey: config.api_key, maxRetries: 0, timeout: 60000 });
const out = {};

const caught = async (what) => {
  try {
    await what();
    return null;
  } catch (e) {
    return { type: e.constructor.name, status: e.status ?? null, code: e.code ?? null, param: e.param ?? null,
             message: e.message ?? "" };
  }
};

const models = await client.models.list();
out.models = models.data.map((m) => ({ id: m.id, object: m.object, cell: m.cell, vocab_size: m.vocab_size }));
const model = out.models[0].id;

const one = { model, prompt: config.prompt, max_tokens: config.max_tokens, temperature: 0.8, seed: 7 };
const completion = await client.completions.create(one);
out.completion = { object: completion.object, text: completion.choices[0].text,
                   finish_reason: completion.choices[0].finish_reason, usage: completion.usage };

let streamed = "", chunks = 0, finish = null;
for await (const chunk of await client.completions.create({ ...one, stream: true })) {
  chunks += 1;
  for (const choice of chunk.choices) {
    streamed += choice.text ?? "";
    if (choice.finish_reason) finish = choice.finish_reason;
  }
}
out.stream = { text: streamed, chunks, finish_reason: finish };

const several = await client.completions.create({ model, prompt: config.prompts, n: 2, max_tokens: 30,
                                                  temperature: 0.8, seed: 3 });
out.several = several.choices.map((c) => ({ index: c.index, text: c.text }));

const stopped = await client.completions.create({ model, prompt: config.prompt, max_tokens: config.max_tokens,
                                                  temperature: 0, stop: [config.stop] });
out.stopped = { text: stopped.choices[0].text, finish_reason: stopped.choices[0].finish_reason };

// logprobs (OpenAI's legacy shape, characters as tokens): with echo, then
// streamed, where each chunk carries its own characters'
const scored = { ...one, echo: true, logprobs: 5 };
const withLogprobs = await client.completions.create(scored);
out.logprobs = { text: withLogprobs.choices[0].text, logprobs: withLogprobs.choices[0].logprobs };
const joined = { tokens: [], token_logprobs: [], top_logprobs: [], text_offset: [] };
let streamedScored = "", chunksMatch = true;
for await (const chunk of await client.completions.create({ ...scored, stream: true })) {
  for (const choice of chunk.choices) {
    streamedScored += choice.text ?? "";
    const l = choice.logprobs;
    chunksMatch = chunksMatch && l.tokens.join("") === (choice.text ?? "");
    for (const key of Object.keys(joined)) joined[key].push(...l[key]);
  }
}
out.logprobs_stream = { text: streamedScored, logprobs: joined, chunks_match: chunksMatch };
// a text scored: nothing generated, the prompt's characters scored
const score = await client.completions.create({ model, prompt: config.scored_text, max_tokens: 0, echo: true,
                                                logprobs: 1 });
out.score = { text: score.choices[0].text, token_logprobs: score.choices[0].logprobs.token_logprobs };
out.bad_logprobs = await caught(() => client.completions.create({ ...one, logprobs: 6 }));

const wrong = new OpenAI({ baseURL: config.base_url, apiKey: "not-the-key", maxRetries: 0 });
out.wrong_key = await caught(() => wrong.completions.create(one));
out.bad_temperature = await caught(() => client.completions.create({ ...one, temperature: 5 }));
out.unseen = await caught(() => client.completions.create({ ...one, prompt: config.unseen_prompt }));

console.log(JSON.stringify(out));
