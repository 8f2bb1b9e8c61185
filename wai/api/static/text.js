// The playground's text panel: translate with a language picker, summarize a pasted article,
// classify a sentence's sentiment. Each answer names the model that gave it (a stand-in says
// so), and an id with no model here shows the server's refusal, which names `wai pull`.

const ACCOUNT = "local";
const $ = (id) => document.getElementById(id);
// M2M100's languages, by the names Cloudflare's examples use (the server takes codes too)
const LANGUAGES = [
  ["en", "English"], ["fr", "French"], ["es", "Spanish"], ["de", "German"], ["zh", "Chinese"],
  ["ja", "Japanese"], ["ar", "Arabic"], ["ru", "Russian"], ["pt", "Portuguese"], ["hi", "Hindi"],
  ["it", "Italian"], ["nl", "Dutch"], ["ko", "Korean"], ["pl", "Polish"], ["tr", "Turkish"],
  ["uk", "Ukrainian"], ["sv", "Swedish"], ["vi", "Vietnamese"], ["id", "Indonesian"],
];

function headers() {
  const h = { "Content-Type": "application/json" };
  const token = $("token").value.trim();
  if (token) h.Authorization = `Bearer ${token}`;
  return h;
}

// the answer's result and who gave it, or the error's message
async function run(model, inputs) {
  const res = await fetch(`/client/v4/accounts/${ACCOUNT}/ai/run/${model}`, {
    method: "POST", headers: headers(), body: JSON.stringify(inputs),
  });
  const text = await res.text();
  let body;
  try {
    body = JSON.parse(text);
  } catch {
    return { error: `HTTP ${res.status}: ${text.slice(0, 200)}` };
  }
  if (!res.ok) return { error: `HTTP ${res.status} (${body.errors[0].code}): ${body.errors[0].message}` };
  return { result: body.result, by: res.headers.get("x-wai-model") };
}

async function translate() {
  const out = $("translation");
  out.textContent = "translating…";
  const answer = await run("@cf/meta/m2m100-1.2b", {
    text: $("translate-text").value, source_lang: $("source-lang").value, target_lang: $("target-lang").value,
  });
  out.textContent = answer.error || answer.result.translated_text;
  $("translate-stats").textContent = answer.by ? `by ${answer.by}` : "";
}

async function summarize() {
  const out = $("summary");
  out.textContent = "summarizing…";
  const answer = await run("@cf/facebook/bart-large-cnn", {
    input_text: $("article").value, max_length: Number($("summary-length").value) || 1024,
  });
  out.textContent = answer.error || answer.result.summary;
  $("summary-stats").textContent = answer.by ? `by ${answer.by}` : "";
}

async function classify() {
  const table = $("labels");
  table.replaceChildren();
  const answer = await run("@cf/huggingface/distilbert-sst-2-int8", { text: $("classify-text").value });
  $("classify-stats").textContent = answer.error || `by ${answer.by}`;
  if (answer.error) return;
  for (const { label, score } of answer.result) {
    const row = table.insertRow();
    row.className = "label";
    row.insertCell().textContent = label;
    row.insertCell().textContent = score.toFixed(3);
    const bar = document.createElement("meter");
    bar.value = score;
    row.insertCell().append(bar);
  }
}

export function initText() {
  for (const [id, chosen] of [["source-lang", "en"], ["target-lang", "fr"]]) {
    const select = $(id);
    for (const [code, name] of LANGUAGES) select.append(new Option(name, name.toLowerCase(), false, code === chosen));
  }
  $("translate").addEventListener("click", translate);
  $("summarize").addEventListener("click", summarize);
  $("classify").addEventListener("click", classify);
}
