"""`mptctl`: a typed client of the mpt-upgrades REST API and its command line.

It talks HTTP only: nothing here imports the service, the worker or the training library.
"""

from mptctl.client import Client, UpgradeRequest, UploadProgress
from mptctl.errors import ApiError
from mptctl.reports import ReleaseReport
from mptctl.resources import (
    Dataset,
    Deployment,
    Job,
    Prediction,
    PredictResult,
    Progress,
    Release,
    Score,
)

__all__ = [
    "ApiError",
    "Client",
    "Dataset",
    "Deployment",
    "Job",
    "PredictResult",
    "Prediction",
    "Progress",
    "Release",
    "ReleaseReport",
    "Score",
    "UpgradeRequest",
    "UploadProgress",
]
