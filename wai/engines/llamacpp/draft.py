"""A draft model: a small model of the same vocabulary that drafts tokens for the engine's
sequences (speculative decoding, see speculation.py), in the engine's process and thread.

It keeps a context of its own with a KV stream per slot of the main model, as the main model
does (so a copy of the model drafts exactly the tokens it computes: the tests check the
plumbing that way; any other draft's numerics do not matter, every token is verified). Each
step it is
asked for drafts: each sequence's tokens it has not computed yet (its whole prompt the first
time, then what the main model accepted) are computed in as few calls as the batch allows, then
it decodes greedily, one call per drafted position for all sequences together. A greedy draft
proposes one token per position, so the main model's verification keeps greedy and seeded
outputs as they are without speculation (speculation.py).
"""

from __future__ import annotations

import bisect
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import llama_cpp as L

from wai.engines.llamacpp.gguf import LlamaTokenizer, kv_cache_bytes, load_model, model_metadata
from wai.engines.llamacpp.params import context_params, free_context, new_context
from wai.engines.llamacpp.prompt_cache import common_prefix, last_cut
from wai.engines.llamacpp.sampling import step_logits
from wai.engines.llamacpp.types import ModelLoadError

log = logging.getLogger("wai.engines")

VOCAB_SLACK = 128  # tokens the two vocabularies' sizes may differ by (padding), as llama.cpp
FIRST_CHECKED = 5  # the first tokens (control tokens) may differ, as llama.cpp allows
EWMA = 0.2
GENERATED_CHUNK = 32  # rows of generated tokens caught up per call (under the tiled path's 64)


def same_vocabulary(main: LlamaTokenizer, draft: LlamaTokenizer) -> str | None:
    """Why `draft` cannot draft for `main` (None: it can): llama.cpp's own rule for draft
    models, sizes within VOCAB_SLACK and every shared token's text the same."""
    if abs(main.n_vocab - draft.n_vocab) > VOCAB_SLACK:
        return f"{draft.n_vocab} tokens against {main.n_vocab}"
    for token in range(FIRST_CHECKED, min(main.n_vocab, draft.n_vocab)):
        if main.piece(token, special=True) != draft.piece(token, special=True):
            return (
                f"token {token} is {main.token_text(token)!r} in one and "
                f"{draft.token_text(token)!r} in the other"
            )
    return None


# (slot, the sequence's tokens so far, tokens to draft, where the main model cut its prompt:
# the cuts and the prompt's end)
Job = tuple[int, Sequence[int], int, Sequence[int]]


class DraftModel:
    """The draft model of one engine: `propose` drafts for the engine's sequences."""

    def __init__(
        self,
        path: Path,
        main: LlamaTokenizer,
        main_path: Path,
        *,
        n_slots: int,
        n_ctx_seq: int,
        n_batch: int,
        threads: int,
        flash_attn: bool,
        model_params: Any,
    ) -> None:
        self.path = path
        self._model = load_model(path, model_params)
        self.tokenizer = LlamaTokenizer(self._model)
        why = same_vocabulary(main, self.tokenizer)
        if why is not None:
            L.llama_model_free(self._model)
            raise ModelLoadError(
                f"the draft model {path} does not share the vocabulary of {main_path}: {why}"
            )
        cparams = context_params(
            n_ctx=n_ctx_seq * n_slots,
            n_batch=n_batch,
            n_seq=n_slots,
            threads=threads,
            flash_attn=flash_attn,
        )
        self._ctx = new_context(self._model, cparams, path)
        self._mem = L.llama_get_memory(self._ctx)
        self._batch = L.llama_batch_init(n_batch, 0, 1)
        self._n_batch = n_batch
        self.n_vocab = self.tokenizer.n_vocab
        self.weights_bytes = path.stat().st_size
        self.kv_bytes = kv_cache_bytes(model_metadata(self._model), n_ctx_seq * n_slots)
        self._held: list[list[int]] = [[] for _ in range(n_slots)]  # tokens each slot's KV holds
        self.seconds_per_token = 0.0  # one drafted position for a step's sequences (measured)

    def propose(self, jobs: Sequence[Job]) -> list[list[int]]:
        """Drafts of up to k tokens for each (slot, tokens so far, k, where its prompt is cut):
        what greedily follows the tokens. Empty drafts when a decode fails (the step goes on
        without)."""
        drafts: dict[int, list[int]] = {slot: [] for slot, _, _, _ in jobs}
        ks = {slot: k for slot, _, k, _ in jobs}
        try:
            last = self._catch_up([(slot, tokens, cuts) for slot, tokens, _, cuts in jobs])
        except RuntimeError as e:
            log.warning("draft model: %s", e)
            return [drafts[slot] for slot, _, _, _ in jobs]
        active = [slot for slot, _, _, _ in jobs]
        for slot, token in zip(active, last, strict=True):
            drafts[slot].append(token)
        t0 = time.perf_counter()
        steps = 0
        while True:
            active = [s for s in active if len(drafts[s]) < ks[s]]
            if not active:
                break
            rows = [(s, drafts[s][-1], len(self._held[s])) for s in active]
            try:
                picks = self._decode(rows, outputs=[s for s, _, _ in rows])
            except RuntimeError as e:
                log.warning("draft model: %s", e)
                break
            steps += 1
            for (s, token, _), pick in zip(rows, picks, strict=True):
                self._held[s].append(token)
                drafts[s].append(pick)
        if steps:
            per = (time.perf_counter() - t0) / steps
            known = self.seconds_per_token
            self.seconds_per_token = per if not known else known + EWMA * (per - known)
        return [drafts[slot][: ks[slot]] for slot, _, _, _ in jobs]

    def _catch_up(self, jobs: Sequence[tuple[int, Sequence[int], Sequence[int]]]) -> list[int]:
        """Compute what each slot lacks of its tokens, in chunks cut where the main model cut
        them (a prompt's cuts, then GENERATED_CHUNK rows at most): so a copy of the model
        computes the same KV. Returns the greedy next token of each."""
        pending: list[tuple[int, Sequence[int], int, Sequence[int]]] = []  # ... computed so far
        for slot, tokens, cuts in jobs:
            held = self._held[slot]
            keep = common_prefix(held, tokens)
            if keep < cuts[-1]:  # within the prompt: only up to a cut, as the main model reuses
                keep = last_cut(list(cuts), keep)
            keep = min(keep, len(tokens) - 1)  # the last token always again: its logits
            if keep < len(held):
                L.llama_memory_seq_rm(self._mem, slot, keep, -1)
                del held[keep:]
            pending.append((slot, tokens, keep, cuts))
        last: dict[int, int] = {}
        while pending:
            rows: list[tuple[int, int, int]] = []
            ends: list[int] = []  # slots whose last token is in this call
            budget = self._n_batch
            rest = []
            for slot, tokens, done, cuts in pending:
                i = bisect.bisect_right(cuts, done)
                end = cuts[i] if i < len(cuts) else done + GENERATED_CHUNK
                take = max(0, min(end, len(tokens)) - done)
                take = take if take <= budget else 0  # a whole chunk, or next call
                rows += [(slot, tokens[done + j], done + j) for j in range(take)]
                budget -= take
                if done + take == len(tokens):
                    ends.append(slot)
                else:
                    rest.append((slot, tokens, done + take, cuts))
            picks = self._decode(rows, outputs=ends)
            for slot, pick in zip(ends, picks, strict=True):
                last[slot] = pick
            for slot, token, _ in rows:
                self._held[slot].append(token)
            pending = rest
        return [last[slot] for slot, _, _ in jobs]

    def _decode(self, rows: list[tuple[int, int, int]], outputs: list[int]) -> list[int]:
        """One call of (slot, token, position) rows; the argmax after each slot's last row, for
        the slots in `outputs` (in their order)."""
        b = self._batch
        last_row = {slot: i for i, (slot, _, _) in enumerate(rows)}
        wanted = {last_row[slot] for slot in outputs}
        for i, (slot, token, pos) in enumerate(rows):
            b.token[i] = token
            b.pos[i] = pos
            b.n_seq_id[i] = 1
            b.seq_id[i][0] = slot
            b.logits[i] = int(i in wanted)
        b.n_tokens = len(rows)
        rc = L.llama_decode(self._ctx, b)
        if rc == 0 and not outputs:
            return []
        if rc != 0:
            for slot in {slot for slot, _, _ in rows}:
                L.llama_memory_seq_rm(self._mem, slot, -1, -1)
                self._held[slot].clear()
            raise RuntimeError(f"llama_decode returned {rc}")
        order = sorted(wanted)  # outputs come in batch order
        logits = step_logits(self._ctx, self.n_vocab, len(order))
        index = {row: i for i, row in enumerate(order)}
        picked: list[int] = logits[[index[last_row[s]] for s in outputs]].argmax(axis=1).tolist()
        return picked

    def free(self) -> None:
        if self._ctx:
            free_context(self._batch, self._ctx, self._model)
            self._ctx = None
