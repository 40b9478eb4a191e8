"""Training sparse dictionaries: the loop, losses live on the architectures, schedules,
dead-latent tracking, resampling, checkpoints and exact resume, activation sources."""

from saekit.training.checkpoint import CHECKPOINT_NAME, load_checkpoint, save_checkpoint
from saekit.training.dead import DeadLatentTracker
from saekit.training.loop import Trainer, run_names, train
from saekit.training.schedule import lr_factor
from saekit.training.sources import BatchSource, TensorSource, as_source

__all__ = [
    "CHECKPOINT_NAME",
    "BatchSource",
    "DeadLatentTracker",
    "TensorSource",
    "Trainer",
    "as_source",
    "load_checkpoint",
    "lr_factor",
    "run_names",
    "save_checkpoint",
    "train",
]
