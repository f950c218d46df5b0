"""recops_server: the FastAPI model server of Recops (``recops-serve``).

Nothing is loaded at import: ``create_app(settings)`` builds the app and the model is loaded in its
lifespan. MLflow is imported only when the model comes from the registry (``models:/...``).
"""

from .app import create_app
from .settings import ServerSettings

__all__ = ["ServerSettings", "create_app"]
