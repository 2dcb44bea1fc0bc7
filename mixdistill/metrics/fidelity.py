"""FID, KID, Inception Score and precision/recall through torch-fidelity, from local weights files."""

from __future__ import annotations

from collections.abc import Sequence
from importlib.metadata import version
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from mixdistill.evaluation.fingerprint import canonical_sha256, file_fingerprint

#: Where torch-fidelity 0.4 downloads its Inception-v3 weights from (the same file, by its SHA-256
#: prefix, as pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth``).
INCEPTION_URL = "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth"
#: torchvision's ImageNet VGG16 (``VGG16_Weights.IMAGENET1K_V1``), torch-fidelity's extractor for PRC.
VGG16_URL = "https://download.pytorch.org/models/vgg16-397923af.pth"
#: metric -> (feature extractor, feature layer): torch-fidelity 0.4's defaults (PRC uses VGG16, as
#: Kynkaanniemi et al. 2019 do, not Inception).
FEATURES = {
    "fid": ("inception", "2048"),
    "kid": ("inception", "2048"),
    "isc": ("inception", "logits_unbiased"),
    "prc": ("vgg16", "fc2_relu"),
}
#: Our extractor names -> torch-fidelity's registry names, the setting holding the weights, the URL.
EXTRACTORS = {
    "inception": ("inception-v3-compat", "feature_extractor_weights_path", INCEPTION_URL),
    "vgg16": ("vgg16", "vgg16_weights_path", VGG16_URL),
}
#: Whether a larger value is better, for each key of ``FidelityMetrics.compute()``.
HIGHER_IS_BETTER = {
    "FID": False,
    "KID": False,
    "KID_std": False,
    "IS": True,
    "IS_std": False,
    "precision": True,
    "recall": True,
    "F_score": True,
}
PRIMARY = {"fid": "FID", "kid": "KID", "isc": "IS", "prc": "F_score"}


def tokens_to_uint8(x: Tensor, levels: int) -> Tensor:
    """Pixel values ``0..levels-1`` as uint8 RGB images ``(B, 3, H, W)`` (``round(v * 255 / (levels-1))``).

    Accepts greyscale ``(B, H, W)`` or ``(B, 1, H, W)`` (replicated to three channels) and RGB
    ``(B, 3, H, W)``. No resizing here: torch-fidelity's extractors resize to their input size
    themselves (bilinearly, like TensorFlow 1 for the original FID).
    """
    if x.dim() == 3:
        x = x.unsqueeze(1)  # (B, 1, H, W)
    if x.dim() != 4 or x.shape[1] not in (1, 3):
        raise ValueError(
            f"FidelityMetrics: images of shape {tuple(x.shape)}; expected (B, H, W), (B, 1, H, W) or "
            f"(B, 3, H, W) pixel values (decode image tokens to pixels before this metric)."
        )
    if x.is_floating_point() or int(x.min()) < 0 or int(x.max()) >= levels:
        raise ValueError(
            f"FidelityMetrics: pixel values must be integers in [0, levels={levels}); got dtype {x.dtype} "
            f"in [{x.min().item()}, {x.max().item()}]. Set levels to the data's vocab_size."
        )
    scaled = torch.round(x.double() * (255.0 / (levels - 1))).to(torch.uint8)
    return scaled.expand(-1, 3, -1, -1).contiguous()  # (B, 3, H, W)


def check_weights(metrics: tuple[str, ...], paths: dict[str, str | None]) -> None:
    """Raise unless every extractor that ``metrics`` need has an existing local weights file."""
    for extractor in dict.fromkeys(FEATURES[m][0] for m in metrics):
        _, setting, url = EXTRACTORS[extractor]
        path = paths[extractor]
        if path is None or not Path(path).is_file():
            state = "unset" if path is None else f"'{path}', which does not exist"
            raise FileNotFoundError(
                f"FidelityMetrics: metrics={list(metrics)} need {setting}, but it is {state}. Download the "
                f"weights once from {url} (e.g. curl -L -o FILE URL) and set {setting} to the file."
            )


class FidelityMetrics(Metric):
    """FID, KID, Inception Score and precision/recall of generated images against reference images.

    Features of uint8 images are gathered over ``update(x, real)`` with torch-fidelity's extractors
    (Inception-v3 ``inception-v3-compat``, the TensorFlow FID network, for FID/KID/IS; VGG16 for
    precision/recall, torch-fidelity's default) and turned into numbers by torch-fidelity's own
    functions. ``compute()`` returns a dict of scalars (keys in ``HIGHER_IS_BETTER``). The reference
    features survive ``reset()`` unless ``reset_real_features``. Networks load on the first update and
    are held outside the module tree (never in a checkpoint, never cast by the trainer's precision).

    Args:
        feature_extractor_weights_path: Local Inception-v3 weights file (torch-fidelity's).
        metrics: Which of ``"fid"``, ``"kid"``, ``"isc"`` (Inception Score) and ``"prc"``
            (precision, recall, F-score; needs ``vgg16_weights_path``) to compute.
        vgg16_weights_path: Local torchvision VGG16 weights file, for ``"prc"``.
        levels: Pixel values are ``0..levels-1`` (the data's vocab_size).
        kid_subsets: Number of random subsets KID averages over.
        kid_subset_size: Samples per KID subset; both sides need at least this many.
        isc_splits: Splits of the generated samples for the Inception Score.
        prc_neighborhood: k of the k-nearest-neighbour balls of precision/recall.
        batch_size: Images per feature-extractor forward pass.
        feature_extractor_internal_dtype: Dtype inside the networks.
        rng_seed: Seed of KID's subsets and the Inception Score's shuffle.
        reset_real_features: Also forget the reference features on ``reset()``.
        name: Name of the primary number (that of the first of ``metrics``) in tables.
    """

    full_state_update = False

    def __init__(
        self,
        feature_extractor_weights_path: str | None = None,
        metrics: Sequence[Literal["fid", "kid", "isc", "prc"]] = ("fid", "kid", "isc"),
        vgg16_weights_path: str | None = None,
        levels: int = 256,
        kid_subsets: int = 100,
        kid_subset_size: int = 1000,
        isc_splits: int = 10,
        prc_neighborhood: int = 3,
        batch_size: int = 64,
        feature_extractor_internal_dtype: Literal["float32", "float64"] = "float32",
        rng_seed: int = 2020,
        reset_real_features: bool = False,
        name: str | None = None,
    ) -> None:
        super().__init__()
        if not metrics or any(m not in FEATURES for m in metrics) or len(set(metrics)) != len(metrics):
            raise ValueError(
                f"FidelityMetrics: metrics={list(metrics)} must be distinct names from {list(FEATURES)}."
            )
        if levels < 2:
            raise ValueError(f"FidelityMetrics: levels={levels} must be >= 2.")
        self.metrics, self.levels, self.batch_size = tuple(metrics), levels, batch_size
        self.weights = {"inception": feature_extractor_weights_path, "vgg16": vgg16_weights_path}
        check_weights(self.metrics, self.weights)
        self.internal_dtype, self.reset_real_features = feature_extractor_internal_dtype, reset_real_features
        self.settings: dict[str, Any] = {
            "kid_subsets": kid_subsets,
            "kid_subset_size": kid_subset_size,
            "isc_splits": isc_splits,
            "prc_neighborhood": prc_neighborhood,
            "rng_seed": rng_seed,
        }
        self.primary = PRIMARY[self.metrics[0]]
        self.name = name or self.primary
        for side, extractor, layer in self.feature_states():
            self.add_state(f"{side}_{extractor}_{layer}", default=[], dist_reduce_fx="cat")
        object.__setattr__(self, "_extractors", {})  # outside the module tree: not in checkpoints

    @property
    def higher_is_better(self) -> bool:
        """Whether a larger primary number (that of the first of ``metrics``) is better."""
        return HIGHER_IS_BETTER[self.primary]

    def feature_states(self) -> list[tuple[str, str, str]]:
        """``(side, extractor, layer)`` of every feature set the metrics need (IS needs no reference)."""
        out = [("fake", *FEATURES[m]) for m in self.metrics]
        out += [("real", *FEATURES[m]) for m in self.metrics if m != "isc"]
        return list(dict.fromkeys(out))

    def extractor(self, name: str, device: torch.device) -> torch.nn.Module:
        """torch-fidelity's extractor ``name`` with the local weights, on ``device`` (built once)."""
        if name not in self._extractors:
            from torch_fidelity.utils import create_feature_extractor  # imported here: slow to import

            layers = list(dict.fromkeys(lay for _, e, lay in self.feature_states() if e == name))
            self._extractors[name] = create_feature_extractor(
                EXTRACTORS[name][0],
                layers,
                cuda=False,
                feature_extractor_weights_path=self.weights[name],
                feature_extractor_internal_dtype=self.internal_dtype,
                verbose=False,
            )
        return self._extractors[name].to(device)

    def update(self, x: Tensor, real: bool) -> None:
        """Add pixel images ``(B, [C,] H, W)`` with values ``0..levels-1``; ``real`` marks reference data."""
        images = tokens_to_uint8(x, self.levels)  # (B, 3, H, W) uint8
        side, states = ("real" if real else "fake"), self.feature_states()
        for extractor in dict.fromkeys(e for _, e, _ in states):
            layers = [lay for s, e, lay in states if s == side and e == extractor]
            if not layers:
                continue  # e.g. reference images when only the Inception Score is asked
            net = self.extractor(extractor, images.device)
            with torch.no_grad():
                for batch in images.split(self.batch_size):
                    feats = dict(zip(net.features_list, net(batch), strict=True))
                    for layer in layers:
                        getattr(self, f"{side}_{extractor}_{layer}").append(feats[layer])

    def features(self, side: str, metric: str, needed: int, why: str) -> Tensor:
        """Gathered features ``(N, F)`` on the CPU for ``metric``; raises when fewer than ``needed``."""
        state = getattr(self, f"{side}_{'_'.join(FEATURES[metric])}")
        feats = dim_zero_cat(state).cpu() if len(state) else torch.zeros(0, 1)
        if feats.shape[0] < needed:
            which = "reference (real=True)" if side == "real" else "generated"
            raise RuntimeError(f"{self.name}: {why} needs >= {needed} {which} images, got {feats.shape[0]}.")
        return feats

    def compute(self) -> dict[str, Tensor]:
        """``{"FID", "KID", "KID_std", "IS", "IS_std", "precision", "recall", "F_score"}`` as asked."""
        out: dict[str, float] = {}
        for metric in self.metrics:
            out.update(getattr(self, f"compute_{metric}")())
        return {k: torch.tensor(v, dtype=torch.float64) for k, v in out.items()}

    def compute_fid(self) -> dict[str, float]:
        from torch_fidelity import metric_fid

        stats = [
            metric_fid.fid_features_to_statistics(self.features(s, "fid", 2, "FID")) for s in ("fake", "real")
        ]
        return {"FID": metric_fid.fid_statistics_to_metric(*stats, verbose=False)[metric_fid.KEY_METRIC_FID]}

    def compute_kid(self) -> dict[str, float]:
        from torch_fidelity import metric_kid

        size = self.settings["kid_subset_size"]
        fake, real = (
            self.features(s, "kid", size, f"KID with kid_subset_size={size}") for s in ("fake", "real")
        )
        kid = metric_kid.kid_features_to_metric(fake, real, verbose=False, **self.settings)
        return {"KID": kid[metric_kid.KEY_METRIC_KID_MEAN], "KID_std": kid[metric_kid.KEY_METRIC_KID_STD]}

    def compute_isc(self) -> dict[str, float]:
        from torch_fidelity import metric_isc

        splits = self.settings["isc_splits"]
        logits = self.features("fake", "isc", splits, f"IS with isc_splits={splits}")
        isc = metric_isc.isc_features_to_metric(logits, splits, True, self.settings["rng_seed"])
        return {"IS": isc[metric_isc.KEY_METRIC_ISC_MEAN], "IS_std": isc[metric_isc.KEY_METRIC_ISC_STD]}

    def compute_prc(self) -> dict[str, float]:
        from torch_fidelity import metric_prc

        k = self.settings["prc_neighborhood"]
        why = f"precision/recall with prc_neighborhood={k}"
        fake, real = (self.features(s, "prc", k + 1, why) for s in ("fake", "real"))
        prc = metric_prc.prc_features_to_metric(fake, real, verbose=False, **self.settings)  # generated first
        return {"precision": prc["precision"], "recall": prc["recall"], "F_score": prc["f_score"]}

    def real_states(self) -> list[str]:
        """Names of the reference feature states, e.g. ``["real_inception_2048"]``."""
        return [f"{s}_{e}_{lay}" for s, e, lay in self.feature_states() if s == "real"]

    def reference_state(self) -> dict[str, Tensor]:
        """The reference features ``{"real_<extractor>_<layer>": (N, F)}`` (empty for IS alone)."""
        return {k: dim_zero_cat(getattr(self, k)) for k in self.real_states() if len(getattr(self, k))}

    def load_reference_state(self, state: dict[str, Tensor]) -> None:
        """Restore the reference features from ``reference_state()``'s output (e.g. read from a cache)."""
        if set(state) != set(self.real_states()):
            raise ValueError(
                f"{self.name}: reference state has {sorted(state)}, expected {self.real_states()}."
            )
        for k in self.real_states():
            setattr(self, k, [state[k].to(self.device)])

    def feature_fingerprint(self) -> str:
        """Digest of the feature extraction: the weights files (by content) of the extractors that see
        reference images, the layers, the pixel scaling and torch-fidelity's version (its networks and
        resizing are code).
        """
        extractors = dict.fromkeys(e for s, e, _ in self.feature_states() if s == "real")
        return canonical_sha256(
            {
                "weights": {e: file_fingerprint(self.weights[e]) for e in extractors},
                "states": self.real_states(),
                "levels": self.levels,
                "internal_dtype": self.internal_dtype,
                "torch_fidelity": version("torch-fidelity"),
            }
        )

    def reset(self) -> None:
        if self.reset_real_features:
            return super().reset()
        kept = {k: list(getattr(self, k)) for k in self._defaults if k.startswith("real_")}
        super().reset()
        for k, v in kept.items():
            setattr(self, k, v)
