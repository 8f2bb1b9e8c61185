// The playground's embeddings panel: embed a few texts with any embedding id and show how
// similar they are to each other as a heat map (cosine similarity of every pair).

const ACCOUNT = "local";
const $ = (id) => document.getElementById(id);

function headers() {
  const h = { "Content-Type": "application/json" };
  const token = $("token").value.trim();
  if (token) h.Authorization = `Bearer ${token}`;
  return h;
}

export async function loadEmbeddingModels() {
  const url = `/client/v4/accounts/${ACCOUNT}/ai/models/search?task=Text%20Embeddings&per_page=100`;
  const res = await fetch(url, { headers: headers() });
  if (!res.ok) return;
  const select = $("embed-model");
  const keep = select.value;
  select.replaceChildren();
  for (const m of (await res.json()).result) {
    const option = document.createElement("option");
    option.value = m.name;
    option.textContent = m.name;
    select.append(option);
  }
  if (keep) select.value = keep;
}

function cosine(a, b) {
  let dot = 0, na = 0, nb = 0;
  for (let i = 0; i < a.length; i++) {
    dot += a[i] * b[i];
    na += a[i] * a[i];
    nb += b[i] * b[i];
  }
  return dot / (Math.sqrt(na * nb) || 1);
}

// white (0 or less) to the accent colour (1)
function shade(value) {
  const t = Math.max(0, Math.min(1, value));
  const mix = (from, to) => Math.round(from + (to - from) * t);
  return `rgb(${mix(255, 243)}, ${mix(255, 128)}, ${mix(255, 32)})`;
}

function label(text) {
  return text.length > 24 ? `${text.slice(0, 23)}…` : text;
}

function render(texts, vectors) {
  const table = $("heatmap");
  table.replaceChildren();
  const head = table.insertRow();
  head.insertCell();
  texts.forEach((t, j) => {
    const th = document.createElement("th");
    th.textContent = `${j + 1}`;
    th.title = t;
    head.append(th);
  });
  texts.forEach((t, i) => {
    const row = table.insertRow();
    const th = document.createElement("th");
    th.textContent = `${i + 1}. ${label(t)}`;
    th.title = t;
    row.append(th);
    vectors.forEach((v, j) => {
      const value = cosine(vectors[i], v);
      const cell = row.insertCell();
      cell.textContent = value.toFixed(2);
      cell.className = "sim";
      cell.style.background = shade(value);
      cell.title = `${label(t)} · ${label(texts[j])}: ${value.toFixed(4)}`;
    });
  });
}

async function embed() {
  const texts = $("embed-texts").value.split("\n").map((t) => t.trim()).filter(Boolean);
  const model = $("embed-model").value;
  const stats = $("embed-stats");
  if (!texts.length || !model) return;
  stats.textContent = "embedding…";
  const started = performance.now();
  const res = await fetch(`/client/v4/accounts/${ACCOUNT}/ai/run/${model}`, {
    method: "POST",
    headers: headers(),
    body: JSON.stringify({ text: texts }),
  });
  const body = await res.json();
  if (!res.ok) {
    stats.textContent = `HTTP ${res.status}: ${body.errors?.[0]?.message || ""}`;
    return;
  }
  const ms = Math.round(performance.now() - started);
  const [n, dims] = body.result.shape;
  stats.textContent = `${n} × ${dims} by ${res.headers.get("x-wai-model")} in ${ms} ms`;
  render(texts, body.result.data);
}

export function initEmbeddings() {
  $("embed").addEventListener("click", embed);
  $("token").addEventListener("change", loadEmbeddingModels);
  loadEmbeddingModels();
}
