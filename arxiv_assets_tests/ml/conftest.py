"""Fixtures of the ML tests: small real splits of the bundled sample."""

import pandas as pd
import pytest

from arxiv_assets.ml.splits import SplitSettings, make_splits

# Three of them (cs.CL, astro-ph.HE, hep-ph) are unseen subjects by the hash of their names; the last four
# have 18-24 papers in the sample, too few to split: the rare slice.
EVERY_SLICE_SUBJECTS = ["cs.CV", "cs.CL", "astro-ph.GA", "astro-ph.CO", "gr-qc", "cs.RO", "cs.AI", "astro-ph.HE",
                        "hep-ph", "physics.plasm-ph", "q-bio.NC", "cs.SI", "physics.space-ph"]


@pytest.fixture(scope="session")
def every_slice_splits(sample_papers: pd.DataFrame) -> pd.DataFrame:
    """Thirteen subjects' papers (at most 120 each) split so that every slice has papers: test, unseen, mixed,
    new and rare."""
    papers = sample_papers[sample_papers["primary_subject"].isin(EVERY_SLICE_SUBJECTS)]
    settings = SplitSettings(min_papers_per_subject=50, max_papers_per_subject=120, eval_fraction=0.1,
                             test_fraction=0.3, probe_papers_per_subject=20, unseen_subject_fraction=1 / 3,
                             unseen_papers_per_subject=None, new_months=2)
    return make_splits(papers, settings).papers
