"""Request and response bodies. Types are checked here (strings only); limits that are settings are
checked by ``validation.check_texts`` so the error can name the setting."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictStr


class EmbedRequest(BaseModel):
    texts: list[StrictStr] = Field(description="Texts to embed (a paper is best embedded as 'title. abstract').")


class EmbedResponse(BaseModel):
    embeddings: list[list[float]] = Field(description="One L2-normalized vector per text, in order.")
    dim: int
    backend: str
    model_version: str = Field(description="Id of the served release.")


class FindSimilarRequest(BaseModel):
    query: StrictStr
    documents: list[StrictStr]
    top_k: int | None = Field(default=None, ge=1, description="Return only the best k documents.")


class ScoredDocument(BaseModel):
    index: int = Field(description="Position of the document in the request.")
    document: str
    score: float = Field(description="Cosine similarity to the query.")


class FindSimilarResponse(BaseModel):
    results: list[ScoredDocument]
    model_version: str


class SearchRequest(BaseModel):
    query: StrictStr
    k: int = Field(default=10, ge=1)


class Paper(BaseModel):
    id: str
    title: str
    subject: str
    score: float


class SearchResponse(BaseModel):
    results: list[Paper]
    model_version: str
    index_version: str


class OpenAIEmbeddingRequest(BaseModel):
    """The OpenAI embeddings request; token-id inputs are not supported (send strings)."""

    model_config = ConfigDict(extra="ignore")

    input: StrictStr | list[StrictStr]
    model: StrictStr | None = None
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1)
    user: StrictStr | None = None


class OpenAIEmbedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class OpenAIUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class OpenAIEmbeddingResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[OpenAIEmbedding]
    model: str
    usage: OpenAIUsage


class OpenAIModel(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "arxiv-embeddings"


class OpenAIModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[OpenAIModel]


class ReadyResponse(BaseModel):
    status: str
    release: str
    model: dict[str, Any]
    backend: str
    threads: int
    dim: int
    max_seq_length: int
    backend_reason: str
    backend_measurements: list[dict[str, Any]]
    index: dict[str, Any] | None
    index_problem: str | None


class ReloadResponse(BaseModel):
    model_config = ConfigDict(extra="allow")

    changed: bool
    status: str
    detail: str | None = None
