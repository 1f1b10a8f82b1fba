"""POST /search: the nearest papers in the served faiss_index."""

import asyncio

from fastapi import APIRouter

from ..dependencies import ManagerDep, SettingsDep, check_k, check_texts
from ..schemas import Paper, SearchRequest, SearchResponse

router = APIRouter(tags=["search"])


@router.post("/search", response_model=SearchResponse,
             responses={503: {"description": "No model, or no faiss_index built by the served model."}})
async def search(body: SearchRequest, manager: ManagerDep, settings: SettingsDep) -> SearchResponse:
    """The k papers closest to the query (id, title, primary subject, cosine score), best first."""
    (query,) = check_texts([body.query], settings, field="query")
    k = check_k(body.k, settings)
    manager.require().require_index()  # fail fast, before queueing the query, if there is nothing to search
    served, vectors, _ = await manager.embed([query])
    index = served.require_index()  # the index that belongs to the model which embedded the query
    # In a worker thread: FAISS releases the GIL while it searches (concurrent searches of one index are safe),
    # so one slow exact search no longer holds every other request on the event loop behind it.
    (hits,) = await asyncio.to_thread(index.search, vectors, k)
    return SearchResponse(results=[Paper(**hit) for hit in hits],
                          model_version=served.version.release_id, index_version=served.index_version.release_id)
