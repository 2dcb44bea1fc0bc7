"""An oracle teacher: the exact x0-posterior of a distribution small enough to enumerate."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from mixdistill.processes.base import ForwardProcess
from mixdistill.sampling.categorical import NEG_INF
from mixdistill.sampling.step_rule import StepRule
from mixdistill.tables import TableSpec, enumerate_states, load_table, validate_table
from mixdistill.teachers.base import Teacher

#: Log-likelihood floor for impossible (x_0, x_t) pairs. For ``x_t`` that the data can produce it
#: changes nothing measurable (each violation costs 69 nats); for ``x_t`` that it cannot (a product
#: sampler can reach such states) it makes the posterior favour the data states that need the fewest
#: impossible transitions, a well-defined extension instead of a division by zero.
LOG_FLOOR = float(np.log(1e-30))


class ExactTeacher(Teacher):
    """Bayes-optimal ``p(x_0^d | x_t)`` of a known distribution over ``S^D``, computed exactly.

    ``p(x_0 | x_t) ∝ pi(x_0) prod_d q_{t|0}(x_t^d | x_0^d)`` is summed over the support of ``pi``
    (the table's non-zero entries) and marginalised per dimension.

    The table sets the sizes: ``process`` may be given without its vocabulary (in YAML, a
    ``class_path`` without ``vocab_size``) and is then built for the table's ``S``, so that one
    ``table`` setting sizes the teacher, and through it the student (``FreshNetwork``).

    Args:
        process: Forward process over the table's ``S`` values, or a factory ``vocab_size -> process``
            called with ``S``.
        table: Probabilities of shape ``(S,) * D`` summing to 1: a ``.npy``/``.pt`` path, a
            ``TableSpec`` (e.g. ``PrototypeTable``) or a tensor.
        max_states: Largest ``S^D`` accepted.
        step_rule: The sampler's step rule (the ancestral product step by default).
    """

    def __init__(
        self,
        process: ForwardProcess | Callable[[int], ForwardProcess],
        table: str | TableSpec | Tensor,
        max_states: int = 1 << 20,
        step_rule: StepRule | None = None,
    ) -> None:
        probs = load_table(table)
        name = f"ExactTeacher: table='{table}'" if isinstance(table, str) else "ExactTeacher: table"
        if not isinstance(process, ForwardProcess):  # a factory: the table gives the vocabulary
            validate_table(probs, probs.shape[0] if probs.dim() else 0, max_states, name)
            process = process(probs.shape[0])
        validate_table(probs, process.vocab_size, max_states, name)
        super().__init__(process, (probs.dim(),), step_rule=step_rule)
        states = enumerate_states(process.vocab_size, probs.dim())  # (N, D)
        flat = probs.reshape(-1)
        support = flat > 0
        self.register_buffer("table", probs, persistent=False)
        self.register_buffer("support_states", states[support], persistent=False)  # (M, D)
        self.register_buffer("support_log_probs", flat[support].log(), persistent=False)  # (M,)
        self.freeze()

    def network_logits(self, x_t: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
        log_q = self.process.marginal_matrix(t).double().clamp_min(1e-300).log()  # (B, S, K)
        log_q = log_q.clamp_min(LOG_FLOOR)
        idx = x_t.unsqueeze(1).expand(-1, log_q.shape[1], -1)  # (B, S, D)
        lik = torch.gather(log_q, 2, idx).transpose(1, 2)  # (B, D, S): log q(x_t^d | v)
        X = self.support_states  # (M, D)
        d_idx = torch.arange(X.shape[1], device=X.device)
        log_w = self.support_log_probs + lik[:, d_idx, X].sum(-1)  # (B, M)
        w = torch.softmax(log_w, dim=1)
        onehot = torch.nn.functional.one_hot(X, self.vocab_size).double()  # (M, D, S)
        marg = torch.einsum("bm,mds->bds", w, onehot)
        return marg.log().clamp_min(NEG_INF).float()
