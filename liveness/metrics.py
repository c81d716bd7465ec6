"""Presentation-attack detection metrics (ISO/IEC 30107-3 names).

Scores are "higher means live"; a sample is accepted as live when ``score >= threshold``.
APCER: share of attacks accepted. BPCER: share of bona fide (live) samples rejected.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


def apcer_bpcer(scores: np.ndarray, labels: np.ndarray, threshold: float) -> tuple[float, float]:
    """(APCER, BPCER) at ``threshold``; labels are 1 live, 0 spoof. NaN where a class is empty."""
    scores, labels = np.asarray(scores, float), np.asarray(labels)
    live, spoof = scores[labels == 1], scores[labels == 0]
    apcer = float(np.mean(spoof >= threshold)) if spoof.size else float("nan")
    bpcer = float(np.mean(live < threshold)) if live.size else float("nan")
    return apcer, bpcer


def eer(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(equal error rate, threshold at it), sweeping every distinct score."""
    scores, labels = np.asarray(scores, float), np.asarray(labels)
    if not (labels == 1).any() or not (labels == 0).any():
        return float("nan"), float("nan")
    candidates = np.unique(np.concatenate([scores, [np.inf]]))
    best = (np.inf, 0.0, 0.5)
    for t in candidates:
        a, b = apcer_bpcer(scores, labels, t)
        gap = abs(a - b)
        if gap < best[0] or (gap == best[0] and (a + b) / 2 < best[1]):
            best = (gap, (a + b) / 2, float(t))
    return best[1], best[2]


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Probability that a random live sample scores above a random spoof (ties count half)."""
    scores, labels = np.asarray(scores, float), np.asarray(labels)
    live, spoof = scores[labels == 1], scores[labels == 0]
    if not live.size or not spoof.size:
        return float("nan")
    greater = (live[:, None] > spoof[None, :]).sum()
    ties = (live[:, None] == spoof[None, :]).sum()
    return float((greater + 0.5 * ties) / (live.size * spoof.size))


@dataclass(frozen=True)
class PadReport:
    threshold: float
    n_live: int
    n_spoof: int
    n_no_face: int
    apcer: float
    bpcer: float
    acer: float
    hter: float
    eer: float
    auc: float

    def as_dict(self) -> dict:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def pad_report(scores, labels, threshold: float, n_no_face: int = 0) -> PadReport:
    scores, labels = np.asarray(scores, float), np.asarray(labels)
    a, b = apcer_bpcer(scores, labels, threshold)
    e, _ = eer(scores, labels)
    acer = float(np.nanmean([a, b])) if not (np.isnan(a) and np.isnan(b)) else float("nan")
    return PadReport(threshold, int((labels == 1).sum()), int((labels == 0).sum()), n_no_face,
                     a, b, acer, acer, e, auc(scores, labels))
