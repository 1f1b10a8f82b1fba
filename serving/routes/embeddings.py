"""POST /embed and POST /find_similar."""

import numpy as np
from fastapi import APIRouter

from ..dependencies import ManagerDep, SettingsDep, check_k, check_texts
from ..schemas import EmbedRequest, EmbedResponse, FindSimilarRequest, FindSimilarResponse, ScoredDocument

router = APIRouter(tags=["embeddings"])


@router.post("/embed", response_model=EmbedResponse)
async def embed(body: EmbedRequest, manager: ManagerDep, settings: SettingsDep) -> EmbedResponse:
    """L2-normalized embeddings of the texts, in order."""
    texts = check_texts(body.texts, settings)
    served, vectors, _ = await manager.embed(texts)
    return EmbedResponse(embeddings=vectors.tolist(), dim=vectors.shape[1], backend=served.backend.name,
                         model_version=served.version.release_id)


@router.post("/find_similar", response_model=FindSimilarResponse)
async def find_similar(body: FindSimilarRequest, manager: ManagerDep, settings: SettingsDep) -> FindSimilarResponse:
    """The documents ranked by cosine similarity to the query, best first."""
    (query,) = check_texts([body.query], settings, field="query")
    documents = check_texts(body.documents, settings, field="documents")
    top_k = check_k(body.top_k, settings, field="top_k") if body.top_k is not None else len(documents)
    served, vectors, _ = await manager.embed([query, *documents])
    scores = vectors[1:] @ vectors[0]
    order = np.argsort(-scores, kind="stable")[:top_k]
    return FindSimilarResponse(
        results=[ScoredDocument(index=int(i), document=documents[i], score=float(scores[i])) for i in order],
        model_version=served.version.release_id,
    )
