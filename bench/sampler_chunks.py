"""The float64 sampler's chunk size on a CPU: why ``categorical.CPU_CHUNK_ELEMENTS`` is 2^20.

``sample_from_logits`` works on its float64 copies a chunk of rows at a time. Each shape below is
drawn (one draw per row, the consistency targets' case, and ``n`` draws per row, the teacher step's)
with the chunk limit at each size, the sizes alternating in every repeat; the draws are the same for
every size (one stream of uniforms). Writes "## Sampler: float64 chunk size on a CPU".

    python bench/sampler_chunks.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
from report import write_section

from mixdistill.sampling import categorical

SECTION = "## Sampler: float64 chunk size on a CPU"
LIMITS = [2**26, 2**22, 2**20, 2**18]
SHAPES = [  # (what, rows, states, draws per row)
    ("MDLM-like targets: 16 x 128 positions", 2048, 50258, None),
    ("MDLM DiT bench targets: 2 x 16 x 128", 4096, 4097, None),
    ("MaskGIT targets: 64 x 64 positions", 4096, 1025, None),
    ("MaskGIT teacher step, 32 draws per position: 2 x 64", 128, 1025, 32),
    ("text sampler step at batch 256: 256 x 64 positions", 16384, 2049, None),
]


def timings(rows: int, states: int, draws: int | None, repeats: int) -> dict[int, list[float]]:
    """Seconds of one ``sample_from_logits`` call per chunk limit, the limits alternating."""
    logits = torch.randn(rows, states) * 3
    out: dict[int, list[float]] = {k: [] for k in LIMITS}
    kept = categorical.CPU_CHUNK_ELEMENTS
    try:
        for r in range(repeats + 1):
            for limit in LIMITS if r % 2 == 0 else LIMITS[::-1]:
                categorical.CPU_CHUNK_ELEMENTS = limit
                start = time.perf_counter()
                categorical.sample_from_logits(logits, draws, generator=torch.Generator().manual_seed(r))
                if r > 0:  # the first round warms up
                    out[limit].append(time.perf_counter() - start)
    finally:
        categorical.CPU_CHUNK_ELEMENTS = kept
    return out


def render(results: list[tuple[str, dict[int, list[float]]]], repeats: int) -> str:
    """One row per shape: median ms per limit and the speed-up of each over 2^26."""
    head = " | ".join(f"2^{k.bit_length() - 1} ms" for k in LIMITS)
    lines = [
        SECTION,
        "",
        f"`python bench/sampler_chunks.py --repeats {repeats}` ({os.cpu_count()} CPU cores, torch "
        f"{torch.__version__}, {torch.get_num_threads()} threads): one `sample_from_logits` call on float32 "
        "logits with the float64 working copies limited to each chunk size (elements), median of the "
        "repeats, the sizes alternating. The library uses 2^20 on a CPU (the copies stay in cache) and "
        "2^26 on accelerators.",
        "",
        f"| shape | {head} | speed-up of 2^20 over 2^26 |",
        "|---|" + "---:|" * (len(LIMITS) + 1),
    ]
    for what, secs in results:
        ms = {k: 1e3 * statistics.median(v) for k, v in secs.items()}
        cells = " | ".join(f"{ms[k]:.1f}" for k in LIMITS)
        lines.append(f"| {what} | {cells} | {ms[2**26] / ms[2**20]:.2f}x |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    results = [(what, timings(r, s, d, args.repeats)) for what, r, s, d in SHAPES]
    text = render(results, args.repeats)
    write_section(text)
    print(text)


if __name__ == "__main__":
    main()
