// A modern Worker: env.AI.run(model, inputs, options), streaming, errors.
const MODEL = "@cf/meta/llama-2-7b-chat-int8";

export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    if (url.pathname === "/stream") {
      const stream = await env.AI.run(MODEL, {
        messages: [{ role: "user", content: "Tell me a story" }],
        stream: true, max_tokens: 12, temperature: 0,
      });
      return new Response(stream, { headers: { "content-type": "text/event-stream" } });
    }
    if (url.pathname === "/error") {
      try {
        await env.AI.run("@cf/acme/no-such-model", { prompt: "hi" });
        return new Response("no error");
      } catch (e) {
        return Response.json({ name: e.name, message: e.message });
      }
    }
    const out = await env.AI.run(MODEL, { prompt: "Tell me a story", max_tokens: 12, temperature: 0 });
    return Response.json({ out, requestId: env.AI.lastRequestId });
  },
};
