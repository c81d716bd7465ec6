"""Image-quality assessment (IQA) liveness: 25 quality measures + LDA (Galbally et al., 2014).

A recaptured face (print or screen) loses fine detail and gains artefacts, so how much an
image changes when smoothed says something about where it came from. Each face crop ``I``
(64 px here, which keeps all the measures under a few milliseconds) is compared with
``Î``, ``I`` smoothed by a 3x3 Gaussian (sigma 0.5):

- error measures (full reference I vs Î): MSE, PSNR, SNR, SC, MD, AD, NAE, RAMD, LMSE, NXC,
  MAMS, MAS (angles between RGB vectors), TED, TCD (edges, corners), SME, SPE (spectrum),
  GME, GPE (gradients);
- structural and information measures: SSIM, VIF (pixel domain, 4 scales), RRED (a
  single-scale reduced-reference entropic difference over 8x8 blocks: an approximation);
- no-reference: JQI (Wang-Bovik-Evans blockiness/activity/zero-crossing JPEG index with the
  published constants), HLFI (high-low frequency index), and in place of BIQI and NIQE,
  whose trained natural-scene models cannot be fetched here, two MSCN statistics measures:
  NIQE-like = Mahalanobis distance of the crop's MSCN statistics to those of the training
  live faces (fitted in ``fit``), BIQI-like = excess kurtosis of the MSCN coefficients.

The classifier is scikit-learn's LDA (eigen solver, automatic shrinkage) on standardised
features; its learned arrays are stored as safetensors, nothing is pickled.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import cv2
import numpy as np

from facegate.liveness.checks import CropCheck

if TYPE_CHECKING:
    from facegate.weights import WeightsEntry

IQA_SIZE = 64
FEATURES = ("mse", "psnr", "snr", "sc", "md", "ad", "nae", "ramd", "lmse", "nxc", "mams", "mas",
            "ted", "tcd", "sme", "spe", "gme", "gpe", "ssim", "vif", "rred", "jqi", "hlfi",
            "niqe_like", "biqi_like")
# Galbally et al. list 25 measures when BIQI and NIQE are both counted (the issue says 24).
# niqe_like needs the fitted live-face model, so quality_features leaves its slot at 0 and
# IQAModel fills it in.
_EPS = 1e-8


def _blur(x: np.ndarray) -> np.ndarray:
    return cv2.GaussianBlur(x, (3, 3), 0.5)


def _ssim(a: np.ndarray, b: np.ndarray) -> float:
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    g = lambda x: cv2.GaussianBlur(x, (11, 11), 1.5)  # noqa: E731
    mu_a, mu_b = g(a), g(b)
    va, vb, cov = g(a * a) - mu_a ** 2, g(b * b) - mu_b ** 2, g(a * b) - mu_a * mu_b
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (va + vb + c2))
    return float(s.mean())


def _vif(ref: np.ndarray, dist: np.ndarray) -> float:
    """Pixel-domain VIF (Sheikh and Bovik), four scales."""
    sigma_n = 2.0
    num = den = 0.0
    r, d = ref, dist
    for scale in range(4):
        n = 2 ** (4 - scale) + 1
        sd = n / 5.0
        if scale:
            r = cv2.GaussianBlur(r, (n, n), sd)[::2, ::2]
            d = cv2.GaussianBlur(d, (n, n), sd)[::2, ::2]
        g = lambda x: cv2.GaussianBlur(x, (n, n), sd)  # noqa: E731,B023
        mu1, mu2 = g(r), g(d)
        s1 = np.maximum(g(r * r) - mu1 ** 2, 0)
        s2 = np.maximum(g(d * d) - mu2 ** 2, 0)
        s12 = g(r * d) - mu1 * mu2
        gain = s12 / (s1 + _EPS)
        sv = np.maximum(s2 - gain * s12, _EPS)
        num += np.sum(np.log10(1 + gain ** 2 * s1 / (sv + sigma_n)))
        den += np.sum(np.log10(1 + s1 / sigma_n))
    return float(num / (den + _EPS))


def _block_entropy(x: np.ndarray, b: int = 8) -> np.ndarray:
    h, w = (x.shape[0] // b) * b, (x.shape[1] // b) * b
    blocks = x[:h, :w].reshape(h // b, b, w // b, b).transpose(0, 2, 1, 3).reshape(-1, b * b)
    var = blocks.var(axis=1)
    ent = 0.5 * np.log(2 * np.pi * np.e * (var + 0.1))
    return np.log(1 + var) * ent


@functools.lru_cache(maxsize=8)
def _low_frequencies(shape: tuple[int, int]) -> np.ndarray:
    """The spectrum's low band (radius 0.15 of the side around DC) as a mask over fft2's
    unshifted output (it is the centred disc of the fftshift-ed spectrum)."""
    h, w = shape
    yy, xx = np.mgrid[:h, :w]
    centred = np.hypot(xx - w / 2, yy - h / 2) <= 0.15 * min(h, w)
    return np.fft.ifftshift(centred)


def _jqi(x: np.ndarray) -> float:
    """Wang, Sheikh and Bovik's no-reference JPEG quality score (horizontal and vertical)."""
    def one_dir(img: np.ndarray) -> tuple[float, float, float]:
        d = np.diff(img, axis=1)
        cols = d.shape[1]
        boundary = d[:, 7:cols:8] if cols > 8 else d
        blockiness = float(np.abs(boundary).mean())
        activity = float((8 * np.abs(d).mean() - blockiness) / 7)
        zc = float(np.mean(d[:, :-1] * d[:, 1:] < 0))
        return blockiness, activity, zc

    bh, ah, zh = one_dir(x)
    bv, av, zv = one_dir(x.T)
    b, a, z = (bh + bv) / 2, (ah + av) / 2, (zh + zv) / 2
    return float(-245.9 + 261.9 * (b + _EPS) ** -0.0240 * (a + _EPS) ** 0.0160
                 * (z + _EPS) ** 0.0064)


def _mscn(x: np.ndarray) -> np.ndarray:
    """Mean-subtracted contrast-normalised coefficients (7x7 Gaussian window)."""
    mu = cv2.GaussianBlur(x, (7, 7), 7 / 6)
    sigma = np.sqrt(np.abs(cv2.GaussianBlur(x * x, (7, 7), 7 / 6) - mu * mu))
    return (x - mu) / (sigma + 1.0)


def _var_kurtosis(v: np.ndarray) -> tuple[float, float]:
    """Variance (+ eps) and excess kurtosis of the values of ``v``."""
    c = v.ravel() - v.mean()
    c2 = c * c  # (c * c) ** 2, not c ** 4: pow is several times slower on float64
    var = float(c2.mean()) + _EPS
    return var, float((c2 * c2).mean() / var ** 2 - 3.0)


def mscn_stats(x: np.ndarray) -> np.ndarray:
    """Variance and excess kurtosis of MSCN coefficients and of their 4 neighbour products."""
    m = _mscn(x)
    shifts = (m, m[:, :-1] * m[:, 1:], m[:-1, :] * m[1:, :], m[:-1, :-1] * m[1:, 1:],
              m[1:, :-1] * m[:-1, 1:])
    return np.array([s for v in shifts for s in _var_kurtosis(v)])


def _prepare(rgb_crop: np.ndarray, size: int | None = IQA_SIZE
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The crop resized to ``size`` px once (None: as it is): float RGB, its unrounded gray
    (for the measures) and its rounded 8-bit gray (for the NIQE-like statistics; the fitted
    model expects both)."""
    small = (rgb_crop if size is None else
             cv2.resize(rgb_crop, (size, size), interpolation=cv2.INTER_AREA))
    gray = cv2.cvtColor(small.astype(np.float32), cv2.COLOR_RGB2GRAY).astype(np.float64)
    gray8 = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY).astype(np.float64)
    return small.astype(np.float64), gray, gray8


def quality_features(rgb_crop: np.ndarray, size: int | None = IQA_SIZE) -> np.ndarray:
    """The measures of one RGB uint8 image resized to ``size`` px; niqe_like left as 0.

    The model is trained on 64 px face crops; ``size=None`` measures the image as it is, the
    way the published method did (whole frames; ``bench/pipeline_latency.py`` times both).
    """
    rgb, x, _ = _prepare(rgb_crop, size)
    return _features(rgb, x)


def _features(rgb: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The measures of a prepared image: float RGB and unrounded gray."""
    y = _blur(x)
    e = x - y
    n = x.size
    mse = float((e ** 2).mean())
    psnr = 10 * np.log10(255.0 ** 2 / (mse + _EPS))
    snr = 10 * np.log10((x ** 2).sum() / (n * mse + _EPS))
    sc = (x ** 2).sum() / ((y ** 2).sum() + _EPS)
    ad = e.mean()
    abs_e = np.abs(e)
    md = abs_e.max()
    nae = abs_e.sum() / (np.abs(x).sum() + _EPS)
    ramd = np.partition(abs_e.ravel(), -10)[-10:].mean()
    lx, ly = cv2.Laplacian(x, cv2.CV_64F), cv2.Laplacian(y, cv2.CV_64F)
    lmse = ((lx - ly) ** 2).sum() / ((lx ** 2).sum() + _EPS)
    nxc = (x * y).sum() / ((x ** 2).sum() + _EPS)
    # Angles between RGB vectors of I and its smoothed copy.
    ry = _blur(rgb)
    dot = np.einsum("ijk,ijk->ij", rgb, ry)
    norms = np.sqrt(np.einsum("ijk,ijk->ij", rgb, rgb) * np.einsum("ijk,ijk->ij", ry, ry)) + _EPS
    alpha = 2 / np.pi * np.arccos(np.clip(dot / norms, -1, 1))
    d = rgb - ry
    dist = np.sqrt(np.einsum("ijk,ijk->ij", d, d)) / (255 * 3 ** .5)
    mams = float(np.mean(1 - (1 - alpha) * (1 - dist)))
    mas = float(1 - alpha.mean())
    ex = cv2.Canny(x.astype(np.uint8), 50, 150) > 0
    ey = cv2.Canny(y.astype(np.uint8), 50, 150) > 0
    ted = float(np.abs(ex.astype(float) - ey).mean())

    def corners(img: np.ndarray) -> int:
        c = cv2.goodFeaturesToTrack(img.astype(np.float32), 200, 0.01, 2)
        return 0 if c is None else len(c)

    cx, cy = corners(x), corners(y)
    tcd = abs(cx - cy) / max(cx, cy, 1)
    fx, fy = np.fft.fft2(x), np.fft.fft2(y)
    mag = np.abs(fx)
    sme = float(((mag - np.abs(fy)) ** 2).mean()) / n
    spe = float((np.abs(np.angle(fx) - np.angle(fy)) ** 2).mean())
    gx = cv2.Sobel(x, cv2.CV_64F, 1, 0) + 1j * cv2.Sobel(x, cv2.CV_64F, 0, 1)
    gy = cv2.Sobel(y, cv2.CV_64F, 1, 0) + 1j * cv2.Sobel(y, cv2.CV_64F, 0, 1)
    gme = float(((np.abs(gx) - np.abs(gy)) ** 2).mean())
    gpe = float((np.abs(np.angle(gx) - np.angle(gy)) ** 2).mean())
    ssim = _ssim(x, y)
    vif = _vif(x, y)
    rred = float(np.abs(_block_entropy(x) - _block_entropy(y)).mean())
    jqi = _jqi(x)
    low = _low_frequencies(x.shape)  # in fft2's unshifted layout
    total = mag.sum()
    low_sum = mag[low].sum()
    hlfi = float((2 * low_sum - total) / (total + _EPS))
    biqi_like = _var_kurtosis(_mscn(x))[1]  # excess kurtosis of the MSCN coefficients
    return np.array([mse, psnr, snr, sc, md, ad, nae, ramd, lmse, nxc, mams, mas, ted, tcd,
                     sme, spe, gme, gpe, ssim, vif, rred, jqi, hlfi, 0.0, biqi_like])


class IQAModel:
    """Standardise -> LDA (eigen, shrinkage 'auto'); NIQE-like slot fitted on live faces."""

    def fit(self, feats: np.ndarray, mscn: np.ndarray, labels: np.ndarray) -> IQAModel:
        from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

        live = mscn[labels == 1]
        self.niqe_mu_ = live.mean(axis=0)
        cov = np.cov(live, rowvar=False) + 1e-6 * np.eye(live.shape[1])
        self.niqe_icov_ = np.linalg.inv(cov)
        x = self._complete(feats, mscn)
        self.mean_ = x.mean(axis=0)
        self.scale_ = x.std(axis=0) + _EPS
        lda = LinearDiscriminantAnalysis(solver="eigen", shrinkage="auto")
        lda.fit((x - self.mean_) / self.scale_, labels)
        self.coef_ = lda.coef_[0].astype(np.float64)
        self.intercept_ = float(lda.intercept_[0])
        return self

    def _complete(self, feats: np.ndarray, mscn: np.ndarray) -> np.ndarray:
        d = mscn - self.niqe_mu_
        niqe = np.sqrt(np.einsum("ij,jk,ik->i", d, self.niqe_icov_, d))
        x = np.array(feats, dtype=np.float64, copy=True)
        x[:, FEATURES.index("niqe_like")] = niqe
        return np.nan_to_num(x, nan=0.0, posinf=1e6, neginf=-1e6)

    def predict_proba(self, feats: np.ndarray, mscn: np.ndarray) -> np.ndarray:
        """P(live) = sigmoid of the LDA decision function."""
        z = ((self._complete(feats, mscn) - self.mean_) / self.scale_) @ self.coef_
        return 1.0 / (1.0 + np.exp(-np.clip(z + self.intercept_, -50, 50)))

    def state(self) -> dict[str, np.ndarray]:
        return {"niqe_mu": self.niqe_mu_, "niqe_icov": self.niqe_icov_, "mean": self.mean_,
                "scale": self.scale_, "coef": self.coef_,
                "intercept": np.array([self.intercept_])}

    @classmethod
    def from_state(cls, s: dict[str, np.ndarray]) -> IQAModel:
        m = cls()
        m.niqe_mu_, m.niqe_icov_ = s["niqe_mu"], s["niqe_icov"]
        m.mean_, m.scale_, m.coef_ = s["mean"], s["scale"], s["coef"]
        m.intercept_ = float(s["intercept"][0])
        return m


def crop_measures(rgb_crop: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(quality features, MSCN statistics) of one face crop, resized once."""
    rgb, x, gray8 = _prepare(rgb_crop)
    return _features(rgb, x), mscn_stats(gray8)


class IQACheck(CropCheck):
    """Per-frame P(live) from the image-quality measures + LDA."""

    default_weights = "iqa_lda"

    def _load(self, e: WeightsEntry, runtime: str = "onnx") -> None:
        from safetensors.numpy import load_file

        from facegate.weights import verify

        self.model = IQAModel.from_state(load_file(str(verify(e).path)))

    def predict_crops(self, crops: np.ndarray) -> np.ndarray:
        """P(live) for (N, H, W, 3) uint8 RGB face crops."""
        if not len(crops):
            return np.zeros(0)
        rows = [crop_measures(c) for c in crops]
        return self.model.predict_proba(np.stack([r[0] for r in rows]),
                                        np.stack([r[1] for r in rows]))

    def failure(self, score: float) -> str:
        return f"image quality looks recaptured ({score:.2f})"
