"""POST /admin/reload: read the release pointer now instead of at the next poll."""

from fastapi import APIRouter

from ..dependencies import ManagerDep
from ..schemas import ReloadResponse

router = APIRouter(prefix="/admin", tags=["operations"])


@router.post("/reload", response_model=ReloadResponse)
async def reload(manager: ManagerDep) -> ReloadResponse:
    """Swap to the current release if it changed (also retries a release that failed to load)."""
    return ReloadResponse(**await manager.reload(retry_failed=True))
