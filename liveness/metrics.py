"""Presentation-attack detection metrics (ISO/IEC 30107-3 names).

Scores are "higher means live"; a sample is accepted as live when ``score >= threshold``.
APCER: share of attacks accepted. BPCER: share of bona fide (live) samples rejected.
ACER = (APCER + BPCER) / 2; HTER is the same mean at a fixed threshold, reported alongside.
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


def bpcer_at_apcer(scores: np.ndarray, labels: np.ndarray, target: float) -> tuple[float, float]:
    """(BPCER, threshold) at the lowest threshold whose APCER is at most ``target``."""
    scores, labels = np.asarray(scores, float), np.asarray(labels)
    spoof = np.sort(scores[labels == 0])[::-1]
    if not spoof.size or not (labels == 1).any():
        return float("nan"), float("nan")
    allowed = int(np.floor(target * spoof.size + 1e-9))  # attacks we may let through
    # Accept strictly above the (allowed+1)-th highest attack score.
    threshold = float(np.nextafter(spoof[allowed], np.inf)) if allowed < spoof.size else \
        float(spoof[-1])
    return apcer_bpcer(scores, labels, threshold)[1], threshold


def threshold_for_bpcer(scores: np.ndarray, labels: np.ndarray, target: float) -> float:
    """The highest threshold whose BPCER is at most ``target`` (fewest attacks let through)."""
    live = np.sort(np.asarray(scores, float)[np.asarray(labels) == 1])
    if not live.size:
        raise ValueError("no live samples to calibrate on")
    rejectable = int(np.floor(target * live.size + 1e-9))  # live samples we may reject
    return float(live[min(rejectable, live.size - 1)])


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
    bpcer_at_apcer_1: float = float("nan")
    bpcer_at_apcer_5: float = float("nan")
    bpcer_at_apcer_10: float = float("nan")

    def as_dict(self) -> dict:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def pad_report(scores, labels, threshold: float, n_no_face: int = 0) -> PadReport:
    scores, labels = np.asarray(scores, float), np.asarray(labels)
    a, b = apcer_bpcer(scores, labels, threshold)
    e, _ = eer(scores, labels)
    acer = float(np.nanmean([a, b])) if not (np.isnan(a) and np.isnan(b)) else float("nan")
    at = [bpcer_at_apcer(scores, labels, t)[0] for t in (0.01, 0.05, 0.10)]
    return PadReport(threshold, int((labels == 1).sum()), int((labels == 0).sum()), n_no_face,
                     a, b, acer, acer, e, auc(scores, labels), *at)
