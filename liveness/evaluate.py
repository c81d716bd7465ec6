"""Evaluating a liveness model on a folder of images (ISO/IEC 30107-3 metrics).

``DIR/live/*`` and ``DIR/spoof/*``: every image is detected and cropped as the server does
(results cached by file), scored, and reported with APCER/BPCER/ACER at a threshold plus
EER, AUC and BPCER at APCER 1/5/10%. Images with no face are counted, never dropped silently.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from facegate.liveness.checks import CropCheck
from facegate.liveness.data import CropSet, FolderDataset, crop_set
from facegate.liveness.metrics import PadReport, apcer_bpcer, pad_report


@dataclass(frozen=True)
class StepUp:
    """What the server's step-up band does to verdicts at 0.5 (the rule's fused score).

    The headline report beside it counts a score in the band as not live: the server's answer
    to one image (the unary ``CheckLiveness``, ``check_liveness``) and to a stream that answers
    no challenge (a passive ``LIVENESS_ONLY`` client, a recording). ``passive`` counts it as
    live: every challenge answered. A live user who answers gets ``passive.bpcer``; an attack
    that cannot answer gets the headline APCER.
    """

    band: tuple[float, float]  # (below, above) 0.5
    passive: PadReport
    live_share: float  # of live faces (sessions) in the band: asked a challenge in a stream
    spoof_share: float

    def as_dict(self) -> dict:
        return {"step_up_band": list(self.band), "step_up_live": round(self.live_share, 4),
                "step_up_spoof": round(self.spoof_share, 4),
                "passive_apcer": round(self.passive.apcer, 4),
                "passive_bpcer": round(self.passive.bpcer, 4)}


def judged_with_band(scores: np.ndarray, labels: np.ndarray, band, threshold: float,
                     n_no_face: int = 0) -> tuple[PadReport, StepUp | None]:
    """The report of fused ``scores`` at ``threshold`` with the step-up ``band`` (a number or
    (below, above) 0.5; None: no band) counted as the server counts it when no challenge is
    answered, and the :class:`StepUp` view beside it."""
    from facegate.liveness.fusion import band_edges, in_band

    scores, labels = np.asarray(scores, float), np.asarray(labels)
    passive = pad_report(scores, labels, threshold, n_no_face)
    edges = band_edges(band)
    if edges is None:
        return passive, None
    asked = np.array([in_band(s, edges) for s in scores], bool)
    live, spoof = labels == 1, labels == 0
    accepted = (scores >= threshold) & ~asked
    apcer = float(accepted[spoof].mean()) if spoof.any() else float("nan")
    bpcer = float((~accepted)[live].mean()) if live.any() else float("nan")
    acer = float(np.nanmean([apcer, bpcer]))
    answered = replace(passive, apcer=apcer, bpcer=bpcer, acer=acer, hter=acer)
    share = {c: float(asked[m].mean()) if m.any() else float("nan")
             for c, m in (("live", live), ("spoof", spoof))}
    return answered, StepUp(edges, passive, share["live"], share["spoof"])


@dataclass(frozen=True)
class Evaluation:
    model: str
    data: str
    report: PadReport
    scores: np.ndarray  # of the images with a face
    labels: np.ndarray
    no_face: dict[str, int]  # per class
    step_up: StepUp | None = None  # the rules (default, fusion) at the server's threshold

    def as_dict(self) -> dict:
        return {"model": self.model, "data": self.data, **self.report.as_dict(),
                "n_no_face_live": self.no_face["live"], "n_no_face_spoof": self.no_face["spoof"]
                } | (self.step_up.as_dict() if self.step_up else {})


DEFAULT_RULE = "default"  # the server's per-frame rule over its default checks
FUSION_RULE = "fusion"  # the opt-in rule: the fitted fusion of texture CNN and IQA


def crop_check(name: str) -> CropCheck:
    """The registered check ``name`` if it scores single face crops (a per-frame check)."""
    from facegate.liveness.checks import build_check

    check = build_check(name)
    if not isinstance(check, CropCheck):
        raise ValueError(f"check {name!r} judges a stream, not single images: it has no "
                         "per-image score to evaluate")
    return check


def score_crops(cs: CropSet, model: str, check: CropCheck | None = None
                ) -> tuple[np.ndarray, np.ndarray, float]:
    """Scores of the found faces, their labels, and the threshold they are judged at.

    ``model`` is a per-frame check's registry name (``texture_cnn``, ``iqa_lda``,
    ``spoof_cue``, ``celeba_minifas``, ...), ``default`` (the server's per-frame rule: every
    required per-frame check of the default set at its own threshold) or ``fusion`` (the
    same with the fitted fusion of its inputs); rules are scored as the weakest part mapped
    so each threshold sits at 0.5.
    ``check`` scores with an already built check instead of the registry's.
    """
    from facegate.liveness.checks import DEFAULT_CHECKS, build_check
    from facegate.liveness.fusion import (
        FUSED_THRESHOLD,
        AllRequiredFusion,
        LearnedFusion,
        deciding,
    )

    labels = cs.labels[cs.found]
    if model in (DEFAULT_RULE, FUSION_RULE):
        fusion = LearnedFusion.load(FUSION_RULE) if model == FUSION_RULE \
            else AllRequiredFusion()
        checks = deciding((build_check(n) for n in DEFAULT_CHECKS), fusion)
        scores = {c.name: (c.predict_crops(_crops(cs, c)), c.threshold) for c in checks}
        fused = np.array([fusion.frame_score({n: (float(s[i]), t)
                                              for n, (s, t) in scores.items()})
                          for i in range(len(labels))])
        return fused, labels, FUSED_THRESHOLD
    check = check or crop_check(model)
    return check.predict_crops(_crops(cs, check)), labels, check.threshold


def _crops(cs: CropSet, check: CropCheck) -> np.ndarray:
    """The found faces' crops as ``check`` takes them: the cached tight crops, or its own
    context crops of the full images (the same faces: one detector, one cache key)."""
    if not check.needs_frame:
        return cs.crops[cs.found]
    from facegate.liveness.data import context_crops

    crops, found = context_crops(cs.samples, check)
    if not np.array_equal(found, cs.found):
        raise RuntimeError("context crops found other faces than the crop cache")
    return crops[found]


def evaluate_folder(data: str | Path, model: str = "texture_cnn",
                    threshold: float | None = None, progress: bool = False,
                    check: CropCheck | None = None) -> Evaluation:
    """Every image of ``data``'s ``live/`` and ``spoof/`` scored by ``model``. The rules
    (``default``, ``fusion``) judged at the server's threshold are reported as the server
    answers one image: a score in the step-up band (registry ``step_up``) is not live, since
    no challenge can be asked; ``Evaluation.step_up`` has the passive numbers and the band's
    shares beside it."""
    samples = FolderDataset(data).samples()
    if not samples:
        raise ValueError(f"{data}: no images under live/ or spoof/")
    cs = crop_set(samples, progress=progress)
    scores, labels, own = score_crops(cs, model, check)
    thr = own if threshold is None else threshold
    missing = ~cs.found
    no_face = {"live": int((missing & (cs.labels == 1)).sum()),
               "spoof": int((missing & (cs.labels == 0)).sum())}
    band = server_band() if model in (DEFAULT_RULE, FUSION_RULE) and threshold is None \
        else None
    report, step_up = judged_with_band(scores, labels, band, thr, int(missing.sum()))
    return Evaluation(model, str(data), report, scores, labels, no_face, step_up)


def server_band():
    """The step-up band the server judges its rule with (registry ``step_up.band``)."""
    from facegate.weights import entry

    return entry("step_up").extra["band"]


def _curve(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(APCER, BPCER) over every distinct threshold, from accept-all to reject-all."""
    ts = np.concatenate([[-np.inf], np.unique(scores), [np.inf]])
    pts = np.array([apcer_bpcer(scores, labels, t) for t in ts])
    return pts[:, 0], pts[:, 1]


def _plot(xs: np.ndarray, ys: np.ndarray, title: str, xlabel: str, ylabel: str,
          ticks: list[tuple[float, str]], path: Path, diagonal: bool) -> None:
    """A plain line chart on a 0-1 square, drawn with OpenCV (no plotting dependency)."""
    size, m = 480, 60
    img = np.full((size, size, 3), 255, np.uint8)
    span = size - 2 * m

    def px(x: float, y: float) -> tuple[int, int]:
        return int(m + np.clip(x, 0, 1) * span), int(size - m - np.clip(y, 0, 1) * span)

    cv2.rectangle(img, px(0, 0), px(1, 1), (0, 0, 0), 1)
    for v, label in ticks:
        cv2.line(img, px(v, 0), px(v, 1), (225, 225, 225), 1)
        cv2.line(img, px(0, v), px(1, v), (225, 225, 225), 1)
        cv2.putText(img, label, (px(v, 0)[0] - 12, size - m + 18), cv2.FONT_HERSHEY_SIMPLEX,
                    0.4, (0, 0, 0), 1)
        cv2.putText(img, label, (4, px(0, v)[1] + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1)
    if diagonal:
        cv2.line(img, px(0, 0), px(1, 1), (180, 180, 180), 1)
    pts = np.array([px(x, y) for x, y in zip(xs, ys)], np.int32)
    cv2.polylines(img, [pts], False, (200, 80, 0), 2)
    cv2.putText(img, title, (m, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 1)
    cv2.putText(img, xlabel, (size // 2 - 40, size - 15), cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                (0, 0, 0), 1)
    cv2.putText(img, ylabel, (m, 48), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1)
    cv2.imwrite(str(path), img)


def write_report(ev: Evaluation, out: Path) -> Path:
    """ROC and DET curves as PNG, and a markdown report, in ``out``."""
    from scipy.stats import norm

    out.mkdir(parents=True, exist_ok=True)
    apcer, bpcer = _curve(ev.scores, ev.labels)
    _plot(apcer, 1 - bpcer, f"ROC: {ev.model}", "APCER", "1 - BPCER",
          [(v, f"{v:.1f}") for v in (0.2, 0.4, 0.6, 0.8)], out / "roc.png", diagonal=True)
    # DET on normal-deviate axes from 0.1% to 50%, the usual biometric view.
    lo, hi = norm.ppf(0.001), norm.ppf(0.5)

    def dev(p: np.ndarray) -> np.ndarray:
        return (norm.ppf(np.clip(p, 0.001, 0.5)) - lo) / (hi - lo)

    ticks = [(float(dev(np.array([p]))[0]), f"{p * 100:g}%") for p in (0.01, 0.05, 0.1, 0.2, 0.4)]
    _plot(dev(apcer), dev(bpcer), f"DET: {ev.model}", "APCER", "BPCER", ticks, out / "det.png",
          diagonal=True)
    r = ev.as_dict()
    rows = "\n".join(f"| {k} | {v} |" for k, v in r.items())
    md = (f"# Liveness evaluation: {ev.model} on {ev.data}\n\n| metric | value |\n|---|---|\n"
          f"{rows}\n\nAPCER/BPCER/ACER at threshold {r['threshold']} (accept as live when "
          "score >= threshold). Images with no detected face are not scored and are counted in "
          f"n_no_face.{_band_note(ev.step_up)}\n\n![ROC](roc.png) ![DET](det.png)\n")
    path = out / "report.md"
    path.write_text(md)
    (out / "report.json").write_text(json.dumps(r, indent=2) + "\n")
    return path


def _band_note(step_up: StepUp | None) -> str:
    if step_up is None:
        return ""
    return (f" A score in the step-up band {list(step_up.band)} (below, above the threshold) "
            "is counted not live, as the server answers one image or a stream that answers "
            "no challenge; passive_apcer / passive_bpcer count it live (every challenge "
            "answered); step_up_live / step_up_spoof are the shares in the band.")


@dataclass(frozen=True)
class VideoEvaluation:
    """Sessions judged as the server judges them, on ``DIR/live/*`` and ``DIR/spoof/*``
    clips: ``sessions`` (every run of ``window`` consecutive face frames of a clip, one
    LivenessSession each) and ``clips`` (each clip's first session: the server's decision
    on a stream that starts with it)."""

    data: str
    window: int
    sessions: PadReport
    clips: PadReport
    per_clip: dict[str, dict]
    # With a band: the sessions and clips as a stream that answers no challenge ends
    # (``sessions``, ``clips``), the passive view and the band's shares here.
    sessions_step_up: StepUp | None = None
    clips_step_up: StepUp | None = None

    def as_dict(self) -> dict:
        def with_band(r: PadReport, s: StepUp | None) -> dict:
            return r.as_dict() | (s.as_dict() if s else {})

        return {"data": self.data, "window": self.window,
                "sessions": with_band(self.sessions, self.sessions_step_up),
                "clips": with_band(self.clips, self.clips_step_up), "per_clip": self.per_clip}


def video_samples(data: str | Path) -> list[tuple[Path, int]]:
    """(clip, label) of ``DIR/live/*`` (1) and ``DIR/spoof/*`` (0) videos."""
    from facegate.client.media import VIDEO_SUFFIXES

    out = []
    for label_name, label in (("live", 1), ("spoof", 0)):
        folder = Path(data) / label_name
        if folder.is_dir():
            out += [(p, label) for p in sorted(folder.iterdir())
                    if p.suffix.lower() in VIDEO_SUFFIXES]
    return out


def evaluate_videos(data: str | Path, pipeline=None, window: int = 8, every: int = 1,
                    progress: bool = False,
                    band: float | tuple[float, float] | None = None) -> VideoEvaluation:
    """Every clip streamed through one LivenessSession (the face tracked as in a stream),
    then every window of ``window`` face frames judged by a fresh session on those frames,
    the way a server session of that length would judge them (no challenges asked).
    ``band``: the step-up band (a number or (below, above) 0.5): a session in it is asked a
    challenge, which a recording does not answer, so it is reported not live, with the
    passive view and the share of sessions the band challenges beside it."""
    from facegate.liveness.fusion import band_edges, in_band
    from facegate.liveness.pipeline import LivenessPipeline

    edges = band_edges(band)

    clips = video_samples(data)
    if not clips:
        raise ValueError(f"{data}: no videos under live/ or spoof/")
    pipe = pipeline or LivenessPipeline(decision_frames=window)
    s_scores, s_labels, c_scores, c_labels, per_clip = [], [], [], [], {}
    for clip, label in clips:
        analyses = [a for a in stream_analyses(pipe, clip, every) if a.face is not None]
        windows = [r.score for r in window_results(pipe, analyses, window)]
        s_scores += windows
        s_labels += [label] * len(windows)
        if windows:
            c_scores.append(windows[0])
            c_labels.append(label)
        per_clip[clip.name] = {
            "label": "live" if label else "spoof", "face_frames": len(analyses),
            "sessions": len(windows),
            "live_share": round(float(np.mean(np.array(windows) >= 0.5)), 4) if windows
            else None, "first_session_live": bool(windows[0] >= 0.5) if windows else None}
        if edges is not None and windows:
            per_clip[clip.name]["step_up_share"] = round(float(np.mean(
                [in_band(w, edges) for w in windows])), 4)
        if progress:
            print(clip, per_clip[clip.name], flush=True)
    from facegate.liveness.fusion import FUSED_THRESHOLD

    sessions, sessions_up = judged_with_band(s_scores, np.array(s_labels, np.int64), band,
                                             FUSED_THRESHOLD)
    clips_r, clips_up = judged_with_band(c_scores, np.array(c_labels, np.int64), band,
                                         FUSED_THRESHOLD)
    return VideoEvaluation(str(data), window, sessions, clips_r, per_clip, sessions_up,
                           clips_up)


def window_results(pipe, analyses: list, window: int) -> list:
    """The verdict (LivenessResult) a fresh session gives each run of ``window`` analysed
    face frames: what a server session of that length would decide."""
    out = []
    for i in range(0, max(len(analyses) - window + 1, 0)):
        session = pipe.session()
        for a in analyses[i:i + window]:
            session.add(a)
        out.append(session.result())
    return out


def stream_analyses(pipe, clip: Path, every: int):
    """The clip's frames as a client sends them (the SDK's video reader: at most 640 px,
    JPEG) and as the server decodes them, analysed as one stream (tracking between frames)."""
    from facegate.client.media import video_frames

    session = pipe.session()
    for f in video_frames(clip, every=every):
        bgr = cv2.imdecode(np.frombuffer(f.encoded, np.uint8), cv2.IMREAD_COLOR)
        yield session.step(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), float(f.timestamp_ms)).analysis
