// onnxruntime-node on the jobs check_onnx.py gives as JSON on stdin:
// [{model: PATH, cases: [...]}, ...] (cases.mjs); prints the results as
// JSON, one list of case results per job, plus each session's input and
// output names.
import { readFileSync } from "node:fs";
import * as ort from "onnxruntime-node";
import { runCases } from "./cases.mjs";

const jobs = JSON.parse(readFileSync(0, "utf-8"));
const out = [];
for (const job of jobs) {
  const session = await ort.InferenceSession.create(job.model, { executionProviders: ["cpu"] });
  out.push({ inputs: session.inputNames, outputs: session.outputNames, results: await runCases(ort, session, job.cases) });
}
process.stdout.write(JSON.stringify(out));
