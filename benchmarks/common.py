"""What every benchmark prints beside its table: the machine, the date, the load it ran under."""

from __future__ import annotations

import argparse
import os
import platform
import sys
from datetime import date
from pathlib import Path

import pandas as pd
import torch

from arxiv_assets.ml.export import calibration_texts, export_onnx
from arxiv_assets.ml.hardware import ISA_CAP_ENV_VAR, cpu_flags
from arxiv_assets.ml.splits import make_splits
from arxiv_assets.ml.variants import ModelExport
from arxiv_assets.profiles import Profile, get_profile
from arxiv_assets.sources.parquet import BUNDLED_SAMPLE

# The CPU flags that decide precisions and backends here: every figure is printed with those this CPU has.
FLAGS_OF_NOTE: tuple[str, ...] = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8")


def flags_of_note() -> list[str]:
    """Those of FLAGS_OF_NOTE this CPU has (as PyTorch may use them): what every benchmark row records."""
    return [f for f in FLAGS_OF_NOTE if f in cpu_flags()]


def flags_line() -> str:
    """``CPU flags a, b`` (``flags_of_note``), or ``none of ...``."""
    flags = flags_of_note()
    return "CPU flags " + (", ".join(flags) if flags else "none of " + ", ".join(FLAGS_OF_NOTE))


def hold_to_isa(isa: str | None, module: str) -> None:
    """Start ``python -m module`` again with PyTorch held to ``isa`` on this CPU (oneDNN, MKL and ATen read their
    caps when torch loads, hence a new process): ``AVX2`` on an AVX512/AMX machine runs fp32 with AVX2 kernels, as
    an AVX2-only CPU of the same clock would. Returns at once where no cap is asked or it is already set."""
    if not isa or os.environ.get(ISA_CAP_ENV_VAR) == isa:
        return
    caps = {ISA_CAP_ENV_VAR: isa, "MKL_ENABLE_INSTRUCTIONS": isa.split("_")[0],
            "ATEN_CPU_CAPABILITY": "avx2" if isa.startswith("AVX2") else "default"}
    os.execve(sys.executable, [sys.executable, "-m", module, *sys.argv[1:]], {**os.environ, **caps})


def machine_line() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    gpu = f" · GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else " · no GPU"
    return f"{date.today()} · {cpu} · {os.cpu_count()} cores · load average {load}{gpu}"


def profile_splits(profile: Profile) -> pd.DataFrame:
    """The bundled sample split exactly as the pipeline's ``splits`` asset does for this profile."""
    return make_splits(pd.read_parquet(BUNDLED_SAMPLE), profile.splits).papers


def export_as_released(model_dir: Path, out_dir: Path) -> ModelExport:
    """``model_dir`` exported as ``onnx_model`` exports it: every variant, OpenVINO's calibrated on train papers."""
    return export_onnx(model_dir, out_dir, calibration_texts=calibration_texts(profile_splits(get_profile("default"))))


def add_decision_argument(parser: argparse.ArgumentParser) -> None:
    """``--decision``: what the benchmarked release serves, which sets the service's parity bar for reduced precision
    (``Settings.reduced_precision_bar``) when ARXIV_SERVING_MIN_COSINE_REDUCED is unset."""
    parser.add_argument("--decision", choices=("challenger", "champion", "base"), default="challenger",
                        help="what the release serves (a fine-tuned model unless base: the untrained base, held to "
                             "fp32's parity bar): the parity bar for reduced precision depends on it when "
                             "ARXIV_SERVING_MIN_COSINE_REDUCED is unset")
