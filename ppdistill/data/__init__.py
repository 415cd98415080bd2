"""Datasets, transforms and the data-loader builder.

``build_dataloader(config, "Train")`` builds ``config["Train"]["dataset"]`` through the
``DATASETS`` registry and wraps it in a ``paddle.io.DataLoader`` configured by
``config["Train"]["loader"]``. Every module of this package (datasets and ``imaug``) is
imported here so the registries are filled.
"""
import numpy as np
import paddle

from ppdistill.data.imaug import create_operators, transform
from ppdistill.registry import DATASETS, ConfigError, suggest
from ppdistill.utils.autoimport import import_submodules

import_submodules(__name__, __path__)

__all__ = ["build_dataloader", "build_dataset", "create_operators", "transform", "default_collate",
           "EpochDistributedBatchSampler", "is_empty_batch", "report_skipped"]

#: value of the one-slot batch that stands for "every sample of this batch was bad" (eval)
EMPTY_BATCH_MARK = -7

LOADER_KEYS = ("shuffle", "drop_last", "batch_size_per_card", "num_workers",
               "use_shared_memory", "collate_fn")


def _collate_slot(values):
    """One batch slot: equal-shape arrays/numbers are stacked, anything else stays a list."""
    if all(isinstance(v, paddle.Tensor) for v in values):
        if len({tuple(v.shape) for v in values}) == 1:
            return paddle.stack(values)
        return list(values)
    if all(isinstance(v, (np.ndarray, np.generic, int, float, bool)) for v in values):
        arrays = [np.asarray(v) for v in values]
        if len({a.shape for a in arrays}) == 1 and arrays[0].dtype != object:
            return np.stack(arrays)
        return arrays
    return list(values)


def _empty_batch():
    return [np.array([EMPTY_BATCH_MARK], dtype="int64")]


def is_empty_batch(batch):
    """Whether ``batch`` is the marker of a batch whose samples were all bad (eval mode)."""
    if not isinstance(batch, (list, tuple)) or len(batch) != 1:
        return False
    slot = batch[0]
    slot = slot.numpy() if isinstance(slot, paddle.Tensor) else slot
    return isinstance(slot, np.ndarray) and slot.shape == (1,) and \
        int(slot[0]) == EMPTY_BATCH_MARK


def report_skipped(loader, logger, what):
    """Log (WARNING) and return how many bad samples ``loader``'s dataset skipped since the
    last report, e.g. ``epoch 3: 2 bad samples skipped``; nothing is logged for 0."""
    dataset = getattr(loader, "dataset", loader)
    take = getattr(dataset, "take_skip_count", None)
    count = take() if take else 0
    if count and logger is not None:
        logger.warning(f"{what}: {count} bad sample{'s' if count != 1 else ''} skipped "
                       f"(logger ppdistill.data names them)")
    return count


def default_collate(batch):
    """Collate a list of samples.

    A sample is the ``KeepKeys`` list (or a dict, or a single array). Each slot becomes one
    stacked array ``[B, ...]`` when its arrays share a shape (images, maps, ``shape``, labels),
    and a list of per-sample values otherwise (e.g. det eval ``polys`` with different box counts,
    or strings). ``None`` samples (bad ones, in eval mode) are dropped; if all are, the batch is
    the one-slot marker recognised by :func:`is_empty_batch`.
    """
    batch = [sample for sample in batch if sample is not None]
    if not batch:
        return _empty_batch()
    first = batch[0]
    if isinstance(first, (list, tuple)):
        return [_collate_slot([sample[i] for sample in batch]) for i in range(len(first))]
    if isinstance(first, dict):
        return {key: _collate_slot([sample[key] for sample in batch]) for key in first}
    return _collate_slot(list(batch))


def _dict_collate(batch):
    """Dict samples collated key by key (PaddleOCR's ``DictCollator`` name)."""
    batch = [sample for sample in batch if sample is not None]
    if not batch:
        return _empty_batch()
    return {key: _collate_slot([sample[key] for sample in batch]) for key in batch[0]}


COLLATE_FNS = {"ListCollator": default_collate, "DictCollator": _dict_collate}


class EpochDistributedBatchSampler(paddle.io.DistributedBatchSampler):
    """A ``DistributedBatchSampler`` that moves to the next epoch each time it is iterated, so
    shuffling differs between epochs (the trainer need not call ``set_epoch``) while every rank
    still draws the same permutation."""

    def __iter__(self):
        iterator = super().__iter__()
        self.set_epoch(self.epoch + 1)
        return iterator


def _loader_options(loader_cfg, path):
    if not isinstance(loader_cfg, dict):
        raise ConfigError(f"{path}: expected a mapping, got {loader_cfg!r}")
    for key in loader_cfg:
        if key not in LOADER_KEYS:
            raise ConfigError(f"{path}: unexpected key '{key}'{suggest(key, LOADER_KEYS)} "
                              f"(accepted: {', '.join(LOADER_KEYS)})")
    if "batch_size_per_card" not in loader_cfg:
        raise ConfigError(f"{path}: missing 'batch_size_per_card'")
    batch_size = loader_cfg["batch_size_per_card"]
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"{path}.batch_size_per_card: expected a positive integer, "
                          f"got {batch_size!r}")
    collate_name = loader_cfg.get("collate_fn")
    if collate_name is not None and collate_name not in COLLATE_FNS:
        raise ConfigError(f"{path}.collate_fn: unknown collate function {collate_name!r}"
                          f"{suggest(collate_name, COLLATE_FNS)} (available: "
                          f"{', '.join(COLLATE_FNS)})")
    return {
        "batch_size": batch_size,
        "shuffle": bool(loader_cfg.get("shuffle", False)),
        "drop_last": bool(loader_cfg.get("drop_last", False)),
        "num_workers": int(loader_cfg.get("num_workers", 0)),
        "use_shared_memory": bool(loader_cfg.get("use_shared_memory", True)),
        "collate_fn": COLLATE_FNS[collate_name] if collate_name else default_collate,
    }


def build_dataset(config, mode, seed=None):
    """Build ``config[mode]["dataset"]``; the dataset also gets ``global_config`` (the
    ``Global`` section), ``mode`` (``"train"``/``"eval"``) and, if it accepts one, ``seed``."""
    section = config.get(mode)
    if not isinstance(section, dict) or "dataset" not in section:
        raise ConfigError(f"{mode}: missing section '{mode}.dataset'")
    defaults = {"seed": seed} if seed is not None else None
    return DATASETS.build(section["dataset"], f"{mode}.dataset", defaults=defaults,
                          global_config=config.get("Global") or {}, mode=mode.lower())


def build_dataloader(config, mode, seed=None, distributed=None):
    """A ``paddle.io.DataLoader`` over ``config[mode]["dataset"]``.

    ``config[mode]["loader"]`` keys: ``batch_size_per_card`` (required), ``shuffle``,
    ``drop_last``, ``num_workers`` (default 0), ``use_shared_memory`` (default true) and
    ``collate_fn`` (``ListCollator`` = the default, or ``DictCollator``). Other keys raise a
    ConfigError. ``distributed=None`` means "Train and more than one process": each rank then
    reads its own share through a ``DistributedBatchSampler``; evaluation reads everything.
    The dataset's ``check_usable`` runs first (one good sample must load, else ``DataError``).
    """
    if mode not in ("Train", "Eval"):
        raise ConfigError(f"build_dataloader: mode must be 'Train' or 'Eval', got {mode!r}")
    options = _loader_options((config.get(mode) or {}).get("loader", {}), f"{mode}.loader")
    dataset = build_dataset(config, mode, seed=seed)
    if hasattr(dataset, "check_usable"):
        dataset.check_usable()  # an all-bad data set fails here, not inside the workers
    if distributed is None:
        distributed = mode == "Train" and paddle.distributed.get_world_size() > 1
    sampler_cls = EpochDistributedBatchSampler if distributed else paddle.io.BatchSampler
    batch_sampler = sampler_cls(dataset=dataset, batch_size=options["batch_size"],
                                shuffle=options["shuffle"], drop_last=options["drop_last"])
    return paddle.io.DataLoader(dataset=dataset, batch_sampler=batch_sampler,
                                num_workers=options["num_workers"], return_list=True,
                                use_shared_memory=options["use_shared_memory"],
                                collate_fn=options["collate_fn"])
