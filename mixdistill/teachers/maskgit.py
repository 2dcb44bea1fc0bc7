"""MaskGIT (valeoai/Maskgit-pytorch v1) as a teacher: its transformer, process, sampler and loader."""

from __future__ import annotations

import pickle
from pathlib import Path

import torch
from torch import Tensor

from mixdistill.assets import resolve_asset
from mixdistill.nets.maskgit_vit import MaskGITSizes, MaskGITTransformer
from mixdistill.processes.masking import MaskingProcess
from mixdistill.processes.schedules import ArccosSchedule
from mixdistill.safe_load import named_global, read_safetensors
from mixdistill.sampling.confidence import ConfidenceUnmasking
from mixdistill.sampling.guidance import ClassifierFreeGuidance
from mixdistill.sampling.step_rule import StepRule
from mixdistill.state_match import load_matching_state
from mixdistill.teachers.base import Teacher

#: Entry of the published ``.pth`` files that holds the transformer's weights.
STATE_KEY = "model_state_dict"


def read_maskgit_state(path: str | Path) -> dict[str, Tensor]:
    """The transformer weights of a MaskGIT ``.pth`` (``{iter, global_epoch, model_state_dict,
    optimizer_state_dict}``), read with ``weights_only=True``, or of a ``.safetensors`` file of
    the weights alone (as ``make assets`` exports a teacher trained by mixdistill).

    A ``module.`` prefix on every key (a ``DistributedDataParallel`` wrapper saved as is) is removed;
    the published files have none. Raises ``FileNotFoundError`` or ``ValueError`` naming the file.
    """
    file = resolve_asset(path)
    if not file.is_file():
        raise FileNotFoundError(f"MaskGITTeacher: checkpoint='{file}' does not exist.")
    if file.suffix == ".safetensors":
        return read_safetensors(file)
    try:
        obj = torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise ValueError(
            f"MaskGITTeacher: checkpoint='{file}' holds objects other than tensors and plain containers, "
            f"so it cannot be read safely (weights_only=True){named_global(err)}."
        ) from None
    if not isinstance(obj, dict) or STATE_KEY not in obj:
        found = sorted(obj)[:8] if isinstance(obj, dict) else type(obj).__name__
        raise ValueError(
            f"MaskGITTeacher: checkpoint='{file}' has no '{STATE_KEY}' entry (found {found}); expected a "
            "MaskGIT-pytorch .pth with iter, global_epoch, model_state_dict, optimizer_state_dict."
        )
    state = obj[STATE_KEY]
    bad = [k for k, v in state.items() if not isinstance(v, Tensor)]
    if bad:
        raise ValueError(f"MaskGITTeacher: checkpoint='{file}' {STATE_KEY} has non-tensor entries {bad[:5]}.")
    if state and all(k.startswith("module.") for k in state):
        state = {k.removeprefix("module."): v for k, v in state.items()}
    return state


def load_maskgit_state(net: MaskGITTransformer, state: dict[str, Tensor], source: str) -> None:
    """Load ``state`` into ``net`` strictly; errors name ``source`` and the offending keys."""
    model = f"MaskGITTransformer({net.sizes})"
    load_matching_state(net, state, source, "MaskGITTeacher", "set sizes to the checkpoint's", model)


class MaskGITTeacher(Teacher):
    """Class-conditional MaskGIT on VQGAN tokens ``(grid, grid)``, sampled as its authors do.

    * Process: ``MaskingProcess(codebook_size, ArccosSchedule())``; MaskGIT's unmasked ratio ``r`` is
      ``1 - t`` and its masked fraction ``arccos(r) / (pi / 2)`` is ``1 - alpha(t)``.
    * Conditioning: label ``y`` becomes token ``y + codebook_size + 1``; ``cond=None`` and the label
      ``num_classes`` mean "no class" (token 2025 for the published model).
    * Logits: the network's code columns ``0..S-1``. The published sampler softmaxes over the mask
      id's column too (its training's label smoothing gives it a little mass); that column is dropped
      here, which renormalises over the codes.
    * Sampler: ``ConfidenceUnmasking(sm_temp=1, r_temp=4.5)`` with ``ClassifierFreeGuidance(3, ramp)``,
      ``w' = w * index / (steps - 1)``: the 256 px defaults of the published code (8 steps there).

    Args:
        checkpoint: Published ``.pth`` (``MaskGIT_ImageNet_256.pth``); ``None`` keeps random weights.
        sizes: Sizes of the transformer (``MaskGITSizes()`` is the published ImageNet 256 model).
        step_rule: Step rule of the sampler; ``None`` is ``ConfidenceUnmasking()``.
        guidance: Guidance of the sampler; ``None`` is ``ClassifierFreeGuidance(3.0, ramp=True)``, and
            a weight of 0 switches guidance off (one network call per step).
        guide_consistency: Guide the teacher step of the Di4C consistency target too. The authors'
            fork does not (``one_step_denoise`` with ``cfg_w=0``), so by default that step uses the
            conditional logits, which ``log_marginal`` also gives (one teacher call per input).
        consistency_rule: Step rule of the teacher step of the consistency target; ``None`` is
            ``step_rule`` (the authors'). ``AncestralStep()`` unmasks uniformly random positions, so
            that the target's marginal equals the teacher's in expectation; the confidence rule
            reveals the tokens it is surest of, which biases the marginal of the rest.
    """

    def __init__(
        self,
        checkpoint: str | None = None,
        sizes: MaskGITSizes | None = None,
        step_rule: StepRule | None = None,
        guidance: ClassifierFreeGuidance | None = None,
        guide_consistency: bool = False,
        consistency_rule: StepRule | None = None,
    ) -> None:
        sizes = sizes if sizes is not None else MaskGITSizes()
        guidance = guidance if guidance is not None else ClassifierFreeGuidance(3.0, ramp=True)
        super().__init__(
            MaskingProcess(sizes.codebook_size, ArccosSchedule()),
            (sizes.grid, sizes.grid),
            sizes.num_classes,
            step_rule if step_rule is not None else ConfidenceUnmasking(1.0, 4.5),
            guidance if guidance.weight > 0 else None,
        )
        self.net = MaskGITTransformer(sizes)
        self.latent_layer = None  # lambda enters as an extra token: ExtraTokenInjection(module="net")
        self.guide_consistency, self.consistency_rule = guide_consistency, consistency_rule
        if checkpoint is not None:
            load_maskgit_state(self.net, read_maskgit_state(checkpoint), checkpoint)

    def network_logits(self, x_t: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
        # MaskGIT's transformer has no time input: the mask pattern tells it how far sampling is.
        labels = cond if cond is not None else torch.full_like(x_t[:, 0], self.num_classes)
        return self.net(x_t, labels)[..., : self.vocab_size]  # (B, D, S)

    @property
    def marginal_drives_step(self) -> bool:
        # Unguided, the confidence step only needs softmax(logits), which log_marginal's values give.
        return self.guidance is None or not self.guide_consistency

    def consistency_logits(self, x_t: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
        """Conditional logits unless ``guide_consistency`` (then guided, as the sampler's)."""
        return self.sampling_logits(x_t, t, cond) if self.guide_consistency else self.denoise(x_t, t, cond)

    def consistency_step(
        self,
        x_t: Tensor,
        t: Tensor,
        s: Tensor,
        cond: Tensor | None,
        num_samples: int,
        logits: Tensor | None = None,
    ) -> Tensor:
        """``num_samples`` teacher steps ``t -> s`` ``(B, n, D)``, guided only if ``guide_consistency``."""
        if self.consistency_rule is None:
            return super().consistency_step(x_t, t, s, cond, num_samples, logits)
        if logits is None:
            logits = self.consistency_logits(x_t, t, cond)
        return self.consistency_rule.step(self.process, x_t, logits, t, s, num_samples, None)
