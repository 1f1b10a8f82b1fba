"""The service never serves a fine-tuned model that failed its evaluation: it serves what was promoted,
which is then the untrained base model, and never the ``model`` asset itself."""

from pathlib import Path

import dagster as dg
import numpy as np

from arxiv_assets.assets.evaluation import evaluation
from arxiv_assets.assets.promotion import promoted_model
from arxiv_assets.assets.training import model
from arxiv_assets.ml.embedding import BUNDLED_BASE_MODEL, encode, load_model
from arxiv_assets.ml.export import model_fingerprint
from arxiv_assets.resources.artifact_store import ArtifactIOManager, ArtifactStore
from arxiv_assets.resources.paper_source import PaperSource
from arxiv_assets_tests.conftest import GRAPH_UP_TO_BASELINE, SmokeArtifacts, smoke_run_config
from serving.resolution import Resolver


def test_a_model_that_failed_its_evaluation_is_not_served_the_base_model_is(
        smoke_artifacts: SmokeArtifacts, tmp_path: Path, instance: dg.DagsterInstance, dagster_home: Path) -> None:
    store = ArtifactStore(str(tmp_path / "store"))  # a private copy: the shared smoke store stays as it is
    for key in ("splits", "pairs", "tfidf_baseline"):
        store.publish(key, smoke_artifacts.load(key))
    config = smoke_run_config("model", "evaluation")
    config.ops["evaluation"]["config"]["min_p10_margin"] = 1.0  # no model beats the baselines by 100 points
    run = dg.materialize(
        [*GRAPH_UP_TO_BASELINE, model, evaluation, promoted_model], selection=[model, evaluation, promoted_model],
        instance=instance, run_config=config,
        resources={"io_manager": ArtifactIOManager(base_uri=str(tmp_path / "store")), "paper_source": PaperSource()},
    )
    fine_tuned = store.local_payload(store.latest_uri("model"))  # the model itself was written...
    checks = {e.check_name: e.passed for e in run.get_asset_check_evaluations()}
    assert checks["in_distribution_p10_beats_base_and_tfidf"] is False
    resolution = Resolver(str(dagster_home)).resolve()  # ...but what the service resolves is the promoted base
    assert resolution.model is not None and resolution.model.asset == "promoted_model"
    served = resolution.model.local_path()
    texts = ["Dark matter halos of dwarf galaxies", "A transformer for low-resource translation"]
    np.testing.assert_allclose(encode(load_model(served), texts), encode(load_model(BUNDLED_BASE_MODEL), texts),
                               atol=1e-5)
    assert model_fingerprint(served) != model_fingerprint(fine_tuned)
