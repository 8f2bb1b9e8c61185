// The playground's speech panel: type text and hear it (text-to-speech), upload or record audio
// and read its transcript with each word's timing (speech recognition), or send what was just
// spoken back to Whisper to hear what it heard.

const ACCOUNT = "local";
const $ = (id) => document.getElementById(id);
let spoken = null; // the last audio spoken here (a Blob), for "Transcribe it"
let recorder = null;

function auth() {
  const token = $("token").value.trim();
  return token ? { Authorization: `Bearer ${token}` } : {};
}

async function run(model, body, contentType) {
  return fetch(`/client/v4/accounts/${ACCOUNT}/ai/run/${model}`, {
    method: "POST",
    headers: { ...auth(), "Content-Type": contentType },
    body,
  });
}

async function failure(res) {
  const text = await res.text();
  try {
    return `HTTP ${res.status}: ${JSON.parse(text).errors[0].message}`;
  } catch {
    return `HTTP ${res.status}: ${text.slice(0, 200)}`;
  }
}

async function speak() {
  const text = $("speak-text").value.trim();
  const stats = $("speak-stats");
  if (!text) return;
  stats.textContent = "speaking…";
  const started = performance.now();
  const res = await run($("voice-model").value, JSON.stringify({ text }), "application/json");
  if (!res.ok) {
    stats.textContent = await failure(res);
    return;
  }
  spoken = await res.blob();
  const player = $("speech-audio");
  player.src = URL.createObjectURL(spoken);
  player.hidden = false;
  $("hear-back").disabled = false;
  const ms = Math.round(performance.now() - started);
  stats.textContent = `${spoken.size} bytes of ${spoken.type} by ${res.headers.get("x-wai-model")} in ${ms} ms`;
}

function showTranscript(result, who, ms) {
  $("transcript").textContent = result.text;
  $("transcribe-stats").textContent = `${result.word_count} words by ${who} in ${ms} ms`;
  const table = $("words");
  table.replaceChildren();
  const head = table.insertRow();
  for (const name of ["word", "start (s)", "end (s)"]) {
    const th = document.createElement("th");
    th.textContent = name;
    head.append(th);
  }
  for (const w of result.words) {
    const row = table.insertRow();
    for (const value of [w.word, w.start.toFixed(2), w.end.toFixed(2)]) row.insertCell().textContent = value;
    row.className = "word";
  }
  $("vtt").textContent = result.vtt;
}

async function transcribe(blob) {
  const stats = $("transcribe-stats");
  stats.textContent = "transcribing…";
  const started = performance.now();
  const res = await run("@cf/openai/whisper", blob, blob.type || "application/octet-stream");
  if (!res.ok) {
    stats.textContent = await failure(res);
    return;
  }
  const body = await res.json();
  showTranscript(body.result, res.headers.get("x-wai-model"), Math.round(performance.now() - started));
}

async function record() {
  const button = $("record");
  if (recorder) {
    recorder.stop();
    return;
  }
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ audio: true });
  } catch (e) {
    $("transcribe-stats").textContent = `no microphone: ${e.message}`;
    return;
  }
  const chunks = [];
  recorder = new MediaRecorder(stream);
  recorder.addEventListener("dataavailable", (e) => chunks.push(e.data));
  recorder.addEventListener("stop", () => {
    stream.getTracks().forEach((t) => t.stop());
    recorder = null;
    button.textContent = "Record";
    transcribe(new Blob(chunks, { type: chunks[0]?.type || "audio/webm" }));
  });
  recorder.start();
  button.textContent = "Stop";
}

export function initSpeech() {
  $("speak").addEventListener("click", speak);
  $("hear-back").addEventListener("click", () => spoken && transcribe(spoken));
  $("audio-file").addEventListener("change", (e) => {
    const file = e.target.files[0];
    if (file) transcribe(file);
  });
  $("record").addEventListener("click", record);
  if (!window.MediaRecorder || !navigator.mediaDevices) $("record").disabled = true;
}
