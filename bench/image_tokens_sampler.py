"""How the image-token teacher's sampler settings were chosen: the shipped teacher ALONE (no student),
on the VALIDATION split, FD-fashion and class accuracy of 1000 samples at 4 and 8 steps for a few
guidance weights and Gumbel temperatures. configs/image_tokens.yaml takes the best 8-step FD.

    python bench/image_tokens_sampler.py        # prints one JSON line per setting (about 4 min on 2 cores)
"""

from __future__ import annotations

import json

from mixdistill.data import TokenGridData
from mixdistill.evaluation import QualityEvaluation
from mixdistill.metrics.class_accuracy import ClassAccuracy
from mixdistill.metrics.classifier import ClassifierFeatures, SmallImageClassifier
from mixdistill.metrics.decoded import TokenImageDecoder
from mixdistill.metrics.frechet import FrechetDistance
from mixdistill.nets.maskgit_vit import MaskGITSizes
from mixdistill.sampling.confidence import ConfidenceUnmasking
from mixdistill.sampling.guidance import ClassifierFreeGuidance
from mixdistill.teachers.maskgit import MaskGITTeacher

SIZES = MaskGITSizes(256, 10, 7, 128, 4, 4, 512, 0.1)  # configs/teacher_image_tokens.yaml
CLASSIFIER, TOKENIZER = "asset:fashion_classifier.safetensors", "asset:fashion_vq.safetensors"
SETTINGS = [(3.0, 4.5), (1.0, 4.5), (0.0, 4.5), (3.0, 1.0), (1.0, 1.0)]  # (guidance weight, r_temp)


def evaluation() -> QualityEvaluation:
    """FD-fashion and class accuracy against the first 2000 validation examples, seed 1."""
    decoder = TokenImageDecoder(TOKENIZER)
    fd = FrechetDistance(
        ClassifierFeatures(SmallImageClassifier((28, 28), 256), CLASSIFIER, decoder), name="FD-fashion"
    )
    acc = ClassAccuracy(SmallImageClassifier((28, 28), 256), CLASSIFIER, decoder)
    ev = QualityEvaluation([4, 8], [1], num_samples=1000, batch_size=500, seed=1, sample_metrics=[fd, acc])
    data = TokenGridData(
        "data/fashion_tokens.npz", 256, num_classes=10, val_fraction=0.05, test_fraction=0.05
    )
    ev.update_real(data.splits["val"].x0[:2000])
    return ev


def main() -> None:
    ev = evaluation()
    for weight, r_temp in SETTINGS:
        step_rule, guidance = ConfidenceUnmasking(1.0, r_temp), ClassifierFreeGuidance(weight, ramp=True)
        teacher = MaskGITTeacher("asset:fashion_maskgit_teacher.safetensors", SIZES, step_rule, guidance)
        teacher.freeze()
        for steps in (4, 8):
            row = ev.row("teacher", teacher, steps, teacher)
            scores = {"FD-fashion": round(row["FD-fashion"], 3), "class-acc": round(row["class-acc"], 3)}
            print(json.dumps({"weight": weight, "r_temp": r_temp, "steps": steps} | scores), flush=True)


if __name__ == "__main__":
    main()
