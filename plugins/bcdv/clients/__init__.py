"""Clients for Business Central API v2.0 and Dataverse Web API v9.2 (requests + msal)."""

from bcdv.clients.business_central import BusinessCentralClient
from bcdv.clients.dataverse import DataverseClient

__all__ = ["BusinessCentralClient", "DataverseClient"]
