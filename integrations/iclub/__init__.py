"""iClub connector, built on the REST contract TecPet proposed (pending vendor confirmation)."""
from .client import IClubConnector

__all__ = ["IClubConnector"]
