"""Training one model: SGD with a cosine schedule, teachers, hooks and checkpoints."""

from mpt.train.config import TrainConfig, resolve_device
from mpt.train.hooks import EpochStats, Hooks, StepStats, TrainingStopped
from mpt.train.teachers import Teacher, TeacherCache
from mpt.train.trainer import Trainer, TrainResult, fit

__all__ = [
    "EpochStats",
    "Hooks",
    "StepStats",
    "Teacher",
    "TeacherCache",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "TrainingStopped",
    "fit",
    "resolve_device",
]
