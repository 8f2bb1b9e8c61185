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
    if (url.pathname === "/rag") {
      // the RAG tutorial's calls: embed the chunks and the question, rank, then answer
      const chunks = ["Paris is the capital of France.", "Bananas are yellow.", "Jazz began in New Orleans."];
      const question = "What is the capital of France?";
      const embedded = await env.AI.run("@cf/baai/bge-base-en-v1.5", { text: [question, ...chunks] });
      const ranked = await env.AI.run("@cf/baai/bge-reranker-base", {
        query: question, contexts: chunks.map((text) => ({ text })), top_k: 2,
      });
      const context = chunks[ranked.response[0].id];
      const answer = await env.AI.run(MODEL, {
        messages: [{ role: "system", content: `Context: ${context}` }, { role: "user", content: question }],
        max_tokens: 8, temperature: 0,
      });
      return Response.json({ shape: embedded.shape, pooling: embedded.pooling, norm: Math.hypot(...embedded.data[0]), ranked, answer });
    }
    if (url.pathname === "/queue") {
      // the batch API: queue texts to embed, then poll the request id until the results are there
      const texts = ["first text", "second text", "third text"];
      const queued = await env.AI.run("@cf/baai/bge-base-en-v1.5", {
        requests: texts.map((text, i) => ({ text, external_reference: `doc-${i}` })),
      }, { queueRequest: true });
      let polled = queued;
      for (let i = 0; i < 300 && (polled.status === "queued" || polled.status === "running"); i++) {
        await new Promise((r) => setTimeout(r, 100));
        polled = await env.AI.run("@cf/baai/bge-base-en-v1.5", { request_id: queued.request_id }, { queueRequest: true });
      }
      const direct = await env.AI.run("@cf/baai/bge-base-en-v1.5", { text: texts });
      return Response.json({ queued, polled, direct });
    }
    if (url.pathname === "/transcribe") {
      // Cloudflare's speech-to-text example: the uploaded file's bytes, as an array of numbers
      const audio = [...new Uint8Array(await request.arrayBuffer())];
      const out = await env.AI.run("@cf/openai/whisper", { audio });
      return Response.json(out);
    }
    if (url.pathname === "/nova") {
      // Deepgram's nova-3 takes the upload as a stream, with its options beside it
      const out = await env.AI.run("@cf/deepgram/nova-3", {
        audio: { body: request.body, contentType: "audio/wav" },
        detect_language: true,
        punctuate: true,
      });
      return Response.json(out);
    }
    if (url.pathname === "/speak") {
      // Deepgram's voices answer with the audio itself: a stream of MP3 bytes
      const audio = await env.AI.run("@cf/deepgram/aura-2-en", { text: "Please remember to water the garden every morning before work." });
      return new Response(audio, { headers: { "content-type": "audio/mpeg" } });
    }
    if (url.pathname === "/text") {
      // the text-to-text tasks: sentiment on reviews, a summary of a page, a translation
      const sentiment = await env.AI.run("@cf/huggingface/distilbert-sst-2-int8", {
        text: "I absolutely loved this movie, the acting was wonderful.",
      });
      const summary = await env.AI.run("@cf/facebook/bart-large-cnn", {
        input_text: "The city council approved a new public library on Tuesday. " +
          "The library will open in two years next to the park. " +
          "A local bakery celebrated its anniversary the same day. " +
          "Residents had asked for a larger library for many years.",
        max_length: 40,
      });
      const errors = {};
      for (const [name, inputs] of [
        ["translate", { text: "Hello", source_lang: "english", target_lang: "french" }],
        ["invalid", { input_text: "" }],
      ]) {
        const model = name === "translate" ? "@cf/meta/m2m100-1.2b" : "@cf/facebook/bart-large-cnn";
        try {
          errors[name] = { result: await env.AI.run(model, inputs) };
        } catch (e) {
          errors[name] = { name: e.name, message: e.message };
        }
      }
      return Response.json({ sentiment, summary, errors });
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
