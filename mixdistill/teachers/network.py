"""A teacher defined by any network ``net(x_t, t, cond) -> logits``, optionally loaded from a file."""

from __future__ import annotations

from pathlib import Path

from torch import Tensor, nn

from mixdistill.assets import resolve_asset
from mixdistill.processes.base import ForwardProcess
from mixdistill.safe_load import read_safetensors, safe_torch_load
from mixdistill.sampling.guidance import ClassifierFreeGuidance
from mixdistill.sampling.step_rule import StepRule
from mixdistill.state_match import load_matching_state
from mixdistill.teachers.base import Teacher


def load_state_dict(path: str | Path) -> dict[str, Tensor]:
    """Read a state dict from ``.safetensors``, or from ``.pt``/``.ckpt`` (a Lightning ``state_dict`` too)."""
    path = resolve_asset(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint='{path}' does not exist.")
    if path.suffix == ".safetensors":
        return read_safetensors(path)
    obj = safe_torch_load(path)  # weights_only=True: a file that pickles code is refused, naming it
    return obj.get("state_dict", obj) if isinstance(obj, dict) else obj


class NetworkTeacher(Teacher):
    """Wraps a network whose forward is ``net(x_t (B, D), t (B,), cond) -> (B, D, S)``.

    Args:
        process: Forward process.
        shape: Shape of one example.
        net: The network.
        checkpoint: Optional weights file for ``net`` (``.safetensors``, ``.pt`` or ``.ckpt``);
            keys may carry a ``prefix``.
        prefix: Key prefix to strip from the checkpoint (e.g. ``"net."``).
        num_classes: Number of class labels the network accepts as ``cond``.
        latent_layer: Submodule where a student adds its lambda embedding by default.
        step_rule: The sampler's step rule (the ancestral product step by default).
        guidance: Classifier-free guidance of the sampler (needs ``num_classes``).
    """

    def __init__(
        self,
        process: ForwardProcess,
        shape: tuple[int, ...],
        net: nn.Module,
        checkpoint: str | None = None,
        prefix: str = "",
        num_classes: int = 0,
        latent_layer: str | None = "net.time_embed",
        step_rule: StepRule | None = None,
        guidance: ClassifierFreeGuidance | None = None,
    ) -> None:
        super().__init__(process, shape, num_classes, step_rule, guidance)
        self.net, self.latent_layer = net, latent_layer
        if checkpoint is not None:
            state = load_state_dict(checkpoint)
            state = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
            hint = (
                f"build net ({type(net).__name__}) with the init_args the file was trained with "
                "(vocab_size, num_states, hidden, ...)"
            )
            load_matching_state(self.net, state, checkpoint, "NetworkTeacher", hint, prefix=prefix)

    def network_logits(self, x_t: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
        return self.net(x_t, t, cond)
