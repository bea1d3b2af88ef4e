"""The checkpoint a repair run may need: checked before any work, built only where it runs.

The learned rule never asks the model; the model rule, a sigmoid checkpoint, a checksummed file
that fails a check (its candidates are ranked by the model's surprise) and a --device do. So a
run over plain files with the bundled model never imports torch: its start and ~200 MB.
"""
from __future__ import annotations

import os
from pathlib import Path

from fragfix.config import Runtime
from fragfix.model import header as checkpoint_header
from fragfix.model.bundled import BUNDLED


class Model:
    """The checkpoint a run may need. Its header and weights are read and checked up front, without
    torch (a damaged file is refused before any work, and the report records its head and digest);
    the model itself is built on first use: the model rule, a sigmoid checkpoint (which repairs with
    its own rule), a checksummed file's candidate ranking, a --device other than cpu, a --model of the
    user's own (repair_files loads those at the start). The default rule on plain files with the
    bundled model never asks it, so such a run never imports torch (a second and ~200 MB less)."""

    def __init__(self, path: Path, runtime: Runtime):
        self.path, self.runtime = path, runtime
        self.info = checkpoint_header.summary(path)
        self._scorer = None

    def scorer(self):
        """The loaded model (decide.py's Scorer), loading it the first time."""
        if self._scorer is None:
            from fragfix.model.inference import cpu_trunk, load_scorer
            from fragfix.model.runtime import set_threads
            set_threads(self.runtime.threads)
            rt = self.runtime
            self._scorer, _ = load_scorer(self.path, rt.device, rt.precision, rt.batch_fragments)
            if self._scorer.cpu:
                cpu_trunk(self._scorer.model, self._scorer.bf16)  # weights prepared now, not inside the first window
        return self._scorer

    def runtime_info(self, workers: int) -> dict:
        """Where the work runs, for the report: the model's device, precision and batch where it is
        loaded; the learned rule's predictor runs on the CPU, in `workers` processes."""
        if self._scorer is None:
            return {"device": "cpu", "workers": workers}
        sc = self._scorer
        return {"device": str(sc.device), "precision": "bf16" if sc.bf16 else "fp32", "batch_fragments": sc.batch,
                "workers": workers}

    def surprise(self):
        """The model as a checksummed file's scorer (verified.py); None where it cannot run (not on the CPU)."""
        from fragfix.model.inference import model_scorer
        return model_scorer(self.scorer())


def is_bundled(path: Path) -> bool:
    """Whether `path` is the model shipped inside the package."""
    try:
        return BUNDLED.is_file() and os.path.samefile(path, BUNDLED)
    except OSError:
        return False
