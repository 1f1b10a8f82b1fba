"""GET /health (liveness) and GET /ready (readiness: what is served, or why nothing is); neither needs the token,
because the kubelet's probes cannot send one."""

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from ..dependencies import ManagerDep
from ..schemas import ReadyResponse

router = APIRouter(tags=["health"])


@router.get("/health")
async def health() -> dict[str, str]:
    """The process is up (a model may still be missing: see /ready)."""
    return {"status": "ok"}


@router.get("/ready", response_model=ReadyResponse,
            responses={503: {"description": "No release served yet; `detail` says why."}})
async def ready(manager: ManagerDep):
    """The served release, its model, backend and index; 503 until one loads."""
    served = manager.current
    if served is None:
        return JSONResponse(status_code=503, content={"status": manager.state.status,
                                                      "detail": manager.state.problem or "loading",
                                                      "notes": manager.state.notes})
    return {"status": "ready", **served.describe()}
