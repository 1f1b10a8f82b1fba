"""OpenVINO beside ONNX Runtime for the bundled all-MiniLM-L6-v2 on this CPU (measurement only).

Runs in the project's venv (OpenVINO, NNCF and optimum-intel are dependencies since the service's OpenVINO
variant; the first measurement, 2026-12-02, ran in a venv of its own before they were)::

    nice -n 10 .venv/bin/python -m benchmarks.openvino_bench

Texts: the 256 papers the pipeline checks a model variant on (``parity_sample`` of the default
profile's test split: round-robin over subjects), as "title. abstract", max_seq_length 128, batches
of 32. Every variant is loaded, warmed up with one full pass (whose embeddings are the ones scored),
then timed ``--rounds`` times, rounds interleaved across variants so a burst of load from other work
hits all of them; a cell is the best round. Threads: one per core for every runtime.

Variants: torch fp32 (the reference); torch bf16 autocast (what the service's start-up choice
picked on this AMX CPU, RESULTS.md "Backend choice at startup"); ONNX Runtime fp32 and dynamic int8
exactly as the pipeline exports them (``arxiv_assets.ml.export.export_onnx``: sentence-transformers' ONNX backend, then
``export_dynamic_quantized_onnx_model`` with this CPU's config, MatMuls with a weight only); OpenVINO
fp32 (sentence-transformers ``backend="openvino"``, ``INFERENCE_PRECISION_HINT=f32``: on a CPU with
AMX or AVX512-BF16 OpenVINO's default is bf16); OpenVINO with the bf16 precision hint; OpenVINO static
int8 (NNCF post-training quantization through optimum-intel's ``OVQuantizer`` with
``OVQuantizationConfig``, calibrated on ``--calibration`` train-split papers that are not among the
256, tokenized at 128 tokens), run with the f32 and with the bf16 hint for the layers it leaves in
floating point. Quality: row-wise cosine to the torch fp32 embeddings of the same texts, and subject
P@10 over the 256 papers (``arxiv_assets.ml.metrics.subject_retrieval``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
import traceback
from collections.abc import Callable
from datetime import date
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd

from arxiv_assets.ml.embedding import BUNDLED_BASE_MODEL, encode, resolve_model_source
from arxiv_assets.ml.export import export_onnx
from arxiv_assets.ml.metrics import subject_retrieval
from arxiv_assets.ml.text import paper_texts
from arxiv_assets.ml.variants import ParityStats, load_variant, parity_sample
from arxiv_assets.profiles import get_profile
from benchmarks.common import flags_line, machine_line, profile_splits

PACKAGES = ("torch", "sentence-transformers", "transformers", "onnxruntime", "optimum", "optimum-onnx",
            "optimum-intel", "openvino", "nncf")
REFERENCE = "torch fp32"
BASELINE = "ONNX Runtime int8 (dynamic)"
TORCH_BF16 = "torch bf16 autocast (the service's pick on AMX)"
INT8_FILE = "openvino_model_qint8_static"
# What "worth adding" means: faster than the ONNX int8 the service runs today by more than this, with
# these quality floors.
MIN_GAIN, MIN_COSINE, MAX_P10_DROP = 0.10, 0.98, 0.01


def ov_config(precision: str, threads: int) -> dict[str, str]:
    return {"INFERENCE_PRECISION_HINT": precision, "INFERENCE_NUM_THREADS": str(threads),
            "PERFORMANCE_HINT": "LATENCY"}


def load_openvino(directory: Path, precision: str, threads: int, file_name: str | None = None):
    from sentence_transformers import SentenceTransformer

    kwargs: dict = {"ov_config": ov_config(precision, threads)}
    if file_name:
        kwargs["file_name"] = file_name
    return SentenceTransformer(str(directory), backend="openvino", device="cpu", model_kwargs=kwargs)


def export_openvino(model_dir: Path, out_dir: Path, threads: int) -> None:
    """Copy the model to ``out_dir`` and add its fp32 OpenVINO IR (``openvino/openvino_model.xml``)."""
    shutil.copytree(model_dir, out_dir)
    load_openvino(out_dir, "f32", threads).save_pretrained(str(out_dir))


def quantize_openvino(ov_dir: Path, calibration_texts: list[str], max_seq_length: int, threads: int) -> float:
    """Static int8 (NNCF PTQ, transformer preset) of the fp32 IR into ``openvino/<INT8_FILE>.xml``; seconds taken."""
    from datasets import Dataset
    from optimum.intel.openvino import OVConfig, OVQuantizationConfig, OVQuantizer

    started = time.perf_counter()
    fp32 = load_openvino(ov_dir, "f32", threads)
    tokens = fp32.tokenizer(calibration_texts, padding="max_length", max_length=max_seq_length, truncation=True)
    calibration = Dataset.from_dict(dict(tokens))
    config = OVConfig(quantization_config=OVQuantizationConfig(num_samples=len(calibration_texts)))
    with tempfile.TemporaryDirectory() as out:
        OVQuantizer.from_pretrained(fp32.transformers_model).quantize(calibration, save_directory=out,
                                                                        ov_config=config)
        written = next(Path(out).rglob("openvino_model.xml"))
        for suffix in (".xml", ".bin"):
            shutil.move(written.with_suffix(suffix), ov_dir / "openvino" / f"{INT8_FILE}{suffix}")
    return time.perf_counter() - started


def compiled_precision(model) -> str:
    """The inference precision OpenVINO compiled the model with ("" for other runtimes)."""
    request = getattr(getattr(model, "transformers_model", None), "request", None)
    if not hasattr(request, "get_property"):
        return ""
    value = request.get_property("INFERENCE_PRECISION_HINT")
    return value.to_string() if hasattr(value, "to_string") else str(value)


def versions() -> str:
    def version(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "not installed"

    return ", ".join(f"{name} {version(name)}" for name in PACKAGES)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", default=resolve_model_source(BUNDLED_BASE_MODEL))
    parser.add_argument("--texts", type=int, default=256)
    parser.add_argument("--calibration", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-seq-length", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()

    start_line = machine_line()
    print(f"{start_line}\n{flags_line()}\n{versions()}", flush=True)
    splits = profile_splits(get_profile("default"))
    papers = parity_sample(splits, args.texts)
    texts, subjects = paper_texts(papers), papers["primary_subject"].tolist()
    train = splits[(splits["split"] == "train") & ~splits["id"].isin(papers["id"])]
    calibration_texts = paper_texts(train.sample(n=args.calibration, random_state=0))
    work = Path(tempfile.mkdtemp(prefix="openvino-bench-"))
    model_dir = Path(args.model_dir)

    steps: dict[str, float] = {}
    state: dict = {}

    def onnx(variant: str) -> Callable:
        def load():
            if "export" not in state:
                started = time.perf_counter()
                state["export"] = export_onnx(model_dir, work / "onnx")
                steps[f"ONNX export + dynamic int8 ({state['export'].quantization_target})"] = \
                    time.perf_counter() - started
            return load_variant(state["export"].directory, variant, threads=args.threads)
        return load

    def openvino(precision: str, int8: bool = False) -> Callable:
        def load():
            ov_dir = work / "openvino"
            if not ov_dir.exists():
                started = time.perf_counter()
                export_openvino(model_dir, ov_dir, args.threads)
                steps["OpenVINO export (fp32 IR)"] = time.perf_counter() - started
            if int8 and "int8" not in state:
                seconds = quantize_openvino(ov_dir, calibration_texts, args.max_seq_length, args.threads)
                steps[f"OpenVINO static int8 (NNCF, {len(calibration_texts)} papers)"] = seconds
                state["int8"] = True
            return load_openvino(ov_dir, precision, args.threads, f"openvino/{INT8_FILE}.xml" if int8 else None)
        return load

    loaders: dict[str, Callable] = {
        REFERENCE: lambda: load_variant(model_dir, "torch-fp32", threads=args.threads),
        TORCH_BF16: lambda: load_variant(model_dir, "torch-bf16", threads=args.threads),
        "ONNX Runtime fp32": onnx("onnx-fp32"),
        BASELINE: onnx("onnx-int8"),
        "OpenVINO fp32 (f32 hint)": openvino("f32"),
        "OpenVINO bf16 hint": openvino("bf16"),
        "OpenVINO int8 (static, f32 hint)": openvino("f32", int8=True),
        "OpenVINO int8 (static, bf16 hint)": openvino("bf16", int8=True),
    }
    precision = {TORCH_BF16: "bf16"}  # autocast, as the service's torch-bf16 backend runs; the rest as loaded

    models, vectors, errors = {}, {}, {}
    for name, load in loaders.items():
        print(f"loading {name} ...", flush=True)
        try:
            model = load()
            model.max_seq_length = args.max_seq_length
            # warm-up pass, the scored one
            vectors[name] = encode(model, texts, batch_size=args.batch_size, precision=precision.get(name, "fp32"))
            models[name] = model
        except Exception as error:  # a variant that fails is a result: recorded, not fatal
            traceback.print_exc()
            errors[name] = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"

    rates: dict[str, list[float]] = {name: [] for name in models}
    for round_ in range(1, args.rounds + 1):
        for name, model in models.items():
            started = time.perf_counter()
            encode(model, texts, batch_size=args.batch_size, precision=precision.get(name, "fp32"))
            rates[name].append(len(texts) / (time.perf_counter() - started))
        print(f"round {round_}: " + ", ".join(f"{n} {r[-1]:.1f}" for n, r in rates.items()), flush=True)
    end_load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    shutil.rmtree(work, ignore_errors=True)

    reference = vectors[REFERENCE]
    reference_p10 = subject_retrieval(reference, subjects).micro["P@10"]
    baseline = max(rates[BASELINE]) if BASELINE in rates else float("nan")
    rows, speed = [], f"texts/s (best of {args.rounds})"
    for name in loaders:
        if name in errors:
            rows.append({"variant": name, speed: f"failed: {errors[name]}"})
            continue
        best = max(rates[name])
        parity = ParityStats.of(reference, vectors[name])
        p10 = subject_retrieval(vectors[name], subjects).micro["P@10"]
        gain = best / baseline - 1
        worth = gain > MIN_GAIN and parity.min_cosine >= MIN_COSINE and reference_p10 - p10 <= MAX_P10_DROP
        rows.append({
            "variant": name, speed: round(best, 1),
            "rounds": " / ".join(f"{r:.1f}" for r in rates[name]),
            "vs ONNX int8": f"{100 * gain:+.0f} %", "compiled precision": compiled_precision(models[name]),
            "min cosine": round(parity.min_cosine, 5),
            "mean cosine": round(parity.mean_cosine, 5), "P@10": round(p10, 3),
            "ΔP@10 (points)": round(100 * (p10 - reference_p10), 1) + 0.0,  # + 0.0: no "-0"
            "worth it (>10 % over ONNX int8, min cos >= 0.98, P@10 >= ref - 1)": "yes" if worth else "no",
        })
    table = pd.DataFrame(rows).to_markdown(index=False)
    prep = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in steps.items())
    print(f"""
## OpenVINO beside ONNX Runtime ({date.today()})

{start_line} (at the start; {end_load} at the end) · {args.threads} threads per runtime.
{flags_line()}.
Model: `{args.model_dir}`. {len(texts)} test papers (`parity_sample`), max_seq_length {args.max_seq_length},
batch {args.batch_size}; int8 calibration on {len(calibration_texts)} other (train-split) papers.
Packages: {versions()}.
Preparation: {prep}.

{table}

Reference P@10 (torch fp32): {reference_p10:.3f}; ONNX int8 best round: {baseline:.1f} texts/s.
""")
    if not np.isfinite(baseline):
        print("ONNX int8 failed, so no variant is compared with it")


if __name__ == "__main__":
    main()
