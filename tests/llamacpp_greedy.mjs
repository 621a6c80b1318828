// llamacpp_greedy.mjs MODEL.gguf N ID...: load a GGUF with llama.cpp (node-llama-cpp, CPU build,
// no download or compilation), evaluate the prompt ids and print N greedy (temperature 0) ids.
// Exit 77 when node-llama-cpp or its prebuilt binary is unavailable. The package is looked up
// from the directories in NB_NODE_MODULES (colon-separated, each holding node_modules/), then as
// a plain import.
import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";
import { join } from "node:path";

let lib;
try {
    let found = null;
    for (const dir of (process.env.NB_NODE_MODULES || "").split(":").filter(Boolean)) {
        try {
            found = createRequire(join(dir, "package.json")).resolve("node-llama-cpp");
            break;
        } catch (e) {}
    }
    lib = await import(found ? pathToFileURL(found).href : "node-llama-cpp");
} catch (e) {
    console.error("SKIP: node-llama-cpp is not installed: " + e.message);
    process.exit(77);
}
const [modelPath, nStr, ...ids] = process.argv.slice(2);
const n = parseInt(nStr, 10);
const prompt = ids.map((x) => parseInt(x, 10));
let llama;
try {
    llama = await lib.getLlama({ gpu: false, build: "never", logLevel: "error" });
} catch (e) {
    console.error("SKIP: no prebuilt llama.cpp binary: " + e.message);
    process.exit(77);
}
const model = await llama.loadModel({ modelPath });
const context = await model.createContext({ contextSize: 512, batchSize: 512, threads: 1 });
if (process.env.NB_TOKENIZE) console.error("tokens: " + model.tokenize(process.env.NB_TOKENIZE, true).join(" "));
const seq = context.getSequence();
const out = [];
for await (const t of seq.evaluate(prompt, { temperature: 0 })) {
    out.push(t);
    if (out.length >= n) break;
}
console.log(out.join(" "));
await context.dispose();
await model.dispose();
await llama.dispose();
