"""The spoof-cue generator on a pretrained encoder: a U-Net whose encoder starts from the
published MiniFASNetV2 (Silent-Face, Apache-2.0), trained on every source with the
published spoof-cue losses, judged leave-one-source-out at the 0.96 operating point.

    python -m training.train_fascue [--steps 150] [--groups G ...]   # LOSO -> cards/spoof_cue
    python -m training.train_fascue --final [--steps 150]            # weights + registry entry
    python -m training.train_fascue --set teacher_cue=0 --card NAME  # a variant, its own card
    python -m training.train_fascue --rescore                        # card from stored scores

Input: ``minifas_v2``'s served context crop (the MTCNN box scaled 2.7 about its centre,
80x80 BGR, 0-255) of every re-detected, upright face, the same faces in the same order as
the pretrained checks' scores, so ``training/select_rule.py`` ranks it with them.

Recipe (issue 12): batches drawn equally from every (group, class) cell; capture and display
augmentation (moire, gamma, colour cast, blur, noise, downscale, JPEG) on live and spoof
faces alike (``training.common.capture_augment``). Losses: Feng et al.'s live cue regression
and auxiliary classifier on face + cue, our spoof hinge (a spoof's mean|cue| pulled up to
``spoof_margin``), and distillation: each face's cue target mixes its label with the
published network's P(spoof) (``teacher_cue``), so the cue keeps what the pretrained model
knows about attacks our sources lack (with labels alone, 2 folds collapse: both classes'
cue ~0). Shipped: the encoder frozen at its published weights (``frozen="all"``) and the
decoder drawing from the head's 5x5 features only (``skips=0``); the triplet loss on the
embedding and the distillation of the head's output act only when ``frozen`` leaves encoder
stages to train (fine-tuning it with every skip drew cues on unseen NUAA live faces).

Score = 1 - gain * mean|cue|, live at >= 0.96. Every held-out group is judged at the gain
calibrated on the *other* groups' out-of-fold magnitudes (nested); the shipped gain is the
one over all groups. A fold whose cue is (almost) zero for live and spoof alike is reported
as collapsed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from facegate.liveness.metrics import pad_report
from facegate.liveness.minifasnet import MiniFASNet, state_from_onnx
from facegate.liveness.resnet import SmallResNet
from facegate.liveness.spoofcue import FASCueGenerator, cue_magnitude, cue_score
from facegate.weights import entry, load_entry_state, verify
from training import datasets as D
from training.common import (
    EVAL_ONLY,
    RESEARCH_LICENSE,
    WEIGHTS_OUT,
    batched,
    capture_augment,
)
from training.finetune_minifas import cells, group_eval, load_sets
from training.train_spoofcue import OPERATING_POINT, batch_hard_triplet, calibrate_gain

BASE = "minifas_v2"
NAME = "spoof_cue"


@dataclass
class FASCueConfig:
    steps: int = 150
    batch_size: int = 48
    lr: float = 1e-3  # decoder and auxiliary classifier
    encoder_lr: float = 2e-4
    width: int = 8
    # Encoder skips into the decoder (0: the cue is drawn from the head's 5x5 features only;
    # with all four and a fine-tuned encoder the cue inverted on unseen NUAA, AUC ~0.2).
    skips: int = 0
    seed: int = 0
    augment_p: float = 0.3
    alpha_reg: float = 5.0
    alpha_aux: float = 1.0
    alpha_trip: float = 1.0
    margin: float = 0.5
    alpha_spoof: float = 5.0
    spoof_margin: float = 0.2
    alpha_distill: float = 1.0
    temperature: float = 2.0
    # Encoder modules kept at their published weights (the rest of it is fine-tuned).
    frozen: str = "all"
    # Share of the published model's P(spoof) in each face's cue-magnitude target (the rest
    # is the label): 0 = the label-only losses above.
    teacher_cue: float = 0.5
    # The most cue a live face is asked for (the published model's belief can call a whole
    # camera's live faces spoofs: minifas_v2 rejects 90% of hm_krzysiek's; uncapped, the cue
    # learns that shift). Below the operating point's magnitude, a live target keeps the
    # teacher's ranking without crossing 0.96; 1.0 = no cap.
    live_cap: float = 1.0
    # The decoder's input per face: "none", "layer" (standardised over channels and
    # positions) or "rms" (divided by its root mean square); see FASCueGenerator.
    norm: str = "none"
    # Whose P(spoof) the cue target mixes in: published checks, comma-separated. BASE runs
    # on the augmented input; the others score each face once on their own context crop.
    teachers: str = BASE
    # How the teachers' beliefs combine into a live face's target: "mean", or "min" (the
    # most lenient: one camera's live faces that one pretrained model calls spoofs are not
    # taught as cue when another model calls them live); and a spoof's: "mean" or "max"
    # (the most suspicious).
    teacher_live: str = "mean"
    teacher_spoof: str = "mean"
    # Single-side domain alignment (Jia et al., SSDG): a group classifier on the decoder's
    # pooled features of live faces, through gradient reversal, so what the cue is drawn
    # from on a live face does not tell the camera (spoofs are left free). 0 = off.
    alpha_domain: float = 0.0
    # A logistic loss on each face's cue magnitude itself (live below, spoof above half the
    # spoof margin, ``bce_width`` wide): what the operating point reads, optimised directly
    # on the labels, as a linear probe on the frozen features is. 0 = off.
    alpha_bce: float = 0.0
    bce_width: float = 0.025
    # A second published network beside the MiniFASNetV2 encoder, frozen, on the same
    # context crop (resized for it): "" = none, or "celeba_minifas" (the CelebA-Spoof
    # MiniFASNetV2-SE; its ONNX weights read into facegate's MiniFASNet).
    second: str = ""
    # The teacher's belief as a rank within each training (group, class) cell (0..1, the
    # teachers' beliefs on the un-augmented crops combined as above) instead of its value:
    # every camera's live faces then get the same spread of targets, so a camera the
    # teacher distrusts as a whole is not taught as cue. False = the beliefs as they are.
    teacher_rank: bool = False
    # The decoder: "unet" (upsampling blocks, tanh cue) or "linear" (a per-position linear
    # readout of the standardised head features, sigmoid cue; see FASCueGenerator), and the
    # DeepPixBiS loss on its 5x5 spoof-logit map (every position's target the face's label;
    # 0 = off): the linear probe's objective, on augmented faces, drawn as a map.
    readout: str = "unet"
    alpha_pix: float = 0.0
    # How the generator is trained: "sgd" (the losses above, on augmented batches) or
    # "logistic": the linear readout's head fitted as an L2-regularised logistic regression
    # (strength 1 / ``readout_c``) of every position's spoof logit on its face's label (the
    # per-position loss of DeepPixBiS), each (group, class) cell weighted equally, on the
    # un-augmented crops with both encoders frozen (see :func:`fit_readout`). ``readout_c``:
    # one C, or several comma-separated: one regression at each, their coefficients and
    # intercepts averaged (a mean over the regularisation path instead of one C picked).
    fit: str = "sgd"
    readout_c: str = "0.03"
    # With fit="logistic": this many capture-augmented copies of every training face (at
    # ``augment_p``) added as rows beside the un-augmented one (the faces judged are not).
    readout_augment: int = 0
    # The served cue averaged with the cue of the mirrored crop (flipped back): test-time
    # flip averaging (FASCueGenerator ``flip_average``); the fit reads the crops as they are.
    flip_average: bool = False


def published_state(name: str = BASE) -> dict[str, torch.Tensor]:
    """A published network's state dict in :class:`MiniFASNet`'s layout (``.onnx`` files
    through :func:`state_from_onnx`)."""
    e = entry(name)
    if e.file.endswith(".onnx"):
        return state_from_onnx(verify(e).path.read_bytes())
    return load_entry_state(e)


def shapes_of(state: dict[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in state.items()}


def published(name: str = BASE) -> MiniFASNet:
    state = published_state(name)
    model = MiniFASNet(shapes_of(state))
    model.load_state_dict(state)
    return model


def new_generator(width: int, skips: int, norm: str = "none", second: str = "",
                  readout: str = "unet", flip_average: bool = False) -> FASCueGenerator:
    base = published().state_dict()
    # The second network's weights as a state dict, not a built network: building one more
    # module would draw from the seeded generator and change the decoder's initialisation.
    extra = published_state(second) if second else None
    gen = FASCueGenerator(shapes_of(base), width, skips, norm,
                          second=shapes_of(extra) if extra else None,
                          second_size=entry(second).input_size if second else 128,
                          readout=readout, flip_average=flip_average)
    gen.encoder.load_state_dict(base)
    if extra:
        gen.second.load_state_dict(extra)
        gen.second.requires_grad_(False)
    return gen


def generator_of(cfg: FASCueConfig) -> FASCueGenerator:
    """A new generator as ``cfg`` describes it (the published encoders loaded)."""
    return new_generator(cfg.width, cfg.skips, cfg.norm, cfg.second, cfg.readout,
                         cfg.flip_average)


def keep_published_statistics(gen: FASCueGenerator) -> None:
    """The encoders' batch norms in eval mode (published running statistics kept)."""
    for enc in (e for e in (gen.encoder, gen.second) if e is not None):
        for m in enc.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.eval()


def fixed_teachers(cfg: FASCueConfig) -> list[str]:
    return [n for n in cfg.teachers.split(",") if n and n != BASE]


def add_teacher_scores(sets: dict, names: list[str]) -> None:
    """``sets[source]["teacher"]``: (faces, len(names)) P(spoof) of each published check
    ``names`` on its own context crop of each face (un-augmented), in ``sets``' order."""
    from facegate.liveness.evaluate import crop_check

    checks = [crop_check(n) for n in names]
    for source, s in sets.items():
        cols = [1.0 - check.predict_crops(own_crops(sets, source, check)) for check in checks]
        s["teacher"] = np.stack(cols, 1).astype(np.float32) if cols \
            else np.zeros((len(s["labels"]), 0), np.float32)


def own_crops(sets: dict, source: str, check) -> np.ndarray:
    """``check``'s own context crops of ``source``'s faces, in ``sets``' order (the same
    faces re-detected; an error if that check's crops find others)."""
    from facegate.liveness.data import context_crops

    crops, found = context_crops(D.pad_dataset(source).samples(), check)
    idx = np.flatnonzero(found)
    if len(idx) != len(sets[source]["labels"]):
        raise ValueError(f"{source}: {check.name} found other faces than {BASE}")
    return crops[idx]


class _Reverse(torch.autograd.Function):
    """Identity forward, gradient times -scale backward (domain-adversarial training)."""

    @staticmethod
    def forward(ctx, x, scale):
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return -ctx.scale * grad, None


def domain_classifier(gen: FASCueGenerator, groups: int) -> torch.nn.Module:
    dims = sum(up.body[-1][0].out_channels for up in gen.dec)
    return torch.nn.Sequential(torch.nn.Linear(dims, 64), torch.nn.ReLU(),
                               torch.nn.Linear(64, groups))


def train(train_cells, cfg: FASCueConfig, log: bool = False, teacher_cells=None,
          readout_cells=None) -> FASCueGenerator:
    """``teacher_cells``: per cell, the fixed teachers' P(spoof) of its faces (``cells``
    of ``sets[...]["teacher"]``), when ``cfg.teachers`` names any besides BASE;
    ``readout_cells``: per cell, its faces' readout inputs already computed
    (:func:`add_readout_inputs`), for ``fit="logistic"`` (else they are computed here)."""
    rng = np.random.default_rng(cfg.seed)
    torch.manual_seed(cfg.seed)
    teacher = published().eval()
    gen = generator_of(cfg)
    if cfg.alpha_pix and cfg.readout != "linear":
        raise ValueError("alpha_pix is the linear readout's loss: set readout=linear")
    if cfg.alpha_domain and cfg.readout != "unet":
        raise ValueError("alpha_domain reads the U-Net decoder's levels: readout=unet")
    if cfg.fit not in ("sgd", "logistic"):
        raise ValueError(f"fit must be 'sgd' or 'logistic', not {cfg.fit!r}")
    if cfg.fit == "logistic":
        if cfg.readout != "linear":
            raise ValueError("fit=logistic fits the linear readout's head: set readout=linear")
        if cfg.readout_augment and readout_cells is None:
            raise ValueError("readout_augment: the copies come with add_readout_inputs")
        if readout_cells is None:
            readout_cells = [(readout_inputs(gen, crops), c) for crops, c in train_cells]
        return fit_readout(gen, readout_cells, readout_cs(cfg.readout_c))
    aux = SmallResNet(3, widths=(8, 16, 32, 64))
    frozen = [n for n in cfg.frozen.split(",") if n]
    if frozen == ["all"]:
        frozen = [n for n, _ in gen.encoder.named_children()]
    for name in frozen:
        for p in getattr(gen.encoder, name).parameters():
            p.requires_grad_(False)
    enc = [p for p in gen.encoder.parameters() if p.requires_grad]
    rest = [p for n, p in gen.named_parameters() if not n.startswith(("encoder.", "second."))]
    # Domain label of a live face: the index of its group's live cell.
    domain_of = {k: i for i, k in enumerate(
        k for k, (_, c) in enumerate(train_cells) if c == D.LIVE)}
    domain = domain_classifier(gen, len(domain_of)) \
        if cfg.alpha_domain and len(domain_of) > 1 else None
    groups = [{"params": rest + list(aux.parameters())
               + (list(domain.parameters()) if domain else []), "lr": cfg.lr}]
    if enc:  # a frozen encoder has nothing to optimise
        groups.append({"params": enc, "lr": cfg.encoder_lr})
    opt = torch.optim.AdamW(groups, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, [g["lr"] for g in groups],
                                                total_steps=cfg.steps)
    per_cell = max(1, cfg.batch_size // len(train_cells))
    if per_cell * len(train_cells) % 2:
        # torch 2.14.1's multi-threaded CPU backward of this network aborts the process on
        # an odd batch ("corrupted size vs. prev_size"; one thread or an even batch is fine).
        raise ValueError(f"batch of {per_cell * len(train_cells)} faces ({len(train_cells)} "
                         "cells): use an even batch_size // cells * cells")
    t = cfg.temperature
    real = entry(BASE).preprocessing.get("real_class", 1)
    use_base = int(BASE in cfg.teachers.split(","))

    def beliefs_of(logits: torch.Tensor, fixed: np.ndarray) -> torch.Tensor:
        """(faces, teachers) P(spoof): BASE's from its ``logits`` (when it teaches), then
        the fixed teachers' ``fixed`` (faces, k)."""
        base = 1.0 - F.softmax(logits, dim=1)[:, real:real + 1]
        return torch.cat([base[:, :use_base],
                          torch.from_numpy(np.asarray(fixed, np.float32)
                                           .reshape(len(logits), -1))], 1)

    def combine(beliefs: torch.Tensor, live: torch.Tensor) -> torch.Tensor:
        """(faces, teachers) P(spoof) -> one belief per face (``teacher_live`` on live
        faces, ``teacher_spoof`` on spoofs)."""
        pick = {"mean": beliefs.mean(1), "min": beliefs.min(1).values,
                "max": beliefs.max(1).values}
        return torch.where(live, pick[cfg.teacher_live], pick[cfg.teacher_spoof])

    ranks = None
    if cfg.teacher_rank:
        ranks = []
        for k, (crops, c) in enumerate(train_cells):
            logits = torch.from_numpy(batched(lambda b: teacher(as_input(b)), crops))
            fixed = teacher_cells[k][0] if teacher_cells else ()
            b = combine(beliefs_of(logits, fixed),
                        torch.full((len(crops),), c == D.LIVE)).numpy()
            ranks.append((np.argsort(np.argsort(b, kind="stable")) + 0.5) / len(b))
    sums: dict[str, float] = {}
    for step in range(cfg.steps):
        gen.train()
        aux.train()
        keep_published_statistics(gen)
        xs, ys, fixed, cell, rank = [], [], [], [], []
        for k, (crops, c) in enumerate(train_cells):
            for i in rng.integers(len(crops), size=per_cell):
                xs.append(capture_augment(crops[i], rng, cfg.augment_p))
                ys.append(c)
                cell.append(k)
                fixed.append(teacher_cells[k][0][i] if teacher_cells else ())
                rank.append(ranks[k][i] if ranks else 0.0)
        x = as_input(xs)
        y = torch.tensor(ys)
        levels: list[torch.Tensor] = []
        cue, emb, logits = gen(x, levels)
        with torch.no_grad():
            t_logits = teacher(x)
            target = F.softmax(t_logits / t, dim=1)
            # BASE on the augmented input, then the fixed teachers.
            beliefs = beliefs_of(t_logits, fixed)
        live = y == D.LIVE
        t_spoof = torch.tensor(rank, dtype=torch.float32) if ranks \
            else combine(beliefs, live)
        mag = cue_magnitude(cue)
        # Each face's cue target: the label's (0 live, spoof_margin spoof) mixed with the
        # published model's belief; live faces' share is the published regression loss,
        # spoofs' a hinge (more cue than the target is not punished).
        want = cfg.spoof_margin * ((1 - cfg.teacher_cue) * (~live).float()
                                   + cfg.teacher_cue * t_spoof)
        want = torch.where(live, want.clamp(max=cfg.live_cap), want)
        over, under = F.relu(mag - want), F.relu(want - mag)
        parts = {
            "reg": (over + under)[live].mean() if live.any() else mag.sum() * 0,
            "spoof": under[~live].mean() if (~live).any() else mag.sum() * 0,
            "aux": F.cross_entropy(aux(F.avg_pool2d(x / 127.5 - 1.0 + cue, 2)), y),
            "trip": batch_hard_triplet(emb, y, cfg.margin),
            "distill": F.kl_div(F.log_softmax(logits / t, dim=1), target,
                                reduction="batchmean") * t * t}
        weights = {"reg": cfg.alpha_reg, "spoof": cfg.alpha_spoof, "aux": cfg.alpha_aux,
                   "trip": cfg.alpha_trip, "distill": cfg.alpha_distill}
        if cfg.alpha_bce:
            logit = (mag - cfg.spoof_margin / 2) / cfg.bce_width
            parts["bce"] = F.binary_cross_entropy_with_logits(logit, (~live).float())
            weights["bce"] = cfg.alpha_bce
        if cfg.alpha_pix:
            pix = levels[-1]
            parts["pix"] = F.binary_cross_entropy_with_logits(
                pix, (~live).float()[:, None, None, None].expand_as(pix))
            weights["pix"] = cfg.alpha_pix
        if domain is not None:
            # The reversal ramps up over training (Ganin & Lempitsky's schedule).
            ramp = 2.0 / (1.0 + np.exp(-10.0 * step / cfg.steps)) - 1.0
            pooled = torch.cat([F.adaptive_avg_pool2d(h, 1).flatten(1) for h in levels], 1)
            d = torch.tensor([domain_of.get(k, -1) for k in cell])
            parts["domain"] = F.cross_entropy(domain(_Reverse.apply(pooled[live], ramp)),
                                              d[live])
            weights["domain"] = cfg.alpha_domain
        loss = sum(weights[k] * v for k, v in parts.items())
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        for k, v in parts.items():
            sums[k] = sums.get(k, 0.0) + v.item()
        if log and (step + 1) % 50 == 0:
            print(f"    step {step + 1}: " + " ".join(f"{k} {v / 50:.4f}"
                                                     for k, v in sums.items()), flush=True)
            sums = {}
    return gen.eval()


def readout_cs(readout_c: str | float) -> list[float]:
    """The regularisation strengths of a config's ``readout_c`` (one, or comma-separated;
    a float in cards written before it took several)."""
    return [float(c) for c in str(readout_c).split(",") if c]


def readout_inputs(gen: FASCueGenerator, crops) -> np.ndarray:
    """(N, C, 5, 5) what ``gen``'s linear readout reads for each crop (its frozen encoders'
    head features, normalised per face; the head itself plays no part). Puts ``gen`` in
    eval mode: the encoders' batch norms read their published statistics (in train mode
    they would use, and overwrite them with, the batch's)."""
    gen.eval()
    return batched(lambda b: gen.readout_input(gen._encode(as_input(b))), crops)


def add_readout_inputs(sets: dict, cfg: FASCueConfig) -> None:
    """``sets[source]["readout"]``: every face's :func:`readout_inputs`, computed once (the
    encoders are frozen, so every fold's regression reads the same rows): (faces, 1 +
    ``readout_augment``, C, 5, 5), the un-augmented crop first, then its capture-augmented
    copies."""
    gen = generator_of(cfg)
    rng = np.random.default_rng(cfg.seed)
    for s in sets.values():
        copies = [s["crops"]] + [np.stack([capture_augment(c, rng, cfg.augment_p)
                                           for c in s["crops"]])
                                 for _ in range(cfg.readout_augment)]
        s["readout"] = np.stack([readout_inputs(gen, c).astype(np.float32) for c in copies], 1)


def fit_readout(gen: FASCueGenerator, readout_cells, cs: list[float]) -> FASCueGenerator:
    """The linear readout's head fitted by convex regression: every face's 5x5 readout
    inputs (``readout_cells``: per (group, class) cell, (faces, [copies,] C, 5, 5) of the
    frozen encoders on its crops, and the class) are rows whose target is the face's label
    (spoof 1), each cell weighted equally; an L2-regularised logistic regression (strength
    1 / C) on them, standardised per channel, at each C of ``cs``, their coefficients and
    intercepts averaged (the mean logit: still one linear readout). The standardisation
    becomes the head's batch-norm statistics and the averaged regression its 1x1 convolution
    (the same weights in all three cue channels), so the served cue computes the fitted
    logits; the cue is their sigmoid, upsampled as the generator draws it."""
    from sklearn.linear_model import LogisticRegression

    gen.eval()
    bn, conv = gen.head
    rows, ys, ws = [], [], []
    for h, label in readout_cells:
        h = h.reshape(-1, *h.shape[-3:])  # a face's copies are rows like it
        r = h.transpose(0, 2, 3, 1).reshape(-1, h.shape[1])
        rows.append(r)
        ys.append(np.full(len(r), int(label != D.LIVE)))
        ws.append(np.full(len(r), 1.0 / len(r)))
    x, y, w = np.concatenate(rows), np.concatenate(ys), np.concatenate(ws)
    mean, var = x.mean(0), x.var(0)
    x = (x - mean) / np.sqrt(var + bn.eps)
    w = w * len(w) / w.sum()
    models = [LogisticRegression(C=c, max_iter=3000).fit(x, y, sample_weight=w) for c in cs]
    with torch.no_grad():
        bn.running_mean.copy_(torch.from_numpy(mean))
        bn.running_var.copy_(torch.from_numpy(var))
        coef = np.mean([m.coef_[0] for m in models], 0)
        conv.weight.copy_(torch.from_numpy(coef).float()[None, :, None, None]
                          .expand_as(conv.weight))
        conv.bias.fill_(float(np.mean([m.intercept_[0] for m in models])))
    return gen


def prepared_sets(cfg: FASCueConfig) -> dict:
    """Every source's faces (:func:`load_sets`) with what ``cfg``'s training reads beside
    the crops: the fixed teachers' scores, and the readout inputs when it fits the readout."""
    sets = load_sets()
    add_teacher_scores(sets, fixed_teachers(cfg))
    if cfg.fit == "logistic":
        add_readout_inputs(sets, cfg)
    return sets


def train_groups(sets: dict, groups: set[str], cfg: FASCueConfig, log: bool = False
                 ) -> FASCueGenerator:
    """:func:`train` on the (group, class) cells of ``groups`` in ``sets`` (with their
    fixed teachers' scores, :func:`add_teacher_scores`, and their readout inputs where
    :func:`add_readout_inputs` computed them)."""
    readout = cells(sets, groups, "readout") if "readout" in next(iter(sets.values())) \
        else None
    return train(cells(sets, groups), cfg, log, teacher_cells=cells(sets, groups, "teacher"),
                 readout_cells=readout)


def as_input(crops) -> torch.Tensor:
    """(N, 80, 80, 3) uint8 BGR context crops (an array or a list) -> the network's input."""
    return torch.from_numpy(np.stack(crops).transpose(0, 3, 1, 2).astype(np.float32))


def magnitudes(gen: FASCueGenerator, crops: np.ndarray) -> np.ndarray:
    """mean|cue| per crop (the raw spoof evidence)."""
    return batched(lambda c: cue_magnitude(gen.cue(as_input(c))), crops)


def collapsed(m: np.ndarray, y: np.ndarray, floor: float = 0.005) -> bool:
    """No cue drawn for either class (the failure the published losses show here); a group
    of one class (live only) cannot show it."""
    return all((y == c).any() and np.median(m[y == c]) < floor for c in (0, 1))


def nested(oof: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, dict]:
    """Each judged group at 0.96 with the gain calibrated on the other judged groups."""
    judged = {g: v for g, v in oof.items() if g not in EVAL_ONLY}
    out = {}
    for g, (m, y) in oof.items():
        others = {h: v for h, v in judged.items() if h != g}
        if not others:  # one held-out group run alone: nothing to calibrate on
            continue
        gain, _, _ = calibrate_gain(others)
        rep = pad_report(cue_score(m, gain), y, OPERATING_POINT).as_dict()
        out[g] = rep | {"gain": round(float(gain), 4), "collapsed": collapsed(m, y)}
    return out


def report_of(oof: dict, cfg: FASCueConfig, held: list[str]) -> dict:
    judged = {g: v for g, v in oof.items() if g not in EVAL_ONLY}
    gain, m_star, acer_all = calibrate_gain(judged)
    rows = nested(oof)
    acers = [rows[g]["acer"] for g in judged if g in rows] or [float("nan")]
    return {"config": asdict(cfg), "held_out": held,
            "command": f"python -m training.train_fascue --steps {cfg.steps}",
            "nested_at_0.96": rows,
            "mean_nested_acer_at_0.96": round(float(np.mean(acers)), 4),
            "max_nested_acer_at_0.96": round(float(np.max(acers)), 4),
            "collapsed_folds": [g for g in rows if rows[g]["collapsed"]],
            "cue_gain": round(float(gain), 4), "calibrated_magnitude": round(m_star, 5),
            "mean_acer_at_0.96_all_groups_gain": acer_all,
            # The judged groups' scores, as select_rule and fusion_fit read them; the live-only
            # groups' apart (scored, never in a threshold choice).
            "leave_one_source_out": {
                "oof_scores": {g: [cue_score(m, gain).round(5).tolist(), y.tolist()]
                               for g, (m, y) in oof.items() if g not in EVAL_ONLY},
                "eval_only_scores": {g: [cue_score(m, gain).round(5).tolist(), y.tolist()]
                                     for g, (m, y) in oof.items() if g in EVAL_ONLY},
                "oof_magnitudes": {g: m.round(6).tolist() for g, (m, _) in oof.items()}}}


def markdown(rep: dict, cards: Path | None = None) -> str:
    """The card: the recipe, each held-out group at 0.96 (nested gain), and the variants
    whose cards lie beside it (``VARIANTS``)."""
    cfg = asdict(FASCueConfig(**rep["config"]))
    md = ["# Model card: spoof_cue (spoof cue on a pretrained MiniFASNet encoder)", "",
          recipe(cfg), "",
          "Score = 1 - gain x mean|cue|, live at >= **0.96**. Each held-out group is judged "
          "with the gain calibrated on the other groups (nested).", "",
          "| held-out group | n live | n spoof | APCER | BPCER | ACER | AUC | gain | "
          "collapsed |", "|---|---|---|---|---|---|---|---|---|"]
    for g, r in rep["nested_at_0.96"].items():
        md.append(f"| {g} | {r['n_live']} | {r['n_spoof']} | {r['apcer']} | {r['bpcer']} | "
                  f"{r['acer']} | {r['auc']} | {r['gain']} | {r['collapsed']} |")
    return md_tail(rep, md, cards)


# The second encoder, as the cards name and credit it.
CELEBA_SECOND = ("the CelebA-Spoof MiniFASNetV2-SE (VietAnh954/face-antispoof-onnx, Apache-2.0; "
                 "its ONNX weights read into the same network code)")


def recipe(cfg: dict) -> str:
    """The card's paragraph on what was trained and how (``cfg``: a card's config)."""
    if cfg["fit"] == "logistic":
        cs = [f"{c:g}" for c in readout_cs(cfg["readout_c"])]
        strength = (f"C = {cs[0]}, fixed before the run" if len(cs) == 1 else
                    f"one at each C of {', '.join(cs)}, fixed before the run, their "
                    "coefficients and intercepts averaged into one readout")
        return ("Linear readout (`facegate.liveness.spoofcue.FASCueGenerator(readout=\"linear\")`"
                ", DeepPixBiS's per-position head): the MiniFASNetV2 encoder (published "
                f"Silent-Face weights, Apache-2.0) and {CELEBA_SECOND} on the same 80x80 BGR "
                "context crop (scale 2.7; resized to "
                "128 px RGB for the second), both frozen as published. Each of the 5x5 head "
                "positions reads MiniFASNetV2's local head features and both networks' pooled "
                f"head features, divided by their RMS per face (`norm={cfg['norm']}`) and "
                "standardised per channel; a 1x1 convolution gives its spoof logit, and the "
                "cue is the 5x5 map of sigmoids upsampled to the crop, so mean|cue| is the mean "
                "per-position P(spoof). Fitted, not trained by SGD: L2-regularised "
                f"logistic regression ({strength}) of every "
                "position's logit on its face's label, each (group, class) cell weighted "
                "equally, on the un-augmented crops of the training groups "
                + (f"and {cfg['readout_augment']} capture-augmented copies of each "
                   f"(moire, gamma, colour cast, blur, noise, downscale, JPEG, each at p = "
                   f"{cfg['augment_p']}) "
                   if cfg["readout_augment"] else "") +
                "(`training.train_fascue.fit_readout`)."
                + (" Served with test-time flip averaging: the cue of the crop and of its "
                   "mirror image (flipped back) averaged (`flip_average`); the regression "
                   "reads the crops as they are." if cfg.get("flip_average") else ""))
    second = (f"; beside it, frozen, {CELEBA_SECOND} on the same crop resized to 128 px "
              "RGB, the decoder also reading both "
              "networks' pooled head features" if cfg["second"] else "")
    bce = (f"; a logistic loss x{cfg['alpha_bce']} on each face's mean|cue| against its "
           f"label (live below {cfg['spoof_margin'] / 2:g}, width {cfg['bce_width']:g})"
           if cfg["alpha_bce"] else "")
    return ("U-Net (`facegate.liveness.spoofcue.FASCueGenerator`): the MiniFASNetV2 encoder "
            "(published Silent-Face weights, Apache-2.0; frozen: "
            f"`{cfg['frozen']}`){second}; a decoder from the head's 5x5 features "
            f"({cfg['skips']} encoder skips) to a tanh cue map on the 80x80 BGR context crop "
            "(scale 2.7). "
            f"{cfg['steps']} steps of {cfg['batch_size']} faces balanced over (group, class), "
            "capture/display augmentation (moire, gamma, colour cast, blur, noise, downscale, "
            "JPEG) on both classes. Losses: cue magnitude to its target "
            f"x{cfg['alpha_reg']} on live faces (Feng et al.'s regression) and as a hinge "
            f"x{cfg['alpha_spoof']} on spoofs, the target being {cfg['spoof_margin']} x "
            f"({1 - cfg['teacher_cue']:g} x is-spoof + {cfg['teacher_cue']:g} x the published "
            f"network's P(spoof)); auxiliary classifier on face + cue x{cfg['alpha_aux']}; "
            f"triplet x{cfg['alpha_trip']} and head distillation x{cfg['alpha_distill']} (no "
            f"trainable parameter behind them while the whole encoder is frozen){bce}.")


def md_tail(rep: dict, md: list[str], cards: Path | None) -> str:
    md += ["", f"Mean nested ACER at 0.96: **{rep['mean_nested_acer_at_0.96']}** (worst "
           f"{rep['max_nested_acer_at_0.96']}); collapsed folds: "
           f"{', '.join(rep['collapsed_folds']) or 'none'}. Shipped gain (all groups): "
           f"{rep['cue_gain']}.", ""]
    rows = [(name, json.loads((cards / f"{name}.json").read_text()))
            for name in (cards and VARIANTS or ()) if (cards / f"{name}.json").exists()]
    scratch = cards / "spoof_cue_scratch.json" if cards else None
    if rows or (scratch and scratch.exists()):
        md += ["## Against the variants", "",
               "*Hindsight*: the mean ACER at the one cue level that is best for all groups "
               "together (the gain calibrated on every group, the held-out one included): "
               "what any choice of the gain could reach at best.", "",
               "| model | mean nested ACER at 0.96 | worst | hindsight | collapsed folds | "
               "command |", "|---|---|---|---|---|---|",
               f"| **shipped** | {rep['mean_nested_acer_at_0.96']} | "
               f"{rep['max_nested_acer_at_0.96']} | {rep['mean_acer_at_0.96_all_groups_gain']} "
               f"| {len(rep['collapsed_folds'])} | `{rep['command']}` |"]
        md += [f"| {name} | {v['mean_nested_acer_at_0.96']} | {v['max_nested_acer_at_0.96']} "
               f"| {v['mean_acer_at_0.96_all_groups_gain']} | {collapse_note(v)} | "
               f"`{v['command']}` |" for name, v in rows]
        if scratch and scratch.exists():
            lo = json.loads(scratch.read_text())["leave_one_source_out"]
            md.append(f"| from scratch, 64 px tight crop (former spoof_cue) | "
                      f"| | {lo['mean_acer_at_0.96']} | 3 | "
                      "`python -m training.train_spoofcue loso` |")
        md += seed_spread([(NAME, rep)] + rows) + [""]
    probe = cards / "feature_probe.json" if cards else None
    if probe and probe.exists():
        means: dict[str, list[float]] = {}
        for r in json.loads(probe.read_text())["runs"]:
            means.setdefault(r["features"], []).append(r["mean_nested_acer"])
        md += ["What the frozen encoders' features carry: a linear probe on them (labels only, "
               "[feature_probe.md](feature_probe.md), `python -m training.probe_features`) "
               "reaches a mean nested ACER, averaged over its regularisation strengths, of "
               + "; ".join(f"{k} {np.mean(v):.3f}" for k, v in means.items()) + ".", ""]
    md += [f"Re-run: `{rep['command']}`, then `{final_command(rep['command'])}`."]
    return "\n".join(md) + "\n"


def seed_spread(rows: list[tuple[str, dict]]) -> list[str]:
    """A line per recipe measured at more than one seed: how far the seeds lie apart (the
    noise any difference between recipes has to beat)."""
    by: dict[str, list[tuple[int, str, float]]] = {}
    for name, v in rows:
        cfg = asdict(FASCueConfig(**v["config"]))
        seed = cfg.pop("seed")
        by.setdefault(json.dumps(cfg, sort_keys=True), []).append(
            (seed, name, v["mean_nested_acer_at_0.96"]))
    out = []
    for runs in by.values():
        if len(runs) > 1:
            runs.sort()
            acers = [a for _, _, a in runs]
            out.append(f"Seed spread: the recipe of {runs[0][1]} at seeds "
                       f"{', '.join(str(s) for s, _, _ in runs)} gives mean nested ACER "
                       f"{' / '.join(str(a) for a in acers)} ({max(acers) - min(acers):.3f} "
                       "apart): differences between recipes smaller than that are noise.")
    return [""] + out if out else []


def collapse_note(rep: dict) -> str:
    folds = rep["collapsed_folds"]
    return f"{len(folds)} ({', '.join(folds)})" if folds else "0"


# Recipes measured beside the shipped one (each its own card; see the card's table):
# spoof_cue_unet is the U-Net shipped before the fitted readout; the readout_c ones are the
# shipped recipe at one regularisation strength each instead of the mean over five
# (spoof_cue_readout_c003 is the one shipped before that mean).
VARIANTS = ("spoof_cue_unet", "spoof_cue_labels_only", "spoof_cue_top_trained",
            "spoof_cue_aug06", "spoof_cue_aug06_300", "spoof_cue_norm", "spoof_cue_celeba_min",
            "spoof_cue_lenient_strict", "spoof_cue_ssdg", "spoof_cue_aug06_seed1",
            "spoof_cue_seed1", "spoof_cue_dual", "spoof_cue_dual_bce", "spoof_cue_dual_lenient",
            "spoof_cue_rank", "spoof_cue_dual_bce_labels", "spoof_cue_dual_rms",
            "spoof_cue_pix", "spoof_cue_readout_c001", "spoof_cue_readout_c003",
            "spoof_cue_readout_c01", "spoof_cue_readout_avg")


def final_command(loso_command: str) -> str:
    """The command that trains the shipped weights of the recipe a card's LOSO command ran
    (the same ``--set`` options, with ``--final``)."""
    return loso_command.replace("train_fascue", "train_fascue --final", 1)


def final(out: Path, cfg: FASCueConfig) -> None:
    """Train on every group; fp16 safetensors of the generator (encoder + decoder), the
    registry entry ``spoof_cue`` with the leave-one-source-out gain and metrics."""
    from safetensors.torch import load_file

    from facegate.weights import register
    from training.common import write_safetensors

    card = json.loads((out / "cards" / f"{NAME}.json").read_text())
    sets = prepared_sets(cfg)
    groups = {D.group_of(s) for s in sets}
    gen = train_groups(sets, groups, cfg, log=True)
    path = out / "spoof_cue.safetensors"
    write_safetensors(gen, path)
    probe = np.concatenate([group_eval(sets, g)[0][:8] for g in sorted(groups)])
    ref = magnitudes(gen, probe)
    half = generator_of(cfg)
    half.load_state_dict({k: v.float() for k, v in load_file(str(path)).items()})
    gain = card["cue_gain"]
    delta = float(np.abs(cue_score(magnitudes(half.eval(), probe), gain)
                         - cue_score(ref, gain)).max())
    base = entry(BASE)
    register("spoof_cue", {
        "file": path.name, "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "architecture": (f"FASCueGenerator(width={cfg.width}): U-Net on a MiniFASNetV2 "
                         "encoder (Silent-Face layout)" if cfg.readout == "unet" else
                         "FASCueGenerator(readout=linear): a MiniFASNetV2 encoder (Silent-Face "
                         "layout)")
                        + (f", a frozen second encoder ({cfg.second}) on the same crop"
                           if cfg.second else "")
                        + (", decoder, tanh cue map" if cfg.readout == "unet" else
                           ", per-position linear readout (DeepPixBiS head), sigmoid cue map"),
        "arch_kwargs": {"width": cfg.width, "skips": cfg.skips, "norm": cfg.norm,
                        "readout": cfg.readout}
        | ({"flip_average": True} if cfg.flip_average else {})
        | ({"second_size": entry(cfg.second).input_size} if cfg.second else {}),
        "check": "facegate.liveness.spoofcue:FASCueCheck",
        "input_size": base.input_size, "preprocessing": dict(base.preprocessing),
        "threshold": OPERATING_POINT,
        "score": "1 - cue_gain * mean(|cue|), clipped to [0, 1]; live when >= threshold",
        "cue_gain": gain, "calibrated_with": ["cue_gain"], "required": False,
        "metrics": {"loso_nested_mean_acer_at_0.96": card["mean_nested_acer_at_0.96"],
                    "loso_nested_max_acer_at_0.96": card["max_nested_acer_at_0.96"],
                    "loso_collapsed_folds": card["collapsed_folds"],
                    "fp16_max_abs_score_delta": round(delta, 5),
                    "fp16_probe_faces": int(len(probe))},
        "data": "../shared/data/pad: every group (NUAA official train list); "
                "hm_viguardieiro eval only; encoder from minifas_v2's published weights"
                + (f", second encoder {cfg.second} as published" if cfg.second else ""),
        "license": "Encoder initialised from Apache-2.0 weights (minivision-ai/Silent-Face-"
                   "Anti-Spoofing, licenses/silentface.txt). "
                   + (f"Second encoder: {entry(cfg.second).license} " if cfg.second else "")
                   + RESEARCH_LICENSE,
        # The card's LOSO run (where the gain and metrics come from), then these weights.
        "train_command": f"{card['command']} && {final_command(card['command'])}",
        "config": asdict(cfg)}, out / "registry.json")
    print(f"wrote {path} (gain {gain}, fp16 delta {delta:.5f})")


def write_card(path: Path, rep: dict) -> None:
    """The report as ``path`` (JSON); the shipped card also as markdown beside it."""
    path.write_text(json.dumps(rep) + "\n")
    if path.stem == NAME:
        path.with_suffix(".md").write_text(markdown(rep, path.parent))


def rescore(card: Path) -> dict:
    """A card's report recomputed from its stored out-of-fold magnitudes (after a change to
    the report, without training)."""
    old = json.loads(card.read_text())
    lo = old["leave_one_source_out"]
    scored = lo["oof_scores"] | lo.get("eval_only_scores", {})
    oof = {g: (np.array(lo["oof_magnitudes"][g]), np.array(v[1])) for g, v in scored.items()}
    rep = report_of(oof, FASCueConfig(**old["config"]), old["held_out"])
    rep["command"] = old["command"]
    return rep


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m training.train_fascue")
    ap.add_argument("--steps", type=int, default=FASCueConfig.steps)
    ap.add_argument("--groups", nargs="*", help="held-out groups to run (default: every one)")
    ap.add_argument("--out", type=Path, default=WEIGHTS_OUT)
    ap.add_argument("--final", action="store_true")
    ap.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE",
                    help="config overrides, e.g. alpha_distill=0")
    ap.add_argument("--card", default=NAME, help="card name (experiments)")
    ap.add_argument("--rescore", action="store_true",
                    help="rewrite the card from its stored out-of-fold magnitudes (no training)")
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    path = args.out / "cards" / f"{args.card}.json"
    if args.rescore:
        write_card(path, rescore(path))
        return
    cfg = FASCueConfig(steps=args.steps)
    for kv in args.set:
        k, v = kv.split("=")
        kind = type(getattr(cfg, k))
        if kind is bool and v.lower() not in ("true", "false", "1", "0"):
            raise SystemExit(f"--set {kv}: {k} is true or false")
        setattr(cfg, k, v.lower() in ("true", "1") if kind is bool else kind(v))
    if args.final:
        final(args.out, cfg)
        return
    sets = prepared_sets(cfg)
    groups = sorted({D.group_of(s) for s in sets})
    held = args.groups or groups
    base = json.loads((args.out / "cards" / f"{BASE}.json").read_text())
    base_labels = {g: np.array(v[1]) for g, v in base["leave_one_source_out"]["oof_scores"
                                                            ].items()}
    oof = {}
    for g in held:
        t0 = time.time()
        gen = train_groups(sets, set(groups) - {g}, cfg, log=len(held) == 1)
        crops, labels = group_eval(sets, g)
        if g in base_labels and not np.array_equal(base_labels[g], labels):
            raise ValueError(f"group {g}: not the faces the pretrained scores are of")
        oof[g] = (magnitudes(gen, crops), labels)
        m, y = oof[g]
        auc = pad_report(1 - m, y, 0.5).auc
        print(f"{g}: {len(y)} faces, live m {np.median(m[y == 1]):.4f} spoof m "
              f"{np.median(m[y == 0]) if (y == 0).any() else float('nan'):.4f} auc {auc} "
              f"({time.time() - t0:.0f}s)", flush=True)
    rep = report_of(oof, cfg, held)
    rep["command"] += f" --set {' '.join(args.set)}" if args.set else ""
    rep["command"] += f" --card {args.card}" if args.card != NAME else ""
    write_card(path, rep)
    print(json.dumps({k: rep[k] for k in ("mean_nested_acer_at_0.96",
                                          "max_nested_acer_at_0.96", "collapsed_folds",
                                          "cue_gain")}))
    print({g: r["acer"] for g, r in rep["nested_at_0.96"].items()})


if __name__ == "__main__":
    main()
