"""Does the service pick the same backend from one start to the next?

    python -m benchmarks.backend_choice                    # 5 starts on the bundled all-MiniLM-L6-v2's ONNX export
    python -m benchmarks.backend_choice --starts 5 --model-dir PATH

Exports the model (fp32 + int8 for this CPU, as the ``onnx_model`` asset does), then runs the
service's own choice (``serving.backends.choose_backend`` with the service's default settings)
``--starts`` times in this process, each from scratch (every candidate loaded, warmed up and timed
again), and prints a table: which (backend, threads) each start picked, how long the choice took, and
every candidate's best-round texts/s. The machine line, the CPU flags that decide which backends are
fast (VNNI for int8, AVX512-BF16 / AMX for bf16) and the date are printed with it.
"""

from __future__ import annotations

import argparse
import gc
import shutil
import tempfile
import time
from collections import Counter
from datetime import date
from pathlib import Path

import pandas as pd

from arxiv_assets.ml.embedding import BUNDLED_BASE_MODEL, resolve_model_source
from benchmarks.common import add_decision_argument, export_as_released, flags_line, machine_line
from serving.backends import CLEAR_ADVANTAGE, OUT_OF_REACH, PREFERENCE, Measurement, choose_backend
from serving.settings import Settings


def cell(measurement: Measurement, rounds: int) -> str:
    if measurement.error is not None:
        return "failed"
    if not measurement.passed:
        return f"parity failed ({measurement.min_cosine:.4f})"
    return f"{measurement.texts_per_s:.1f}" + ("" if len(measurement.rounds_texts_per_s) == rounds else "†")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", default=resolve_model_source(BUNDLED_BASE_MODEL))
    parser.add_argument("--starts", type=int, default=5)
    add_decision_argument(parser)
    args = parser.parse_args()
    settings = Settings()

    work = Path(tempfile.mkdtemp(prefix="backend-choice-"))
    machine = f"{machine_line()} · {flags_line()}"
    print(f"{machine}\nexporting {args.model_dir} ...", flush=True)
    export = export_as_released(Path(args.model_dir), work / "export")
    reduced_bar = settings.reduced_precision_bar(args.decision)
    rows, reasons = [], []
    for start in range(1, args.starts + 1):
        started = time.perf_counter()
        choice = choose_backend(export.directory, settings.backend, settings.threads, settings.probe_texts,
                                settings.backend_rounds, settings.max_batch_size, settings.min_cosine_fp32,
                                reduced_bar)
        seconds = time.perf_counter() - started
        chosen = f"{choice.backend.name} x{choice.backend.threads}"
        rows.append({"start": start, "chosen": chosen, "choice s": round(seconds, 1),
                     **{m.label: cell(m, settings.backend_rounds) for m in choice.measurements}})
        reasons.append(choice.reason)
        print(f"start {start}: {chosen} in {seconds:.1f}s: {choice.reason}", flush=True)
        del choice
        gc.collect()
    shutil.rmtree(work, ignore_errors=True)

    picks = Counter(row["chosen"] for row in rows)
    (top, count), = picks.most_common(1)
    table = pd.DataFrame(rows).to_markdown(index=False)
    print(f"""
## Backend choice at startup, {args.starts} starts ({date.today()})

{machine}. Model: `{args.model_dir}`, exported here (int8 config `{export.quantization_target}`).
Each start runs the service's choice from scratch with its defaults, as for a release of decision
`{args.decision}` (parity bar for reduced precision {reduced_bar}): {settings.probe_texts} real abstracts,
a warm-up pass, then {settings.backend_rounds} timed rounds interleaved across candidates (batches of
{settings.max_batch_size} through `Backend.encode`); a cell is a candidate's best round in texts/s. Rule
(`serving.backends.decide`): the fastest that passed parity wins only when it is more than
{100 * CLEAR_ADVANTAGE:.0f}% faster than every other; otherwise the first of those within
{100 * CLEAR_ADVANTAGE:.0f}% of it in the order {' > '.join(PREFERENCE)}, fewer threads
first. Run: `python -m benchmarks.backend_choice`.

{table}

† timed fewer rounds: its best was under 1/{OUT_OF_REACH:g} of the leader's, out of reach.

- **{count} of {args.starts} starts picked {top}**{"" if count == args.starts else f" (all picks: {dict(picks)})"}.
- Reason given by the last start (`backend_reason` in /ready): {reasons[-1]}
""")


if __name__ == "__main__":
    main()
