"""Evaluation: run a model over a loader, post-process, and accumulate the metric."""
import logging
import time

import numpy as np
import paddle
from tqdm import tqdm


def to_numpy(item):
    """A batch slot as numpy: tensors converted, lists converted element-wise."""
    if isinstance(item, paddle.Tensor):
        return item.numpy()
    if isinstance(item, (list, tuple)):
        return [to_numpy(x) for x in item]
    return item


def evaluate(model, loader, post_process, metric, show_progress=True):
    """Return the metric dict (plus ``fps``) of ``model`` on ``loader``.

    Generic over tasks: ``preds = model(batch[0])``; ``post_process(preds, batch[1])`` (the
    shape list for detection, the label for recognition); ``metric(post_result, batch)``.
    The model is put back in training mode afterwards if it was training.

    Bad samples (undecodable image, unparsable label...) are skipped by the dataset, never
    replaced by another sample; their number is logged at the end (``eval: 2 bad samples
    skipped``) and is ``skipped_samples`` of the returned dict when not zero.
    """
    from ppdistill.data import is_empty_batch, report_skipped
    was_training = model.training
    model.eval()
    metric.reset()
    total_time, total_samples = 0.0, 0
    with paddle.no_grad():
        for batch in tqdm(loader, desc="eval", disable=not show_progress, leave=False):
            if is_empty_batch(batch):
                continue
            images = batch[0]
            start = time.time()
            preds = model(images)
            batch_numpy = [to_numpy(item) for item in batch]
            post_result = post_process(preds, batch_numpy[1])
            total_time += time.time() - start
            total_samples += int(images.shape[0])
            metric(post_result, batch_numpy)
    result = metric.get_metric()
    result["fps"] = total_samples / total_time if total_time > 0 else 0.0
    skipped = report_skipped(loader, logging.getLogger("ppdistill"), "eval")
    if skipped:
        result["skipped_samples"] = skipped
    if was_training:
        model.train()
    return result


def format_metrics(metrics):
    return ", ".join(f"{k}: {v:.6f}" if isinstance(v, (float, np.floating)) else f"{k}: {v}"
                     for k, v in metrics.items())
