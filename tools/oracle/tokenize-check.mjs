#!/usr/bin/env node
// Tokenizes strings with llama.cpp (through node-llama-cpp's prebuilt CPU binaries) and prints
// the token ids as JSON, so that Specula's Java tokenizers can be compared with llama.cpp.
//
//   node tools/oracle/tokenize-check.mjs MODEL.gguf STRINGS.json [OUT.json]
//
// STRINGS.json holds a JSON array of strings. The result is a JSON object
//   {"tokens": [[id, ...], ...], "specialTokens": [[id, ...], ...], "texts": ["...", ...]}
// with, for each string, llama.cpp's tokenize(text, add_special = false, parse_special = false),
// the same with parse_special = true (control tokens written in the text become their ids), and
// llama.cpp's detokenize of the first ids (remove_special = false, unparse_special = false).
// It is written to OUT.json when given, else printed on stdout as the last line.
//
// node-llama-cpp is found in $SPECULA_ORACLE_DIR/node_modules (default
// ~/.cache/specula/oracle/node_modules). The model is loaded with vocabOnly, so a GGUF that holds
// only metadata (no tensors) is enough; llama.cpp then logs "missing tensor 'token_embd.weight'"
// and "failed to load model" on stderr while loading, but the vocabulary loads and works. Run it
// as a file: `node -e` fails node-llama-cpp's binary self-test.

import {createRequire} from "node:module";
import {readFileSync, writeFileSync} from "node:fs";
import {homedir} from "node:os";
import {join, resolve} from "node:path";
import {pathToFileURL} from "node:url";

const [modelArg, stringsArg, outArg] = process.argv.slice(2);
if (!modelArg || !stringsArg) {
    console.error("usage: tokenize-check.mjs MODEL.gguf STRINGS.json [OUT.json]");
    process.exit(2);
}

const oracleDir = process.env.SPECULA_ORACLE_DIR ?? join(homedir(), ".cache", "specula", "oracle");
const require = createRequire(join(oracleDir, "package.json"));
const entry = require.resolve("node-llama-cpp");
const {getLlama, LlamaLogLevel} = await import(pathToFileURL(entry).href);

const llama = await getLlama({
    gpu: false,
    build: "never",
    usePrebuiltBinaries: true,
    skipDownload: true,
    progressLogs: false,
    logLevel: LlamaLogLevel.error,
});
const model = await llama.loadModel({modelPath: resolve(modelArg), vocabOnly: true, gpuLayers: 0});

const strings = JSON.parse(readFileSync(stringsArg, "utf8"));
const tokens = [];
const specialTokens = [];
const texts = [];
for (const text of strings) {
    const ids = Array.from(model.tokenize(text, false));
    tokens.push(ids);
    specialTokens.push(Array.from(model.tokenize(text, true)));
    texts.push(model.detokenize(ids, false));
}

const result = JSON.stringify({tokens, specialTokens, texts});
if (outArg) {
    writeFileSync(outArg, result);
} else {
    process.stdout.write(result + "\n");
}
await model.dispose();
await llama.dispose();
