// wai's playground: a chat with any text-generation model id, streamed from /ai/run, with the
// same request shown as curl, Python and Worker code. No dependencies; served by wai itself.

import { initEmbeddings } from "/playground/embeddings.js";
import { initSpeech } from "/playground/speech.js";
import { initText } from "/playground/text.js";

const ACCOUNT = "local";
const $ = (id) => document.getElementById(id);
const NUMBERS = ["top_p", "top_k", "seed", "repetition_penalty", "frequency_penalty", "presence_penalty"];
const INTEGERS = new Set(["max_tokens", "top_k", "seed"]);
const PER_PAGE = 100;

let history = []; // {role, content} of the conversation so far
let models = new Map(); // id -> {local: the local model answering it, standIn, pull}
let tab = "curl";
let busy = false;

function token() {
  return $("token").value.trim();
}

function headers() {
  const h = { "Content-Type": "application/json" };
  if (token()) h.Authorization = `Bearer ${token()}`;
  return h;
}

function showError(text) {
  const box = $("error");
  box.hidden = !text;
  box.textContent = text || "";
}

async function loadModels() {
  const url = `/client/v4/accounts/${ACCOUNT}/ai/models/search?task=Text%20Generation&per_page=${PER_PAGE}`;
  const res = await fetch(url, { headers: headers() });
  const body = await res.text();
  if (!res.ok) {
    showError(authHint(res.status, body) || `GET ${url}\nHTTP ${res.status}\n${pretty(body)}`);
    return;
  }
  showError("");
  const select = $("model");
  const keep = select.value || sessionStorage.getItem("wai-model");
  select.replaceChildren();
  models = new Map();
  for (const m of JSON.parse(body).result) {
    const prop = (id) => (m.properties.find((p) => p.property_id === id) || {}).value || "";
    const local = prop("wai_local_model");
    models.set(m.name, { local, standIn: prop("wai_weights") === "stand-in", pull: prop("wai_pull") });
    const option = document.createElement("option");
    option.value = m.name;
    option.textContent = local ? `${m.name}  (${local})` : m.name;
    select.append(option);
  }
  if (keep && models.has(keep)) select.value = keep;
  update();
}

// A refusal of the token, said for a person: what to do rather than the raw envelope.
function authHint(status, body) {
  let code = 0;
  try {
    code = JSON.parse(body).errors[0].code;
  } catch {
    return "";
  }
  if (code === 9106 || (code === 6003 && !token())) {
    return "This server needs a token. Type it in the Token field at the top right " +
      "(it is kept in this browser tab only), then press Tab or Enter.";
  }
  if (code === 10000 || code === 6003) {
    return `The server refused this token (HTTP ${status}, code ${code}): check it, or ask ` +
      "for one that may read the catalog and run inference.";
  }
  return "";
}

function pretty(text) {
  try {
    return JSON.stringify(JSON.parse(text), null, 2);
  } catch {
    return text;
  }
}

// The request the next message sends: the conversation (or, raw, its last text), the settings.
function requestBody() {
  const body = {};
  const text = $("input").value;
  if ($("raw").checked) {
    body.prompt = text;
    body.raw = true;
  } else {
    const system = $("system").value.trim();
    body.messages = [
      ...(system ? [{ role: "system", content: system }] : []),
      ...history,
      { role: "user", content: text },
    ];
  }
  for (const name of ["max_tokens", "temperature", ...NUMBERS]) {
    const raw = $(name).value.trim();
    if (raw !== "") body[name] = INTEGERS.has(name) ? parseInt(raw, 10) : parseFloat(raw);
  }
  if ($("json_mode").checked) {
    let schema;
    try {
      schema = JSON.parse($("schema").value);
    } catch {
      schema = $("schema").value; // sent as it is: the server says what is wrong with it
    }
    body.response_format = { type: "json_schema", json_schema: schema };
  } else {
    body.stream = true; // Workers AI does not stream JSON mode
  }
  return body;
}

function runUrl(model) {
  return `/client/v4/accounts/${ACCOUNT}/ai/run/${model}`;
}

// Python literals for a JSON value (true/false/null are True/False/None).
function py(value, indent = "") {
  const next = indent + "    ";
  if (value === null) return "None";
  if (value === true) return "True";
  if (value === false) return "False";
  if (Array.isArray(value)) {
    if (!value.length) return "[]";
    return `[\n${value.map((v) => next + py(v, next)).join(",\n")},\n${indent}]`;
  }
  if (typeof value === "object") {
    const keys = Object.keys(value);
    if (!keys.length) return "{}";
    return `{\n${keys.map((k) => `${next}${JSON.stringify(k)}: ${py(value[k], next)}`).join(",\n")},\n${indent}}`;
  }
  return JSON.stringify(value);
}

function snippets(model, body) {
  const origin = window.location.origin;
  const url = origin + runUrl(model);
  const json = JSON.stringify(body, null, 2);
  const quoted = `'${json.replaceAll("'", "'\\''")}'`;
  const auth = token() ? `  -H "Authorization: Bearer $WAI_TOKEN" \\\n` : "";
  const stream = body.stream === true;
  const kwargs = { ...body };
  delete kwargs.stream;
  return {
    curl: `curl ${stream ? "-N " : ""}${url} \\\n${auth}  -H "Content-Type: application/json" \\\n  -d ${quoted}`,
    cloudflare:
      `import os\n\nfrom cloudflare import Cloudflare\n\n` +
      `client = Cloudflare(\n    api_token=os.environ.get("WAI_TOKEN", "local"),\n    base_url="${origin}/client/v4",\n)\n` +
      `out = client.ai.run(\n    ${JSON.stringify(model)},\n    account_id="${ACCOUNT}",\n    **${py(kwargs, "    ")},\n)\nprint(out)\n`,
    requests:
      `import os\n\nimport requests\n\n` +
      `r = requests.post(\n    "${url}",\n` +
      `    headers={"Authorization": f"Bearer {os.environ.get('WAI_TOKEN', '')}"},\n` +
      `    json=${py(body, "    ")},\n` +
      (stream ? `    stream=True,\n)\nfor line in r.iter_lines():\n    print(line.decode())\n` : `)\nprint(r.json())\n`),
    worker:
      `export default {\n  async fetch(request, env) {\n` +
      `    const answer = await env.AI.run(${JSON.stringify(model)}, ${JSON.stringify(body, null, 2).replaceAll("\n", "\n    ")});\n` +
      (stream
        ? `    return new Response(answer, { headers: { "content-type": "text/event-stream" } });\n`
        : `    return Response.json(answer);\n`) +
      `  },\n};\n`,
  };
}

function update() {
  const model = $("model").value;
  sessionStorage.setItem("wai-model", model);
  const served = models.get(model);
  $("served").textContent = !served || !served.local ? "" : !served.standIn
    ? `answered here by ${served.local}, its own weights`
    : `answered here by ${served.local}, a stand-in` +
      (served.pull ? `: \`${served.pull}\` fetches its real weights` : "");
  $("snippet").textContent = model ? snippets(model, requestBody())[tab] : "";
}

function bubble(role, text) {
  const li = document.createElement("li");
  li.className = role;
  li.textContent = text;
  $("log").append(li);
  li.scrollIntoView({ block: "end" });
  return li;
}

async function send(event) {
  event.preventDefault();
  if (busy || !$("model").value) return;
  const model = $("model").value;
  const body = requestBody();
  const text = $("input").value;
  busy = true;
  $("send").disabled = true;
  showError("");
  $("stats").textContent = "";
  bubble("user", text);
  const out = bubble("assistant", "");
  const start = performance.now();
  let first = null;
  let answer = "";
  let usage = null;
  try {
    const res = await fetch(runUrl(model), { method: "POST", headers: headers(), body: JSON.stringify(body) });
    if (!res.ok) {
      out.remove();
      showError(`POST ${runUrl(model)}\nHTTP ${res.status}\n${pretty(await res.text())}`);
      return;
    }
    if (body.stream) {
      const reader = res.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          if (!block.startsWith("data: ") || block === "data: [DONE]") continue;
          const ev = JSON.parse(block.slice(6));
          if (ev.error) showError(`stream error\n${JSON.stringify(ev.error, null, 2)}`);
          if (ev.response) {
            first ??= performance.now();
            answer += ev.response;
            out.textContent = answer;
          }
          if (ev.tool_calls && ev.tool_calls.length) out.textContent += `\n${JSON.stringify(ev.tool_calls)}`;
          if (ev.usage) usage = ev.usage;
        }
      }
    } else {
      const result = (await res.json()).result;
      first = performance.now();
      answer = typeof result.response === "string" ? result.response : JSON.stringify(result.response, null, 2);
      out.textContent = answer;
      usage = result.usage;
    }
    const end = performance.now();
    if (!body.raw) history.push({ role: "user", content: text }, { role: "assistant", content: answer });
    $("input").value = "";
    const parts = [];
    if (first !== null) parts.push(`TTFT ${Math.round(first - start)} ms`);
    if (usage && first !== null && end > first && usage.completion_tokens > 1) {
      parts.push(`${((usage.completion_tokens - 1) / ((end - first) / 1000)).toFixed(1)} tok/s`);
    }
    if (usage) parts.push(`usage ${usage.prompt_tokens} prompt + ${usage.completion_tokens} completion tokens`);
    $("stats").textContent = parts.join(" · ");
  } catch (e) {
    showError(String(e));
  } finally {
    busy = false;
    $("send").disabled = false;
    update();
  }
}

function init() {
  $("token").value = sessionStorage.getItem("wai-token") || "";
  $("token").addEventListener("change", () => {
    sessionStorage.setItem("wai-token", token());
    loadModels();
  });
  $("send-form").addEventListener("submit", send);
  initEmbeddings();
  initSpeech();
  initText();
  $("clear").addEventListener("click", () => {
    history = [];
    $("log").replaceChildren();
    showError("");
    update();
  });
  for (const el of document.querySelectorAll("input, select, textarea")) {
    if (el.id === "token") continue;
    el.addEventListener("input", update);
    el.addEventListener("change", update); // a <select> changed by keyboard or script
  }
  for (const button of document.querySelectorAll(".tabs button")) {
    button.addEventListener("click", () => {
      tab = button.dataset.tab;
      for (const b of document.querySelectorAll(".tabs button")) b.classList.toggle("active", b === button);
      update();
    });
  }
  $("copy").addEventListener("click", () => navigator.clipboard.writeText($("snippet").textContent));
  loadModels();
}

init();
