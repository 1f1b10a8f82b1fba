"""The service never serves a fine-tuned model that failed its evaluation: the real graph promotes the
untrained base model instead, exports and indexes it, releases it, and that release is what the
service resolves; the fine-tuned ``model`` itself is written but never reaches the pointer."""

from pathlib import Path

import dagster as dg
import numpy as np

from arxiv_assets.assets.export import faiss_index, onnx_model, paper_embeddings
from arxiv_assets.assets.promotion import promoted_model
from arxiv_assets.assets.release import release
from arxiv_assets.assets.scoring import score_models
from arxiv_assets.assets.training import model
from arxiv_assets.ml.embedding import BUNDLED_BASE_MODEL, encode, load_model
from arxiv_assets.ml.variants import model_fingerprint
from arxiv_assets.resources.io_manager import ArtifactIOManager
from arxiv_assets.resources.paper_source import PaperSource
from arxiv_assets.resources.releases import Releases
from arxiv_assets.storage.artifacts import ArtifactStore
from arxiv_assets_tests.conftest import (
    GRAPH_UP_TO_BASELINE,
    SAMPLE_FIRST_MONTH,
    SAMPLE_LAST_MONTH,
    SmokeArtifacts,
    partition_range_tags,
    smoke_run_config,
)
from serving.resolution import Resolver

DEPLOYMENT = [model, score_models, promoted_model, onnx_model, paper_embeddings, faiss_index, release]


def test_a_model_that_failed_its_evaluation_is_not_served_the_base_model_is(
        smoke_artifacts: SmokeArtifacts, tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path / "store"))  # a private copy: the shared smoke store stays as it is
    for key in ("splits", "pairs", "tfidf_baseline"):
        store.publish(key, smoke_artifacts.load(key))
    config = smoke_run_config("model", "score_models", "onnx_model", "faiss_index")
    config.ops["score_models"]["config"]["min_p10_margin"] = 1.0  # no model beats the baselines by 100 points
    # the trained weights as they are: averaged with the base, a 4-step model may legitimately come out as the
    # base itself (weight 0 on the eval split), and this test needs a fine-tuned model that is not the base
    config.ops["model"]["config"].update(interpolate_with_base=False, soup_loss=None)
    run = dg.materialize(
        [*GRAPH_UP_TO_BASELINE, *DEPLOYMENT], selection=DEPLOYMENT, instance=dg.DagsterInstance.ephemeral(),
        run_config=config, tags=partition_range_tags(SAMPLE_FIRST_MONTH, SAMPLE_LAST_MONTH),  # every month embedded
        resources={"io_manager": ArtifactIOManager(base_uri=str(tmp_path / "store")), "paper_source": PaperSource(),
                   "releases": Releases(base_uri=str(tmp_path / "releases"))},
    )
    assert run.success
    fine_tuned = store.local_payload(store.latest_uri("model"))  # the model itself was written...
    checks = {e.check_name: e.passed for e in run.get_asset_check_evaluations()}
    assert checks["in_distribution_p10_beats_base_and_tfidf"] is False
    resolution = Resolver(str(tmp_path / "releases")).resolve()  # ...but what is released is the base model
    assert resolution.release is not None and resolution.release.decision == "base"
    served = resolution.model.local_path()
    texts = ["Dark matter halos of dwarf galaxies", "A transformer for low-resource translation"]
    np.testing.assert_allclose(encode(load_model(served), texts), encode(load_model(BUNDLED_BASE_MODEL), texts),
                               atol=1e-5)
    assert model_fingerprint(served) != model_fingerprint(fine_tuned)
    assert resolution.index is not None  # exported and indexed like any other champion
