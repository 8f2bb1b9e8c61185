// Runs the seed Worker and a modern Worker in Miniflare, their AI binding wired to a running
// wai by integrations/wrangler/wai-ai-plugin.mjs. Prints what each route answered, as JSON.
// Usage: node run-workers.mjs <wai address host:port> [token] [speech.wav]
import { build } from "esbuild";
import { Miniflare } from "miniflare";
import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const [address, token = "", speech = ""] = process.argv.slice(2);
const plugin = path.resolve(here, "../../integrations/wrangler/wai-ai-plugin.mjs");

async function bundle(entry) {
  const out = await build({
    entryPoints: [path.join(here, entry)], bundle: true, write: false, format: "esm",
    platform: "neutral", mainFields: ["module", "main"], logLevel: "silent",
  });
  return out.outputFiles[0].text;
}

function miniflare(script) {
  return new Miniflare({
    modules: true, script, compatibilityDate: "2025-09-01", cf: false,
    unsafeBindings: [{ name: "AI", type: "wai-ai", plugin: { package: plugin, name: "wai-ai" },
                       options: { address, token } }],
  });
}

async function get(mf, route, init = undefined, binary = false) {
  const res = await mf.dispatchFetch(`http://localhost${route}`, init);
  const body = binary ? Buffer.from(await res.arrayBuffer()).toString("base64") : await res.text();
  return { status: res.status, contentType: res.headers.get("content-type"), body };
}

const results = {};
const seed = miniflare(await bundle("seed-worker.ts"));
try {
  results.seed = await get(seed, "/");
} finally {
  await seed.dispose();
}
const modern = miniflare(await bundle("modern-worker.js"));
try {
  for (const route of ["/json", "/stream", "/error", "/rag", "/queue", "/text"]) results[route] = await get(modern, route);
  if (speech) results["/transcribe"] = await get(modern, "/transcribe", { method: "POST", body: readFileSync(speech) });
  if (speech) results["/nova"] = await get(modern, "/nova", { method: "POST", body: readFileSync(speech) });
  results["/speak"] = await get(modern, "/speak", undefined, true);
} finally {
  await modern.dispose();
}
console.log(JSON.stringify(results));
