"""Scale-out on torch.distributed (torchrun; NCCL on GPUs, gloo on CPUs): the only package of
saekit that imports torch.distributed. Each mode reaches the single-process ``Trainer`` as a
strategy object (``saekit.training.strategy``), so the training loop itself has no ranks.

* ``comm``: joining the group from torchrun's environment; collectives that give up after the
  group timeout with one sentence (``DistributedError``), identities without a group.
* ``data_parallel``: the ``DataParallel`` strategy (every rank every dictionary, 1/N of each
  batch, gradients all-reduced), ``make_trainer`` and ``train_data_parallel``.
* ``latent_sharded`` and ``sharded_topk``: the ``LatentSharded`` strategy and ``ShardedTopK``,
  a ``TopKDictionary`` whose latents are split across ranks (too wide for one device).
* ``hookpoints``: dictionaries for different hookpoints on different ranks, the activations
  produced once on rank 0 and sent to their owner (``train_hookpoints``).

See docs/scaling.md.
"""

from saekit.parallel.comm import (
    DEFAULT_TIMEOUT_S,
    DistInfo,
    DistributedError,
    init_distributed,
    is_distributed_launch,
    shutdown,
)
from saekit.parallel.data_parallel import (
    DataParallel,
    DataParallelTrainer,
    data_part,
    make_trainer,
    train_data_parallel,
)
from saekit.parallel.hookpoints import (
    HookpointJob,
    HookpointSource,
    LiveHookSource,
    TensorHookSource,
    train_hookpoints,
)
from saekit.parallel.latent_sharded import LatentSharded, LatentShardedTrainer
from saekit.parallel.sharded_topk import ShardedTopK, latent_bounds

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "DataParallel",
    "DataParallelTrainer",
    "DistInfo",
    "DistributedError",
    "HookpointJob",
    "HookpointSource",
    "LatentSharded",
    "LatentShardedTrainer",
    "LiveHookSource",
    "ShardedTopK",
    "TensorHookSource",
    "data_part",
    "init_distributed",
    "is_distributed_launch",
    "latent_bounds",
    "make_trainer",
    "shutdown",
    "train_data_parallel",
    "train_hookpoints",
]
