"""Trains a tiny module with a deterministic loss, on one process or two (DDP, gloo, CPU).

Run by tests/test_ddp.py as ``python ddp_script.py {single|ddp|distill} OUT``; writes the trained
parameters to OUT so the test can compare runs.
"""

import sys

import lightning as L
import torch
from torch.utils.data import DataLoader, DistributedSampler

from mixdistill.denoising import DenoisingLoss
from mixdistill.di4c.objective import Di4CObjective
from mixdistill.di4c.times import SDTTTimes
from mixdistill.module import DistillModule
from mixdistill.nets.mlp import MLPDenoiserNet
from mixdistill.processes import MaskingProcess
from mixdistill.teacher_module import TeacherModule
from mixdistill.teachers.network import NetworkTeacher

S, D, N, GLOBAL_BATCH = 3, 6, 64, 16


class FixedMaskCrossEntropy(DenoisingLoss):
    """Cross-entropy at t = 0.5 with every other position masked: no randomness at all."""

    def __call__(self, model, x0, cond):
        t = torch.full((x0.shape[0],), 0.5)
        x_t = x0.clone()
        x_t[:, ::2] = model.process.mask_id
        logp = model.denoise(x_t, t, cond).float().log_softmax(-1)
        return -torch.gather(logp, 2, x0.unsqueeze(-1)).squeeze(-1).sum(1)


class Fixed(L.LightningDataModule):
    """The same N examples in a fixed order; under DDP rank r takes examples r, r + 2, ... so that
    step k's global batch is the single process's batch k."""

    def __init__(self, batch_size):
        super().__init__()
        self.batch_size = batch_size
        self.x = torch.randint(S, (N, D), generator=torch.Generator().manual_seed(0))

    def train_dataloader(self):
        data = [{"x0": x} for x in self.x]
        sampler = DistributedSampler(data, shuffle=False) if torch.distributed.is_initialized() else None
        return DataLoader(data, batch_size=self.batch_size, shuffle=False, sampler=sampler)


def teacher():
    torch.manual_seed(0)
    return NetworkTeacher(MaskingProcess(S), (D,), MLPDenoiserNet(D, S + 1, S, hidden=32, depth=1))


def main(mode, out):
    ddp = mode in ("ddp", "distill")
    kw = dict(
        accelerator="cpu",
        max_steps=4,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        deterministic=True,
    )
    trainer = L.Trainer(strategy="ddp" if ddp else "auto", devices=2 if ddp else 1, **kw)
    sgd = lambda p: torch.optim.SGD(p, lr=0.5)  # noqa: E731
    if mode == "distill":
        module = DistillModule(teacher(), Di4CObjective(SDTTTimes(step=0.01), latents=4), optimizer=sgd)
        net = module.student
    else:
        module = TeacherModule(teacher(), FixedMaskCrossEntropy(), optimizer=sgd)
        net = module.model
    trainer.fit(module, Fixed(GLOBAL_BATCH // (2 if ddp else 1)))
    flat = torch.cat([p.detach().flatten() for p in net.parameters()])
    if ddp:  # every rank must hold the same weights after synchronised steps
        gathered = [torch.zeros_like(flat) for _ in range(2)]
        torch.distributed.all_gather(gathered, flat)
        flat = torch.stack(gathered)
    if trainer.is_global_zero:
        torch.save(flat, out)
    if torch.distributed.is_initialized():
        # gloo's threads must be joined before the interpreter exits, or the process can abort
        # ("terminate called without an active exception", exit -6) after a finished run.
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
