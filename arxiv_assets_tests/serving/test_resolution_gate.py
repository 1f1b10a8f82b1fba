"""The service never serves a model whose evaluation failed a blocking check in its run."""

from pathlib import Path

import dagster as dg

from arxiv_assets.assets.evaluation import evaluation
from arxiv_assets.assets.training import model
from arxiv_assets.resources.artifact_store import ArtifactIOManager, ArtifactStore
from arxiv_assets.resources.paper_source import PaperSource
from arxiv_assets_tests.conftest import GRAPH_UP_TO_BASELINE, SmokeArtifacts, smoke_run_config
from serving.resolution import Resolver


def test_a_model_that_failed_its_evaluation_is_not_served(smoke_artifacts: SmokeArtifacts, tmp_path: Path,
                                                           instance: dg.DagsterInstance, dagster_home: Path) -> None:
    store = ArtifactStore(str(tmp_path / "store"))  # a private copy: the shared smoke store stays as it is
    for key in ("splits", "pairs", "tfidf_baseline"):
        store.publish(key, smoke_artifacts.load(key))
    config = smoke_run_config("model", "evaluation")
    config.ops["evaluation"]["config"]["min_p10_margin"] = 1.0  # no model beats the baselines by 100 points
    run = dg.materialize(
        [*GRAPH_UP_TO_BASELINE, model, evaluation], selection=[model, evaluation], instance=instance,
        resources={"io_manager": ArtifactIOManager(base_uri=str(tmp_path / "store")), "paper_source": PaperSource()},
        run_config=config, raise_on_error=False,
    )
    assert run.asset_materializations_for_node("model")  # the model itself was written...
    notes: list[str] = []
    assert Resolver(str(dagster_home)).latest_passing("model", notes) is None  # ...but is not served
    assert any("fine_tuned_beats_baselines_p10 failed" in note for note in notes)
