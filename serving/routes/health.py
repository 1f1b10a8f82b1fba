"""GET /health (liveness, never needs a token) and GET /ready (what is served, or why nothing is)."""

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from ..dependencies import ManagerDep, require_token
from ..schemas import ReadyResponse

router = APIRouter(tags=["health"])


@router.get("/health")
async def health() -> dict[str, str]:
    """The process is up (a model may still be missing: see /ready)."""
    return {"status": "ok"}


@router.get("/ready", response_model=ReadyResponse, dependencies=[Depends(require_token)],
            responses={503: {"description": "No model served yet; `detail` says what to materialize."}})
async def ready(manager: ManagerDep):
    """The served model version (materialization run id and time), its backend and index; 503 until one loads."""
    served = manager.current
    if served is None:
        return JSONResponse(status_code=503, content={"status": manager.state.status,
                                                      "detail": manager.state.problem or "loading",
                                                      "passed_over": manager.state.notes})
    return {"status": "ready", **served.describe()}
