"""In-order scoreboard: every DUT output is compared with the reference model's, bit for bit.

Expected items are queued per channel (``acc``, ``events``, ``scores``) by the reference-model
callback before the stimulus runs; each monitored output pops the head of its channel and is
compared field by field. A missing output (queue not empty at the end) and an extra output
(queue already empty) are mismatches too, so lost and duplicated transfers are caught.
"""

from __future__ import annotations

import json
import os
from collections import deque
from pathlib import Path

__all__ = ["Scoreboard"]


class Scoreboard:
    def __init__(self, log=None, max_reports=20):
        self.log = log
        self.max_reports = max_reports
        self.expected = {}
        self.matched = {}
        self.mismatches = []   # human-readable descriptions (first max_reports kept)
        self.n_mismatches = 0

    def expect(self, channel, items):
        q = self.expected.setdefault(channel, deque())
        q.extend(items)
        self.matched.setdefault(channel, 0)

    def _fail(self, text):
        self.n_mismatches += 1
        if len(self.mismatches) < self.max_reports:
            self.mismatches.append(text)
            if self.log is not None:
                self.log.error("mismatch: %s", text)

    def compare(self, channel, got):
        """Compare ``got`` (a dict of fields) with the next expected item of ``channel``."""
        q = self.expected.get(channel)
        n = self.matched.get(channel, 0)
        if not q:
            self._fail(f"{channel}[{n}]: unexpected extra output {got}")
            return False
        want = q.popleft()
        diff = {k: (got.get(k), v) for k, v in want.items() if got.get(k) != v}
        if diff:
            self._fail(f"{channel}[{n}]: " + ", ".join(
                f"{k}: got {g!r} want {w!r}" for k, (g, w) in list(diff.items())[:8]))
        self.matched[channel] = n + 1
        return not diff

    def outstanding(self):
        return {ch: len(q) for ch, q in self.expected.items() if q}

    def finish(self):
        """Count every still-expected item as a mismatch (lost output); returns total mismatches."""
        for ch, q in self.expected.items():
            if q:
                self._fail(f"{ch}: {len(q)} expected output(s) never arrived (first {q[0]})")
                self.n_mismatches += len(q) - 1
                q.clear()
        return self.n_mismatches


def finish_case(case_id, result, problems, violations, mismatches, scoreboard):
    """Write a case's result record (when COSIM_RESULT_DIR is set), then fail the cocotb test
    on any problem, protocol violation or mismatch."""
    out_dir = os.environ.get("COSIM_RESULT_DIR")
    if out_dir:
        Path(out_dir, f"{case_id}.json").write_text(json.dumps(result, indent=1))
    assert not problems, "; ".join(problems)
    assert not violations, violations[:5]
    assert mismatches == 0, f"{mismatches} mismatches, first: {scoreboard.mismatches[:3]}"
