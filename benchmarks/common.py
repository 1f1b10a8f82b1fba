"""What every benchmark prints beside its table: the machine, the date, the load it ran under."""

from __future__ import annotations

import os
import platform
from datetime import date
from pathlib import Path

import pandas as pd

from arxiv_assets.ml.splits import make_splits
from arxiv_assets.profiles import Profile
from arxiv_assets.sources.parquet import BUNDLED_SAMPLE


def machine_line() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return f"{date.today()} · {cpu} · {os.cpu_count()} cores · load average {load}"


def profile_splits(profile: Profile) -> pd.DataFrame:
    """The bundled sample split exactly as the pipeline's ``splits`` asset does for this profile."""
    return make_splits(pd.read_parquet(BUNDLED_SAMPLE), profile.splits).papers
