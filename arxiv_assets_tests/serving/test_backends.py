"""How the service picks its backend: the decision rule on given timings, and the steady-state measurement
on the real bundled model and its real ONNX export.

What is asserted holds on every CPU class (AVX2-only, AVX512-BF16, AMX): the rule's outcome for given
timings, and that the measured choice passed parity and is the rule's answer to what was measured, never
which backend this machine happens to favour.
"""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

import pytest

import serving.backends as backends_module
from arxiv_assets.ml import variants as variants_module
from arxiv_assets.ml.variants import EXPORT_MANIFEST, openvino_config
from serving.backends import (
    PREFERENCE,
    BackendError,
    Measurement,
    available_backends,
    choose_backend,
    decide,
)


def measured(backend: str, texts_per_s: float, threads: int = 1, min_cosine: float | None = 1.0,
             threshold: float | None = 0.98) -> Measurement:
    passed = threshold is None or (min_cosine is not None and min_cosine >= threshold)
    return Measurement(backend, threads, texts_per_s, min_cosine, threshold, passed)


def label(measurement: Measurement) -> tuple[str, int]:
    return measurement.backend, measurement.threads


def test_a_clearly_faster_backend_wins_and_the_reason_names_the_runner_up():
    chosen, reason = decide([measured("torch-fp32", 60.0, threshold=None), measured("onnx-fp32", 62.0),
                             measured("onnx-int8", 100.0)])
    assert label(chosen) == ("onnx-int8", 1)
    assert "clearly fastest" in reason and "onnx-fp32 x1" in reason and "61%" in reason


def test_within_the_margin_the_more_precise_backend_wins_whichever_is_fastest():
    timings = {"torch-fp32": 98.0, "onnx-fp32": 100.0, "torch-bf16": 104.0, "onnx-int8": 105.0}
    chosen, reason = decide([measured(name, speed) for name, speed in timings.items()])
    assert label(chosen) == ("torch-fp32", 1)
    assert "within 10%" in reason and " > ".join(PREFERENCE) in reason
    # An exact tie goes the same way, whatever order the measurements come in.
    tie = [measured("onnx-int8", 80.0), measured("onnx-fp32", 80.0)]
    assert label(decide(tie)[0]) == label(decide(tie[::-1])[0]) == ("onnx-fp32", 1)


def test_of_two_thread_counts_within_the_margin_the_fewer_wins():
    chosen, _ = decide([measured("onnx-int8", 100.0, threads=2), measured("onnx-int8", 95.0, threads=1)])
    assert label(chosen) == ("onnx-int8", 1)
    chosen, _ = decide([measured("onnx-int8", 160.0, threads=2), measured("onnx-int8", 95.0, threads=1)])
    assert label(chosen) == ("onnx-int8", 2)


def test_noise_below_the_margin_never_changes_the_choice():
    """What makes repeated starts agree: each speed off by up to 2% either way, in every combination."""
    close = {"torch-fp32": 100.0, "onnx-fp32": 102.0, "onnx-int8": 104.0}  # no clear winner
    clear = {"torch-fp32": 60.0, "onnx-fp32": 62.0, "onnx-int8": 100.0}  # int8 clearly fastest
    for timings, expected in ((close, "torch-fp32"), (clear, "onnx-int8")):
        for noise in itertools.product((0.98, 1.0, 1.02), repeat=len(timings)):
            runs = [measured(name, speed * factor)
                    for (name, speed), factor in zip(timings.items(), noise, strict=True)]
            assert decide(runs)[0].backend == expected, noise


def test_a_backend_that_failed_parity_is_never_chosen_however_fast():
    bf16 = measured("torch-bf16", 500.0, min_cosine=0.95)
    chosen, reason = decide([measured("torch-fp32", 50.0, threshold=None), bf16])
    assert label(chosen) == ("torch-fp32", 1) and not bf16.passed
    assert "rejected for parity: torch-bf16 x1 (min cosine 0.9500 < 0.98)" in reason
    failed = Measurement("onnx-int8", 1, None, None, 0.98, False, error="no such file")
    with pytest.raises(BackendError, match="no backend could run"):
        decide([bf16, failed])


def test_a_pinned_backend_is_used_even_when_another_is_faster():
    runs = [measured("onnx-int8", 50.0, threads=1, threshold=None), measured("onnx-int8", 80.0, threads=2,
                                                                             threshold=None),
            measured("torch-fp32", 400.0, threshold=None)]
    chosen, reason = decide(runs, pinned="onnx-int8")
    assert label(chosen) == ("onnx-int8", 2) and reason.startswith("pinned onnx-int8; ")
    with pytest.raises(BackendError):
        decide([measured("torch-fp32", 400.0, threshold=None)], pinned="onnx-int8")


def test_the_margin_is_a_clear_advantage_of_ten_percent():
    just_inside = [measured("onnx-fp32", 100.0), measured("onnx-int8", 109.0)]
    just_outside = [measured("onnx-fp32", 100.0), measured("onnx-int8", 111.0)]
    assert decide(just_inside)[0].backend == "onnx-fp32"
    assert decide(just_outside)[0].backend == "onnx-int8"


def test_the_measured_choice_passed_parity_and_is_the_rules_answer(onnx_dir: Path):
    choice = choose_backend(onnx_dir, n_probe=8, rounds=2, batch_size=4)
    measurements = {label(m): m for m in choice.measurements}
    assert {name for name, _ in measurements} == set(available_backends(onnx_dir))
    for m in measurements.values():  # a warm-up, then timed rounds (fewer once out of reach): the best one counts
        assert m.error is None
        if m.passed:
            assert 1 <= len(m.rounds_texts_per_s) <= 2 and m.texts_per_s == max(m.rounds_texts_per_s) > 0
        else:
            assert m.texts_per_s is None and m.rounds_texts_per_s == ()
    assert measurements[("onnx-fp32", 1)].min_cosine > 0.999 and measurements[("onnx-int8", 1)].min_cosine > 0.98
    assert measurements[("openvino-int8", 1)].min_cosine > 0.98
    assert measurements[("openvino-fp32", 1)].min_cosine > 0.999
    chosen = measurements[(choice.backend.name, choice.backend.threads)]
    assert chosen.passed and len(chosen.rounds_texts_per_s) == 2  # the winner ran every round
    assert (label(chosen), choice.reason) == (label(decide(choice.measurements)[0]), decide(choice.measurements)[1])


def test_pinned_backend_and_threads_load_without_measuring(onnx_dir: Path):
    choice = choose_backend(onnx_dir, pinned="onnx-int8", threads=1)
    assert (choice.backend.name, choice.backend.threads, choice.measurements) == ("onnx-int8", 1, [])
    assert "nothing measured" in choice.reason


def test_of_the_two_int8_backends_openvinos_static_int8_wins_within_the_margin():
    """OpenVINO's static int8 is the closer of the two int8 variants to fp32 by cosine (RESULTS.md), so within
    the margin it comes first; clearly faster, ONNX Runtime's dynamic int8 still wins."""
    close = [measured("onnx-int8", 104.0), measured("openvino-int8", 100.0)]
    assert decide(close)[0].backend == decide(close[::-1])[0].backend == "openvino-int8"
    assert decide([measured("onnx-int8", 120.0), measured("openvino-int8", 100.0)])[0].backend == "onnx-int8"
    assert decide([measured("torch-bf16", 100.0), measured("openvino-int8", 105.0)])[0].backend == "torch-bf16"


def test_of_two_backends_of_one_precision_the_references_runtime_comes_first_within_the_margin():
    """OpenVINO's float variants rank after the runtimes of their precision that came before them; a clear lead
    still wins."""
    assert decide([measured("onnx-fp32", 100.0), measured("openvino-fp32", 105.0)])[0].backend == "onnx-fp32"
    assert decide([measured("onnx-fp32", 100.0), measured("openvino-fp32", 115.0)])[0].backend == "openvino-fp32"
    assert decide([measured("torch-bf16", 100.0), measured("openvino-bf16", 105.0)])[0].backend == "torch-bf16"
    assert decide([measured("torch-bf16", 30.0), measured("openvino-bf16", 52.0)])[0].backend == "openvino-bf16"
    assert decide([measured("openvino-bf16", 100.0), measured("openvino-int8", 105.0)])[0].backend == "openvino-bf16"


@pytest.mark.parametrize("native_bf16", [True, False])
def test_openvinos_bf16_is_offered_and_asked_for_only_where_the_cpu_has_native_bf16(
        onnx_dir: Path, native_bf16: bool, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(backends_module, "cpu_has_fast_bf16", lambda: native_bf16)
    monkeypatch.setattr(variants_module, "cpu_has_fast_bf16", lambda: native_bf16)
    offered = available_backends(onnx_dir)
    assert "openvino-fp32" in offered and ("openvino-bf16" in offered) == native_bf16
    hint = "bf16" if native_bf16 else "f32"
    assert openvino_config("openvino-bf16", 2)["INFERENCE_PRECISION_HINT"] == hint
    assert openvino_config("openvino-int8", 2)["INFERENCE_PRECISION_HINT"] == hint  # its unquantized layers
    assert openvino_config("openvino-fp32", None) == {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}
    if not native_bf16:
        with pytest.raises(BackendError, match="openvino-bf16 is not fast on this machine"):
            choose_backend(onnx_dir, pinned="openvino-bf16", threads=1)


def test_the_openvino_variant_is_offered_only_where_the_export_has_it(onnx_dir: Path, tmp_path: Path):
    assert "openvino-int8" in available_backends(onnx_dir)
    choice = choose_backend(onnx_dir, pinned="openvino-int8", threads=1)
    vectors, tokens = choice.backend.encode(["Dark matter halos in dwarf galaxies", "Graph neural networks"])
    assert vectors.shape == (2, choice.backend.dim) and all(n > 2 for n in tokens)
    # An export made before the variant existed (its manifest names no OpenVINO file) serves without it.
    older = tmp_path / "older-export"
    shutil.copytree(onnx_dir, older, ignore=shutil.ignore_patterns("openvino"))
    manifest = older / EXPORT_MANIFEST
    manifest.write_text(json.dumps({k: v for k, v in json.loads(manifest.read_text()).items()
                                    if not k.startswith("openvino")}))
    assert not {"openvino-int8", "openvino-fp32", "openvino-bf16"} & set(available_backends(older))
    for variant in ("openvino-int8", "openvino-fp32"):
        with pytest.raises(BackendError, match=f"{variant} is not in the export"):
            choose_backend(older, pinned=variant, threads=1)
