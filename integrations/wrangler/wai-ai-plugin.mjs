// A Miniflare / `wrangler dev` plugin that gives Worker code a real AI binding (`env.AI`,
// workerd's own `cloudflare-internal:ai-api` module) whose requests go to a local wai instead of
// Cloudflare: `env.AI.run(...)` and `new Ai(env.AI).run(...)` work unchanged and offline.
//
// Options (per binding): address ("127.0.0.1:8787"), token (a wai token, if wai has any).
// Dev only: an "unsafe" binding is uploaded as-is on deploy, so keep it out of production config.
// `wai wrangler-config` prints the wrangler.toml and Miniflare snippets.

const serviceName = (name) => `wai-ai:${name}`;

// The wrapper around workerd's AI binding: adds the wai token to every request, and turns the
// relative URL of @cloudflare/ai <= 1.0.29 ("/run") into an absolute one.
const wrapper = `
import makeBinding from "cloudflare-internal:ai-api";
export default function (env) {
  const inner = env.fetcher;
  const token = env.token;
  const fetcher = !token ? inner : {
    fetch(input, init = {}) {
      const headers = new Headers(init.headers);
      headers.set("authorization", "Bearer " + token);
      return inner.fetch(input, { ...init, headers });
    },
  };
  const ai = makeBinding({ ...env, fetcher });
  const fetch = ai.fetch.bind(ai);
  ai.fetch = (input, init) =>
    fetch(typeof input === "string" && input.startsWith("/") ? "http://workers-binding.ai" + input : input, init);
  return ai;
}`;

export const plugins = {
  "wai-ai": {
    getExtensions() {
      return [{ modules: [{ name: "wai-internal:ai-binding", esModule: wrapper, internal: true }] }];
    },
    getBindings(bindings) {
      return (bindings ?? []).map((b) => ({
        name: b.name,
        wrapped: {
          moduleName: "wai-internal:ai-binding",
          innerBindings: [
            { name: "fetcher", service: { name: serviceName(b.name) } },
            { name: "token", json: JSON.stringify(b.options?.token ?? "") },
          ],
        },
      }));
    },
    getNodeBindings() {
      return {};
    },
    getServices({ options }) {
      return (options ?? []).map((b) => ({
        name: serviceName(b.name),
        external: { address: b.options?.address ?? "127.0.0.1:8787", http: {} },
      }));
    },
  },
};
