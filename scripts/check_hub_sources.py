"""Check the curated sources (wai/data/hub_sources.json) against the Hugging Face Hub, and
fill in what a source states: each file's size and SHA-256 (the LFS hash the Hub announces;
a model's companion files too),
and with --pin the commit it was checked at (so a later change upstream is refused by the
SHA-256 instead of served). Entries found are marked `checked`; files the Hub does not have
are listed and left as they are. Needs the Hub (or a mirror: HF_ENDPOINT); HF_TOKEN for gated
repositories.

Usage: .venv/bin/python scripts/check_hub_sources.py [--table PATH] [--pin] [--dry-run]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from wai import hub  # noqa: E402

TABLE = ROOT / "wai" / "data" / "hub_sources.json"


def check(table: Path, pin: bool) -> tuple[dict[str, Any], list[str]]:
    """The table with what the Hub says filled in, and the problems found."""
    doc = json.loads(table.read_text())
    problems: list[str] = []
    for model_id, entry in doc["sources"].items():
        revision = entry.get("revision", "main")
        commit: str | None = None
        ok = True
        for f in [*entry.get("companions", []), entry]:  # a model's every file
            commit, found = _check_file(model_id, entry, f, revision, problems)
            ok = ok and found
        if ok:
            entry["checked"] = True
            if pin and commit:
                entry["revision"] = commit
    return doc, problems


def _check_file(
    model_id: str, entry: dict[str, Any], f: dict[str, Any], revision: str, problems: list[str]
) -> tuple[str | None, bool]:
    """One file's size and SHA-256 filled in from the Hub; its commit, and whether it is there
    with the bytes the table says."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError

    url = hf_hub_url(entry["repo"], f["file"], revision=revision)
    try:
        meta = get_hf_file_metadata(url)
    except GatedRepoError:
        problems.append(f"{model_id}: {entry['repo']} is gated (set HF_TOKEN to check it)")
        entry["gated"] = True
        return None, False
    except HfHubHTTPError as e:
        problems.append(f"{model_id}: {entry['repo']}/{f['file']}: {e}")
        return None, False
    sha = hub.announced_sha256(meta.etag)  # None for a small file kept in git, not LFS
    if f.get("sha256") and sha and f["sha256"] != sha:
        problems.append(
            f"{model_id}: {f['file']}: the Hub announces {sha}, the table says {f['sha256']}"
        )
        return None, False
    f.update(size=meta.size, sha256=sha or f.get("sha256"))
    return meta.commit_hash, True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--table", type=Path, default=TABLE)
    parser.add_argument("--pin", action="store_true", help="record each file's commit")
    parser.add_argument("--dry-run", action="store_true", help="report only")
    args = parser.parse_args()
    doc, problems = check(args.table, args.pin)
    for line in problems:
        print(line)
    if not args.dry_run:
        args.table.write_text(json.dumps(doc, indent=1) + "\n")
    checked = sum(bool(e.get("checked")) for e in doc["sources"].values())
    print(f"{checked} of {len(doc['sources'])} sources checked")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
