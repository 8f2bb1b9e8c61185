"""Refresh wai's snapshot of the public Workers AI catalog (wai/data/workers_ai_models.json).

Two sources, best first:

  python scripts/refresh_catalog.py --docs PATH
      PATH: a checkout of cloudflare/cloudflare-docs, or its folder
      src/content/workers-ai-models/. Every model's official JSON file gives its id, uuid,
      description, task, created_at, properties, and (for every task but Text Generation,
      whose schema wai builds itself) its input and output schemas.

  python scripts/refresh_catalog.py --npm [VERSION]
      The `@cloudflare/workers-types` package from the npm registry (`npm pack`): its
      `AiModels` interface lists every public model id. Each id's task comes from its type
      (BaseAiTextEmbeddings, ...) or, for the per-model types, from TASK_RULES below; uuids,
      descriptions and schemas are not in it, and entries the snapshot already has keep theirs
      (the snapshot shipped has them, read from the official files, for one model of each task
      wai does not run).

The snapshot is package data: wai reads it at start and never fetches anything.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

SNAPSHOT = Path(__file__).resolve().parent.parent / "wai" / "data" / "workers_ai_models.json"
DOCS_FOLDER = "src/content/workers-ai-models"

# Workers AI's tasks, as its model files give them (id, name, description).
TASKS: dict[str, dict[str, str]] = {
    t["name"]: t
    for t in (
        {
            "id": "c329a1f9-323d-4e91-b2aa-582dd4188d34",
            "name": "Text Generation",
            "description": "Family of generative text models, such as large language models "
            "(LLM), that can be adapted for a variety of natural language tasks.",
        },
        {
            "id": "0137cdcf-162a-4108-94f2-1ca59e8c65ee",
            "name": "Text Embeddings",
            "description": "Feature extraction models transform raw data into numerical "
            "features that can be processed while preserving the information in the original "
            "dataset. These models are ideal as part of building vector search applications "
            "or Retrieval Augmented Generation workflows with Large Language Models (LLM).",
        },
        {
            "id": "19606750-23ed-4371-aab2-c20349b53a60",
            "name": "Text Classification",
            "description": "Sentiment analysis or text classification is a common NLP task "
            "that classifies a text input into labels or classes.",
        },
        {
            "id": "dfce1c48-2a81-462e-a7fd-de97ce985207",
            "name": "Automatic Speech Recognition",
            "description": "Automatic speech recognition (ASR) models convert a speech "
            "signal, typically an audio input, to text.",
        },
        {
            "id": "b52660a1-9a95-4ab2-8b1d-f232be34604a",
            "name": "Text-to-Speech",
            "description": "Text-to-Speech (TTS) is the task of generating natural sounding "
            "speech given text input. TTS models can be extended to have a single model that "
            "generates speech for multiple speakers and multiple languages.",
        },
        {
            "id": "3d6e1f35-341b-4915-a6c8-9a7142a9033a",
            "name": "Text-to-Image",
            "description": "Generates images from input text. These models can be used to "
            "generate and modify images based on text prompts.",
        },
        {
            "id": "f57d07cb-9087-487a-bbbf-bc3e17fecc4b",
            "name": "Translation",
            "description": "Translation models convert a sequence of text from one language "
            "to another.",
        },
        {
            "id": "882a91d1-c331-4eec-bdad-834c919942a8",
            "name": "Image-to-Text",
            "description": "Image to text models output a text from a given image. Image "
            "captioning or optical character recognition can be considered as the most "
            "common applications of image to text.",
        },
        {
            "id": "00cd182b-bf30-4fc4-8481-84a3ab349657",
            "name": "Image Classification",
            "description": "Image classification models take an image input and assigns it "
            "labels or classes.",
        },
        {
            "id": "9c178979-90d9-49d8-9e2c-0f1cf01815d4",
            "name": "Object Detection",
            "description": "Object detection models can detect instances of objects like "
            "persons, faces, license plates, or others in an image. This task takes an image "
            "as input and returns a list of detected objects, each one containing a label, a "
            "probability score, and its surrounding box coordinates.",
        },
        {
            "id": "6f4e65d8-da0f-40d2-9aa4-db582a5a04fd",
            "name": "Summarization",
            "description": "Summarization is the task of producing a shorter version of a "
            "document while preserving its important information. Some models can extract "
            "text from the original input, while other models can generate entirely new text.",
        },
        {
            "id": "ccb1ca5a-043d-41a7-8a3b-61017b2796fd",
            "name": "Voice Activity Detection",
            "description": "Detecting the presence or absence of human speech, used in "
            "speech processing.",
        },
    )
}

# the npm source: a generic type names its task ...
TASK_BY_TYPE = {
    "BaseAiTextGeneration": "Text Generation",
    "BaseAiTextEmbeddings": "Text Embeddings",
    "BaseAiTextClassification": "Text Classification",
    "BaseAiSpeechRecognition": "Automatic Speech Recognition",
    "BaseAiTextToSpeech": "Text-to-Speech",
    "BaseAiTextToImage": "Text-to-Image",
    "BaseAiTranslation": "Translation",
    "BaseAiImageToText": "Image-to-Text",
    "BaseAiImageClassification": "Image Classification",
    "BaseAiObjectDetection": "Object Detection",
    "BaseAiSummarization": "Summarization",
}
# ... and a per-model type (Base_Ai_Cf_...) does not: the first rule matching the id does.
TASK_RULES: tuple[tuple[str, str], ...] = (
    (r"bge-reranker", "Text Classification"),
    (r"/bge-|embedding", "Text Embeddings"),
    (r"whisper|/nova-|speech-streaming|deepgram/flux", "Automatic Speech Recognition"),
    (r"/aura-|melotts", "Text-to-Speech"),
    (r"/flux-|lucid-origin|phoenix-|stable-diffusion|dreamshaper", "Text-to-Image"),
    (r"m2m100|indictrans", "Translation"),
    (r"uform-gen|llava", "Image-to-Text"),
    (r"smart-turn", "Voice Activity Detection"),
    (r"resnet-50$", "Image Classification"),
    (r"detr-", "Object Detection"),
    (r"bart-large-cnn", "Summarization"),
    (r".", "Text Generation"),
)


def task_for(model_id: str, type_name: str) -> str:
    if type_name in TASK_BY_TYPE:
        return TASK_BY_TYPE[type_name]
    return next(task for pattern, task in TASK_RULES if re.search(pattern, model_id))


def from_docs(path: Path) -> list[dict[str, Any]]:
    folder = path / DOCS_FOLDER if (path / DOCS_FOLDER).is_dir() else path
    models = []
    for file in sorted(folder.glob("*.json")):
        doc = json.loads(file.read_text())
        task = doc["task"]["name"]
        TASKS.setdefault(task, doc["task"])
        entry = {
            "name": doc["name"],
            "task": task,
            "id": doc.get("id"),
            "description": doc.get("description"),
            "created_at": doc.get("created_at"),
            "properties": doc.get("properties", []),
        }
        if doc.get("deprecated"):
            entry["deprecated"] = True
        if task != "Text Generation" and "schema" in doc:
            entry["schema"] = doc["schema"]
        models.append({k: v for k, v in entry.items() if v not in (None, [])})
    return models


def from_npm(version: str) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory() as tmp:
        spec = f"@cloudflare/workers-types@{version}"
        subprocess.run(["npm", "pack", spec, "--silent"], cwd=tmp, check=True, capture_output=True)
        tgz = next(Path(tmp).glob("*.tgz"))
        with tarfile.open(tgz) as tar:
            member = tar.extractfile("package/index.d.ts")
            assert member is not None, "index.d.ts missing from the package"
            text = member.read().decode()
    body = re.search(r"interface AiModels \{(.*?)\n\}", text, re.S)
    if body is None:
        raise SystemExit("no `interface AiModels` in @cloudflare/workers-types")
    pairs = re.findall(r'"(@[^"]+)":\s*(\w+);', body.group(1))
    return [{"name": mid, "task": task_for(mid, type_name)} for mid, type_name in pairs]


def merge(fresh: list[dict[str, Any]], old: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The fresh entries, each keeping what only the old snapshot knew of it."""
    known = {m["name"]: m for m in old}
    return [{**known.get(m["name"], {}), **m} for m in fresh]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--docs", type=Path, help="a cloudflare-docs checkout (or its models folder)")
    src.add_argument("--npm", nargs="?", const="latest", help="@cloudflare/workers-types version")
    ap.add_argument("--out", type=Path, default=SNAPSHOT)
    args = ap.parse_args()
    old = json.loads(args.out.read_text())["models"] if args.out.exists() else []
    if args.docs:
        models, source = from_docs(args.docs), "cloudflare-docs " + DOCS_FOLDER
    else:
        models, source = from_npm(args.npm), f"@cloudflare/workers-types@{args.npm}"
        models = merge(models, old)
    used = sorted({m["task"] for m in models})
    unknown = [t for t in used if t not in TASKS]
    if unknown:
        print(f"tasks with no id here: {unknown}", file=sys.stderr)
        return 1
    snapshot = {
        "source": source,
        "tasks": [TASKS[t] for t in used],
        "models": sorted(models, key=lambda m: m["name"]),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(snapshot, indent=1, ensure_ascii=False) + "\n")
    print(f"{args.out}: {len(models)} models, {len(used)} tasks, from {source}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
