"""Which precision ``precision="auto"`` should pick on this CPU: fp32 vs bf16 autocast.

For each ViT size and view size the project trains or embeds with, one forward (embedding)
or forward + backward (a training step's compute) of the madspatial backbone
(``mad.nn.MADModel``'s ``timm`` ViT) runs in fp32 and under bf16 autocast, alternating,
best of ``--repeats`` (the machine is shared). Printed: the bf16 / fp32 speed ratio of each
case, what ``precision="auto"`` resolves to here, and whether that choice is the faster one
in every case. Results go to ``benchmarks/results/precision.{json,md}``.

    python benchmarks/bench_precision.py            # ~3 min on 2 cores
    python benchmarks/bench_precision.py --quick    # smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results"

#: (backbone preset, view px, batch, train?): the demo / CPU preset and the embed benchmark.
CASES = [
    ("vit_pico", 56, 64, True),
    ("vit_pico", 112, 64, True),
    ("vit_pico", 112, 64, False),
    ("vit_tiny", 112, 32, True),
    ("vit_tiny", 224, 64, False),
    ("vit_small", 112, 16, True),
    ("vit_small", 224, 16, False),
]


def _backbone(preset: str, size: int):
    from madspatial.nn import build_backbone

    return build_backbone(preset, img_size=size, in_chans=4)


def _time(model, x, *, train: bool, bf16: bool) -> float:
    t = time.perf_counter()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        if train:
            model(x).float().sum().backward()
        else:
            with torch.inference_mode():
                model(x)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="two tiny cases, one repeat")
    ap.add_argument("--report-only", action="store_true", help="rewrite the .md from the .json")
    args = ap.parse_args()
    if args.report_only:
        write_report(json.loads((RESULTS / "precision.json").read_text()), repeats=args.repeats)
        return
    from madspatial.train._precision import cpu_has_amx, resolve_precision

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cases = [("vit_pico", 28, 8, True), ("vit_pico", 28, 8, False)] if args.quick else CASES
    auto = resolve_precision("auto", "cpu")
    rows = []
    for preset, size, batch, train in cases:
        model = _backbone(preset, size)
        x = torch.rand(batch, 4, size, size)
        best = {"fp32": float("inf"), "bf16": float("inf")}
        for prec in best:  # warm-up: the first call of each precision builds its kernels
            _time(model, x, train=train, bf16=prec == "bf16")
        for _ in range(1 if args.quick else args.repeats):
            for prec in best:
                best[prec] = min(best[prec], _time(model, x, train=train, bf16=prec == "bf16"))
        ratio = best["fp32"] / best["bf16"]
        rows.append(
            {
                "backbone": preset,
                "view_px": size,
                "batch": batch,
                "pass": "forward+backward" if train else "forward",
                "fp32_s": best["fp32"],
                "bf16_s": best["bf16"],
                "bf16_speed_over_fp32": ratio,
                "faster": "bf16" if ratio > 1 else "fp32",
            }
        )
        print(
            f"{preset} {size}px batch {batch} {rows[-1]['pass']}: fp32 {best['fp32']:.3f} s, "
            f"bf16 {best['bf16']:.3f} s -> bf16 at {ratio:.2f}x fp32's speed",
            flush=True,
        )
    right = all(r["faster"] == auto for r in rows)
    cpu = {
        "amx": cpu_has_amx(),
        "avx512_bf16": bool(getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)()),
        "processor": platform.processor() or platform.machine(),
        "threads": args.threads,
        "load_average": list(os.getloadavg()),
    }
    print(f'precision="auto" resolves to {auto} here; the faster one in every case: {right}')
    if args.quick:
        return
    RESULTS.mkdir(exist_ok=True)
    out = {"cpu": cpu, "auto": auto, "auto_is_faster_everywhere": right, "cases": rows}
    (RESULTS / "precision.json").write_text(json.dumps(out, indent=2))
    write_report(out, repeats=args.repeats)


def write_report(out: dict, *, repeats: int) -> None:
    """``precision.md`` from the measured cases (also ``--report-only`` on a saved JSON)."""
    cpu, auto, rows = out["cpu"], out["auto"], out["cases"]
    lines = [
        '# precision="auto" on CPU: fp32 vs bf16 autocast',
        "",
        f"CPU: AMX {cpu['amx']}, AVX512-BF16 {cpu['avx512_bf16']}; {cpu['threads']} torch "
        f"threads, best of {repeats} alternating runs; load average {cpu['load_average']}.",
        "",
        "| backbone | view px | batch | pass | fp32 s | bf16 s | bf16 speed / fp32 |",
        "|---|---:|---:|---|---:|---:|---:|",
    ]
    lines += [
        f"| {r['backbone']} | {r['view_px']} | {r['batch']} | {r['pass']} | {r['fp32_s']:.3f} "
        f"| {r['bf16_s']:.3f} | {r['bf16_speed_over_fp32']:.2f} |"
        for r in rows
    ]
    wrong = [r for r in rows if r["faster"] != auto]
    lines += [
        "",
        f'`precision="auto"` resolves to **{auto}** on this CPU; it is the faster precision in '
        f"{len(rows) - len(wrong)} of {len(rows)} cases.",
    ]
    if wrong:
        lines.append(
            "Where the other precision was faster: "
            + "; ".join(
                f"{r['backbone']} {r['view_px']} px {r['pass']} "
                f"(bf16 at {r['bf16_speed_over_fp32']:.2f}x)"
                for r in wrong
            )
            + ". A shared machine makes single cases noisy; a rule that flips on one case "
            "near 1x is not worth the surprise of precision changing with the model size."
        )
    lines += ["", "Command: `python benchmarks/bench_precision.py`"]
    (RESULTS / "precision.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
