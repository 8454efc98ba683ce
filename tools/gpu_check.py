"""GPU inference and training, measured: one prepared check that runs the moment a GPU is lent.

In one call of at most 8 minutes on one H100 (``make gpu-check``, or
``python tools/gpu_check.py --device cuda --output DIR``) it

1. runs ``predict`` for every bundled model on its held-out demo case on the CPU (fp32) and on
   the GPU (AMP) and compares them: Dice per label between the two label maps (>= 0.99), the
   largest probability (and attention / level-set / uncertainty) difference, and the GPU time
   (median of 3 after a warm-up, network built once);
2. times a two-phase 512 x 512 x 200 CT through ``predict`` on the GPU (bundled liver model),
   with the peak GPU memory;
3. checks ``signed_distance_map`` on CUDA tensors against the CPU result (<= 1e-5) and times it
   for a batch of 4 x 112 x 112 x 80;
4. times one AMP training step of each method at the references' sizes (DTC VNet-16, batch 4 of
   112 x 112 x 80; MAML and its U-Net baseline at the bundled brain width, batch 2 of 128^3), and
   200 fine-tuning iterations of the bundled liver model;
5. writes everything to ``gpu-check.json`` and ``gpu-check.md`` (a markdown table) in the
   output folder, with the GPU's name and the software versions -- after every section, so a
   run cut short still leaves what it measured.

Every section runs in its own try/except (a failure is recorded and the next section runs), and
``--budget-seconds`` (default 420) skips the sections left when the time is spent and stops a
running one at the deadline. ``--device cpu --quick`` is the dry run the test suite runs (small
sizes, the same code paths) so that this script cannot rot between GPU loans.

Exit code: 0 when every section ran and every check passed, 1 otherwise, 2 when ``--device
cuda`` is asked for where PyTorch sees no GPU.
"""

from __future__ import annotations

import argparse
import functools
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPOSITORY = Path(__file__).resolve().parent.parent
for folder in (REPOSITORY, REPOSITORY / "tools"):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

from budgeted_sections import Budget, run_sections  # noqa: E402
from gpu_check_sections import (  # noqa: E402
    AGREEMENT_DICE,
    SDF_TOLERANCE,
    CheckSettings,
    section_bundled_models,
    section_finetune,
    section_large_ct,
    section_signed_distance,
    section_training_steps,
)

SECTIONS = {
    "bundled_models": section_bundled_models,
    "large_ct": section_large_ct,
    "signed_distance": section_signed_distance,
    "training_steps": section_training_steps,
    "finetune": section_finetune,
}
VERSIONED_PACKAGES = ("torch", "numpy", "scipy", "SimpleITK", "edt", "safetensors", "scikit-image")
JSON_NAME, MARKDOWN_NAME = "gpu-check.json", "gpu-check.md"


def _command_output(command: list[str]) -> str | None:
    try:
        completed = subprocess.run(command, capture_output=True, text=True, timeout=20, cwd=REPOSITORY)
    except (OSError, subprocess.SubprocessError):
        return None
    if completed.returncode != 0:
        return None
    return completed.stdout.strip() or None


def environment(device: str) -> dict[str, Any]:
    """The machine, the GPU (name, memory, driver) and the software versions."""
    import torch

    from MultiModalSegLib import __version__

    versions: dict[str, str | None] = {"python": platform.python_version(), "MultiModalSegLib": __version__}
    for name in VERSIONED_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    versions["cuda"] = torch.version.cuda
    versions["cudnn"] = str(torch.backends.cudnn.version()) if torch.backends.cudnn.is_available() else None
    record: dict[str, Any] = {
        "device": device, "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(), "git_commit": _command_output(["git", "rev-parse", "--short", "HEAD"]),
        "versions": versions, "gpu": None}
    if torch.cuda.is_available():
        properties = torch.cuda.get_device_properties(0)
        record["gpu"] = {"name": properties.name, "memory_gib": round(properties.total_memory / 2**30, 1),
                         "capability": f"{properties.major}.{properties.minor}",
                         "multiprocessors": properties.multi_processor_count,
                         "driver": _command_output(["nvidia-smi", "--query-gpu=driver_version",
                                                    "--format=csv,noheader"])}
    return record


def _value(value: Any, unit: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        value = f"{value:.4g}"
    return f"{value}{unit}"


def _status(record: dict[str, Any]) -> str:
    return record["status"] + (f": {record['error']}" if record.get("error") else "")


def _yes(flag: Any) -> str:
    return "yes" if flag else "no"


def _table(title: str, record: dict[str, Any], headers: list[str], rows: list[list[Any]]) -> list[str]:
    """A titled markdown table of one section; a row of a failed part says why in its third cell."""
    return [f"{title} ({_status(record)})", "", "| " + " | ".join(headers) + " |",
            "| " + " | ".join("---" for _ in headers) + " |",
            *("| " + " | ".join(str(cell) for cell in row) + " |" for row in rows), ""]


def _part_rows(parts: dict[str, dict[str, Any]], width: int, cells) -> list[list[Any]]:
    """One row per model or method: ``cells(name, entry)``, or the error where that part failed."""
    return [[name, entry.get("case", entry.get("what", "-")), f"failed: {entry['error']}", *[""] * (width - 3)]
            if "error" in entry else cells(name, entry) for name, entry in parts.items()]


def render_markdown(report: dict[str, Any]) -> str:
    """The report as markdown: environment, then one table per section."""
    env, sections = report["environment"], report["sections"]
    gpu = env.get("gpu") or {}
    versions = ", ".join(f"{k} {v}" for k, v in env["versions"].items() if v)
    lines = ["# GPU check", "",
             f"Device: {env['device']}" + (f" -- {gpu['name']} ({gpu['memory_gib']} GiB, capability "
                                           f"{gpu['capability']}, driver {gpu.get('driver') or '?'})" if gpu else ""),
             f"Software: {versions}", f"Mode: {'quick (small sizes)' if report['quick'] else 'full sizes'}; "
             f"commit {env.get('git_commit') or '?'}; {report['seconds']} s in all; "
             f"all checks passed: **{report['passed']}**", ""]
    if "bundled_models" in sections:
        record = sections["bundled_models"]
        amp = " with AMP" if env["device"].startswith("cuda") else ""
        lines += _table(f"## 1. Bundled models, CPU fp32 vs {env['device']}{amp}", record,
                        ["model", "demo case", "CPU fp32 s", "device s (median)", "min Dice CPU vs device",
                         "max probability difference", "peak GPU GiB", f"agrees (Dice >= {AGREEMENT_DICE})"],
                        _part_rows(record["results"], 8, lambda name, e: [
                            name, e["case"], _value(e["cpu_fp32_s"]), _value(e["device_s_median"]),
                            _value(e["min_dice"]), _value(e["max_probability_difference"]),
                            _value(e["peak_gpu_memory_gib"]), _yes(e["passed"])]))
    if "large_ct" in sections:
        record = sections["large_ct"]
        r, timing = record["results"], record["results"].get("timing", {})
        lines += _table("## 2. Large CT through predict", record,
                        ["input", "windows", "preprocessing s", "inference s", "total s",
                         "peak GPU GiB (allocated / reserved)"],
                        [[r.get("input", "-"), _value(timing.get("windows")), _value(timing.get("preprocessing_s")),
                          _value(timing.get("inference_s")), _value(timing.get("total_s")),
                          f"{_value(r.get('peak_gpu_memory_gib'))} / {_value(r.get('peak_gpu_memory_reserved_gib'))}"]])
    if "signed_distance" in sections:
        record = sections["signed_distance"]
        r = record["results"]
        lines += _table("## 3. signed_distance_map", record,
                        ["masks", "CPU s", "device s (median)", "max abs difference", f"<= {SDF_TOLERANCE:g}"],
                        [[r.get("masks", "-"), _value(r.get("cpu_s")), _value(r.get("device_s_median")),
                          _value(r.get("max_abs_difference")), _yes(r.get("passed"))]])
    if "training_steps" in sections:
        record = sections["training_steps"]
        lines += _table("## 4. Training", record,
                        ["method", "configuration", "parameters", "AMP", "s per step", "peak GPU GiB"],
                        _part_rows(record["results"], 6, lambda name, e: [
                            name, e["what"], f"{e['parameters'] / 1e6:.2f} M", _yes(e["amp"]),
                            _value(e["seconds_per_step"]), _value(e["peak_gpu_memory_gib"])]))
    if "finetune" in sections:
        record = sections["finetune"]
        r = record["results"]
        lines += _table(f"Fine-tuning {r.get('model', '-')}", record,
                        ["iterations", "batch", "wall s (data preparation included)", "training s",
                         "median s per iteration", "peak GPU GiB"],
                        [[_value(r.get("iterations")), r.get("batch", "-"), _value(r.get("wall_s")),
                          _value(r.get("training_s")), _value(r.get("median_s_per_iteration")),
                          _value(r.get("peak_gpu_memory_gib"))]])
    return "\n".join(lines)


def all_passed(sections: dict[str, dict[str, Any]]) -> bool:
    """Every section ran to its end and no check in it failed."""
    if any(record["status"] != "ok" for record in sections.values()):
        return False
    models = sections.get("bundled_models", {}).get("results", {})
    steps = sections.get("training_steps", {}).get("results", {})
    checks = [entry.get("passed", False) for entry in models.values()]
    checks += ["error" not in entry for entry in steps.values()]
    checks += [sections[name]["results"].get("passed", False) for name in ("large_ct", "signed_distance", "finetune")
               if name in sections]
    return all(checks)


def write_report(output: Path, report: dict[str, Any]) -> None:
    """The JSON first (it holds everything), then the markdown (a rendering error is written there)."""
    output.mkdir(parents=True, exist_ok=True)
    (output / JSON_NAME).write_text(json.dumps(report, indent=2, default=str), encoding="utf-8")
    try:
        markdown = render_markdown(report)
    except Exception as error:  # noqa: BLE001 -- the JSON is written; say why the table is not
        markdown = (f"# GPU check\n\nThe table could not be rendered ({type(error).__name__}: {error}); "
                    f"see {JSON_NAME}.\n")
    (output / MARKDOWN_NAME).write_text(markdown, encoding="utf-8")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu; cuda:N for another GPU")
    parser.add_argument("--quick", action="store_true", help="small sizes: a dry run of every section in seconds")
    parser.add_argument("--output", type=Path, default=REPOSITORY / "gpu-check-output",
                        help=f"folder for {JSON_NAME} and {MARKDOWN_NAME}")
    parser.add_argument("--budget-seconds", type=float, default=420.0,
                        help="stop and skip what is left after this many seconds (default 420)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs after the warm-up (default 3)")
    parser.add_argument("--sections", default=",".join(SECTIONS),
                        help=f"comma-separated subset of {', '.join(SECTIONS)} (default all, in that order)")
    parser.add_argument("--models", default=None, help="comma-separated bundled model ids (default all)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    budget = Budget(args.budget_seconds)
    names = [name.strip() for name in args.sections.split(",") if name.strip()]
    unknown = sorted(set(names) - set(SECTIONS))
    if unknown:
        print(f"Unknown section(s) {', '.join(unknown)}; use some of {', '.join(SECTIONS)}.", file=sys.stderr)
        return 2
    import torch

    report: dict[str, Any] = {"quick": args.quick, "budget_seconds": args.budget_seconds,
                              "agreement_dice": AGREEMENT_DICE, "environment": environment(args.device),
                              "sections": {}, "seconds": 0.0, "passed": False}
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        report["error"] = "PyTorch sees no CUDA GPU here; run on a GPU machine, or pass --device cpu --quick."
        write_report(args.output, report)
        print(report["error"], file=sys.stderr)
        return 2
    print(f"GPU check on {args.device} ({(report['environment']['gpu'] or {}).get('name', 'no GPU')}), "
          f"budget {args.budget_seconds:.0f} s -> {args.output}", flush=True)
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as work:
        settings = CheckSettings(device=args.device, quick=args.quick, repeats=max(1, args.repeats), work=Path(work),
                                 models=args.models.split(",") if args.models else None)

        def update(records: dict[str, dict[str, Any]]) -> None:
            report.update(sections=records, seconds=round(budget.elapsed(), 1), passed=all_passed(records))
            write_report(args.output, report)

        run_sections([(name, functools.partial(SECTIONS[name], settings)) for name in names], budget, update)
    print((args.output / MARKDOWN_NAME).read_text(encoding="utf-8"), flush=True)
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
