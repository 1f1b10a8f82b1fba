"""POST /admin/reload: look for a newer passing materialization now instead of at the next poll."""

from fastapi import APIRouter

from ..dependencies import ManagerDep
from ..schemas import ReloadResponse

router = APIRouter(prefix="/admin", tags=["operations"])


@router.post("/reload", response_model=ReloadResponse)
async def reload(manager: ManagerDep) -> ReloadResponse:
    """Swap to the newest passing model and index if they changed (also retries a version that failed to load)."""
    return ReloadResponse(**await manager.reload(retry_failed=True))
