// Runs llama.cpp (node-llama-cpp's CPU build) on a GGUF and answers a list of tasks as JSON.
// Usage: node llama-oracle.mjs REQUEST.json RESPONSE.json
// Request: {"model": path, "oracleDir": dir, "vocabSize": n, "threads": 1, "contextSize": 512, "kvType": "F32",
//           "vocabOnly": false, "tasks": [task...]}
// With vocabOnly a GGUF of metadata alone is enough for tokenize tasks (llama.cpp then logs a missing tensor
// and a failed load on stderr, but the vocabulary loads).
//   {"type": "tokenize", "texts": [...]}                 -> {"tokens": [[ids]...]} (no BOS, no special parsing),
//       "specialTokens" (the same with control tokens in the text parsed) and "texts" (detokenized "tokens")
//   {"type": "logprobs", "tokens": [ids]}                -> {"logprobs": [[vocab floats] per position]}
//   {"type": "greedy", "tokens": [ids], "maxTokens": n}  -> {"tokens": [generated ids]}
//   {"type": "speed", "tokens": [ids], "decodeTokens": n} -> {"promptSeconds", "decodeSeconds", "generated"}
//   {"type": "stepCost", "tokens": [prefix ids], "steps": [[ids]...], "reps": n}
//       -> {"ms": [[n times] per step]}: each step's tokens appended to the prefix in one batch with logits (and a
//       greedy token) at each, then erased again; a warm-up call first
// Runs from a file on purpose: node-llama-cpp's binary self-test fails under `node -e`.
import fs from "node:fs";
import path from "node:path";
import {pathToFileURL} from "node:url";

const [requestPath, responsePath] = process.argv.slice(2);
const request = JSON.parse(fs.readFileSync(requestPath, "utf8"));
const entry = path.join(request.oracleDir, "node_modules", "node-llama-cpp", "dist", "index.js");
const {getLlama} = await import(pathToFileURL(entry).href);

const llama = await getLlama({gpu: false, build: "never", logLevel: "error"});
const model = await llama.loadModel({modelPath: request.model, vocabOnly: request.vocabOnly ?? false, gpuLayers: 0});
const threads = request.threads ?? 1;
const contextSize = request.contextSize ?? 512;
// The KV cache type ("F32" or "F16", llama.cpp's default): with F16, llama.cpp also rounds queries and
// attention weights to f16, so an exact engine only matches it closely with an F32 cache.
const kvType = {F32: 0, F16: 1}[request.kvType ?? "F32"]; // GgmlType ids, as the addon takes them
// Full distribution: no truncation, temperature 1, so probabilities are softmax(logits).
const plain = {temperature: 1, topK: 0, topP: 1, minP: 0};

async function withSequence(fn) {
    const context = await model.createContext({contextSize, threads, batchSize: contextSize, sequences: 1,
        experimentalKvCacheKeyType: kvType, experimentalKvCacheValueType: kvType, flashAttention: false});
    const sequence = context.getSequence();
    try {
        return await fn(sequence);
    } finally {
        sequence.dispose();
        await context.dispose();
    }
}

async function logprobs(tokens) {
    return withSequence(async (sequence) => {
        const input = tokens.map((t) => [t, {generateNext: {probabilities: true, options: plain}}]);
        const out = await sequence.controlledEvaluate(input);
        const vocab = request.vocabSize; // the caller knows it from the GGUF; the JS API does not expose it
        return out.map((o) => {
            const row = new Array(vocab).fill(-1e30);
            for (const [token, p] of o.next.probabilities) row[token] = p > 0 ? Math.log(p) : -1e30;
            return row;
        });
    });
}

async function greedy(tokens, maxTokens) {
    return withSequence(async (sequence) => {
        const generated = [];
        for await (const token of sequence.evaluate(tokens, {temperature: 0})) {
            generated.push(token);
            if (generated.length >= maxTokens) break;
        }
        return generated;
    });
}

// SPECULA_BENCH_CLOCK=cpu: the process's CPU time (user + system) instead of the wall clock, for a machine
// shared with other work, where a one-thread run's CPU time is what it would take alone.
const cpuClock = process.env.SPECULA_BENCH_CLOCK === "cpu";
function clockNs() {
    if (!cpuClock) return process.hrtime.bigint();
    const u = process.cpuUsage();
    return BigInt(u.user + u.system) * 1000n;
}

async function speed(tokens, decodeTokens) {
    return withSequence(async (sequence) => {
        const t0 = clockNs();
        await sequence.evaluateWithoutGeneratingNewTokens(tokens);
        const t1 = clockNs();
        let generated = 0;
        let last = tokens[tokens.length - 1];
        // One token at a time, as plain decoding does; the first call samples after the prompt.
        for await (const token of sequence.evaluate([last], {temperature: 0})) {
            generated++;
            if (generated >= decodeTokens) break;
        }
        const t2 = clockNs();
        return {promptSeconds: Number(t1 - t0) / 1e9, decodeSeconds: Number(t2 - t1) / 1e9, generated};
    });
}

// The cost of evaluating T tokens at once after a prefix, with logits at each: llama.cpp's side of a verify step.
async function stepCost(prefix, steps, reps) {
    return withSequence(async (sequence) => {
        await sequence.evaluateWithoutGeneratingNewTokens(prefix);
        const greedyNext = {generateNext: {token: true, options: {temperature: 0}}};
        const ms = [];
        for (const step of steps) {
            const times = [];
            for (let r = 0; r <= reps; r++) {
                const t0 = clockNs();
                await sequence.controlledEvaluate(step.map((t) => [t, greedyNext]));
                const t1 = clockNs();
                await sequence.eraseContextTokenRanges([{start: prefix.length, end: prefix.length + step.length}]);
                if (r > 0) times.push(Number(t1 - t0) / 1e6);
            }
            ms.push(times);
        }
        return {ms};
    });
}

const results = [];
for (const task of request.tasks) {
    if (task.type === "tokenize") {
        const tokens = task.texts.map((t) => Array.from(model.tokenize(t, false)));
        results.push({
            tokens,
            specialTokens: task.texts.map((t) => Array.from(model.tokenize(t, true))),
            texts: tokens.map((ids) => model.detokenize(ids, false)),
        });
    } else if (task.type === "logprobs") {
        results.push({logprobs: await logprobs(task.tokens)});
    } else if (task.type === "greedy") {
        results.push({tokens: await greedy(task.tokens, task.maxTokens)});
    } else if (task.type === "speed") {
        results.push(await speed(task.tokens, task.decodeTokens));
    } else if (task.type === "stepCost") {
        results.push(await stepCost(task.tokens, task.steps, task.reps));
    } else {
        throw new Error(`unknown task type ${task.type}`);
    }
}
fs.writeFileSync(responsePath, JSON.stringify({model: request.model, results}));
await model.dispose();
await llama.dispose();
