"""ReleaseStore and assemble_release on a real temporary directory: what gets released, what is refused,
and how the pointer moves (compare-and-swap, rollback, immutable manifests)."""

from __future__ import annotations

import json
import threading
from dataclasses import replace
from pathlib import Path

import pytest

from arxiv_assets.storage.artifacts import ArtifactRef
from arxiv_assets.storage.releases import (
    PointerMovedError,
    Promotion,
    Release,
    ReleaseError,
    ReleaseStore,
    assemble_release,
    main,
    write_checks,
)

MODEL = "a1b2c3d4e5f60718"
OTHER = "ffffffffffffffff"


def artifact(tmp_path: Path, name: str, fingerprint: str = MODEL, passed: bool = True) -> ArtifactRef:
    directory = tmp_path / name / "payload"
    directory.mkdir(parents=True)
    write_checks(directory, fingerprint, {f"{name}_check": passed}, {})
    return ArtifactRef(f"{tmp_path}/{name}/versions/v1", directory)


def reports(fingerprint: str = MODEL) -> dict[str, dict]:
    headline = {"fine-tuned": {"test/P@10": 0.7}, "base": {"test/P@10": 0.6}}
    return {name: {"model_fingerprint": fingerprint, "headline": headline} for name in ("ir_metrics",
                                                                                      "classifier_metrics")}


def promotion(decision: str = "challenger", champion: str | None = None) -> Promotion:
    return Promotion(decision, "passed every gate", MODEL, [], champion)


def release(store: ReleaseStore, name: str = "r") -> Release:
    return store.publish(Release(release_id=Release.new_id() + name, model_uri=f"/m/{name}", model_fingerprint=MODEL,
                                 index_uri=f"/i/{name}", decision="challenger", reason="test",
                                 replaces=store.current_id()))


def test_a_consistent_challenger_is_released_with_its_provenance(tmp_path: Path):
    onnx, index = artifact(tmp_path, "onnx_model"), artifact(tmp_path, "faiss_index")
    made = assemble_release(promotion(), MODEL, reports(), onnx, index, current=None, run_id="run-1")
    assert made is not None and (made.model_uri, made.index_uri) == (onnx.uri, index.uri)
    assert made.model_fingerprint == MODEL and made.replaces is None and made.run_id == "run-1"
    assert made.artifacts["onnx_model"]["checks"] == {"onnx_model_check": True}
    assert made.metrics["fine-tuned"]["test/P@10"] == 0.7


@pytest.mark.parametrize(("case", "expected"), [
    ("reports about other weights", "judged model ffffffffffffffff"),  # a model promoted without its evaluation
    ("export of another model", "onnx_model"),
    ("index of another model", "faiss_index"),
    ("failed parity check", "blocking check onnx_model_check failed"),
    ("champion changed since the evaluation", "re-materialize the evaluation"),
])
def test_inconsistent_inputs_are_refused_naming_the_problem(tmp_path: Path, case: str, expected: str):
    store = ReleaseStore(str(tmp_path / "releases"))
    current = release(store)
    onnx = artifact(tmp_path, "onnx_model", OTHER if case == "export of another model" else MODEL,
                    passed=case != "failed parity check")
    index = artifact(tmp_path, "faiss_index", OTHER if case == "index of another model" else MODEL)
    compared_with = None if case == "champion changed since the evaluation" else current.release_id
    with pytest.raises(ReleaseError, match=expected):
        assemble_release(promotion(champion=compared_with), MODEL,
                         reports(OTHER if case == "reports about other weights" else MODEL), onnx, index, current,
                         run_id="run-2")
    assert store.current_id() == current.release_id  # refused: the champion stays


def test_what_is_already_released_is_not_released_again(tmp_path: Path):
    store = ReleaseStore(str(tmp_path / "releases"))
    onnx, index = artifact(tmp_path, "onnx_model"), artifact(tmp_path, "faiss_index")
    first = store.publish(assemble_release(promotion(), MODEL, reports(), onnx, index, None, "run-1"))
    assert assemble_release(promotion(), MODEL, reports(), onnx, index, first, "run-2") is None


def test_the_pointer_moves_only_from_the_release_the_writer_read(tmp_path: Path):
    store = ReleaseStore(str(tmp_path / "releases"))
    first = release(store, "a")
    stale = Release(release_id=Release.new_id() + "b", model_uri="/m/b", model_fingerprint=MODEL, index_uri=None,
                    decision="challenger", reason="read CURRENT before another release moved it", replaces=None)
    with pytest.raises(PointerMovedError):
        store.publish(stale)  # it expected no release; `first` is current
    assert store.current_id() == first.release_id
    with pytest.raises(ReleaseError, match="immutable"):
        store.publish(replace(first, replaces=first.release_id))


def test_concurrent_releases_never_both_move_the_pointer(tmp_path: Path):
    store = ReleaseStore(str(tmp_path / "releases"))
    base = release(store, "base")
    outcomes: list[str] = []

    def attempt(name: str) -> None:
        try:
            release_of = Release(release_id=Release.new_id() + name, model_uri=f"/m/{name}", model_fingerprint=MODEL,
                                 index_uri=None, decision="challenger", reason="race", replaces=base.release_id)
            outcomes.append(ReleaseStore(str(tmp_path / "releases")).publish(release_of).release_id)
        except PointerMovedError:
            outcomes.append("refused")

    threads = [threading.Thread(target=attempt, args=(f"t{i}",)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [o for o in outcomes if o != "refused"]
    assert len(winners) == 1 and store.current_id() == winners[0]


def test_rollback_moves_back_and_the_cli_says_where(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    root = str(tmp_path / "releases")
    store = ReleaseStore(root)
    with pytest.raises(ReleaseError, match="nothing to roll back"):
        store.rollback()
    first, second, third = release(store, "1"), release(store, "2"), release(store, "3")
    assert store.rollback().release_id == second.release_id
    assert main(["rollback", "--releases-uri", root, "--to", first.release_id]) == 0
    assert store.current_id() == first.release_id and first.release_id in capsys.readouterr().out
    assert main(["rollback", "--releases-uri", root]) == 1  # the first release replaced nothing
    assert "name a release with --to" in capsys.readouterr().err
    assert main(["list", "--releases-uri", root]) == 0
    listing = capsys.readouterr().out.splitlines()
    assert [line.split()[1] for line in listing if line.startswith("*")] == [first.release_id]
    assert len(listing) == 3 and third.release_id in listing[-1]
    manifest = json.loads((tmp_path / "releases" / third.release_id / "release.json").read_text())
    assert manifest["replaces"] == second.release_id and manifest["created_at"].startswith("20")
