"""POST /v1/embeddings and GET /v1/models: the OpenAI embeddings API, so OpenAI clients work unchanged."""

import base64
import time

import numpy as np
from fastapi import APIRouter, HTTPException, status

from ..dependencies import ManagerDep, SettingsDep, check_texts
from ..schemas import OpenAIEmbedding, OpenAIEmbeddingRequest, OpenAIEmbeddingResponse, OpenAIModel, OpenAIModelList
from ..schemas import OpenAIUsage as Usage

router = APIRouter(prefix="/v1", tags=["openai"])


@router.post("/embeddings", response_model=OpenAIEmbeddingResponse)
async def create_embeddings(body: OpenAIEmbeddingRequest, manager: ManagerDep,
                            settings: SettingsDep) -> OpenAIEmbeddingResponse:
    """``input`` a string or a list of strings; ``encoding_format`` float or base64 (little-endian float32); any
    ``model`` gets the served one (named in the response), unless ``strict_model_name``."""
    if settings.strict_model_name and body.model != settings.served_model_name:
        raise HTTPException(status.HTTP_404_NOT_FOUND,
                            f"model {body.model!r} is not served here; use {settings.served_model_name!r}")
    texts = check_texts([body.input] if isinstance(body.input, str) else body.input, settings, field="input")
    served = manager.require()
    if body.dimensions is not None and body.dimensions != served.backend.dim:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                            f"dimensions must be {served.backend.dim} (this model's size) or omitted")
    served, vectors, tokens = await manager.embed(texts)
    if body.encoding_format == "base64":
        encoded = [base64.b64encode(np.ascontiguousarray(v, dtype="<f4").tobytes()).decode() for v in vectors]
    else:
        encoded = vectors.tolist()
    return OpenAIEmbeddingResponse(
        data=[OpenAIEmbedding(index=i, embedding=e) for i, e in enumerate(encoded)],
        model=settings.served_model_name, usage=Usage(prompt_tokens=sum(tokens), total_tokens=sum(tokens)),
    )


@router.get("/models", response_model=OpenAIModelList)
async def list_models(manager: ManagerDep, settings: SettingsDep) -> OpenAIModelList:
    served = manager.current
    created = int(served.loaded_at) if served else int(time.time())
    return OpenAIModelList(data=[OpenAIModel(id=settings.served_model_name, created=created)] if served else [])
