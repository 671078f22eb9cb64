// Oracle side of the export check: runs llama.cpp (via node-llama-cpp, CPU, 1 thread)
// on a GGUF file. Usage: node verify_llamacpp.mjs <request.json> <response.json>
// request: {model, oracle_dir, n_gen, ctx, prompts: [text...], tokenize_only: [text...]}
// response: per prompt {tokens (tokenize, no BOS), greedy ([BOS]+tokens, temperature 0),
//                       last_probs (top-20 [token, prob] after the prompt, full softmax)}
import fs from "node:fs";
import path from "node:path";
import {pathToFileURL} from "node:url";

const [reqPath, outPath] = process.argv.slice(2);
const req = JSON.parse(fs.readFileSync(reqPath, "utf8"));
const lib = path.join(req.oracle_dir, "node_modules", "node-llama-cpp", "dist", "index.js");
const {getLlama} = await import(pathToFileURL(lib).href);

const llama = await getLlama({gpu: false, build: "never", logLevel: "error"});
const model = await llama.loadModel({modelPath: req.model});
const bos = model.tokens.bos;
const results = [];
for (const text of req.prompts) {
    const tokens = Array.from(model.tokenize(text, false));
    const ctx = await model.createContext({contextSize: req.ctx ?? 512, threads: 1, batchSize: 512, sequences: 2});
    // 1) full next-token distribution after the prompt (temperature 1, no truncation)
    let seq = ctx.getSequence();
    const input = [bos, ...tokens].map((t, i, a) => i === a.length - 1
        ? [t, {generateNext: {probabilities: true, options: {temperature: 1, topK: 0, topP: 1, minP: 0}}}]
        : t);
    const out = await seq.controlledEvaluate(input);
    const probs = out[input.length - 1]?.next?.probabilities;
    const lastProbs = probs ? [...probs.entries()].sort((a, b) => b[1] - a[1]).slice(0, 20) : null;
    seq.dispose();
    // 2) greedy continuation
    seq = ctx.getSequence();
    const greedy = [];
    for await (const tok of seq.evaluate([bos, ...tokens], {temperature: 0})) {
        greedy.push(tok);
        if (greedy.length >= req.n_gen) break;
    }
    seq.dispose();
    await ctx.dispose();
    results.push({text, tokens, greedy, last_probs: lastProbs});
}
// tokenization-only checks (e.g. the benchmark prompts)
const tokOnly = (req.tokenize_only ?? []).map((t) => Array.from(model.tokenize(t, false)));
fs.writeFileSync(outPath, JSON.stringify({model: req.model, bos, results, tokenize_only: tokOnly}));
await model.dispose();
await llama.dispose();
