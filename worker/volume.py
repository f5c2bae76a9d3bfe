"""The dataset cache of a RunPod worker: on the endpoint's network volume when one is mounted, so every
worker shares one download of each dataset, with the image's baked cache still read first."""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

# where RunPod mounts an endpoint's network volume; the variable moves it (tests)
VOLUME_ENV = "RUNPOD_VOLUME_PATH"
DEFAULT_VOLUME = "/runpod-volume"
# the Keras cache the image was built with, kept readable once KERAS_HOME moves to the volume
IMAGE_CACHE_ENV = "HPO_IMAGE_KERAS_HOME"


def share_dataset_cache() -> Path | None:
    """Point ``KERAS_HOME`` at ``<volume>/hpo/keras`` when the network volume is a writable directory.

    The cache ``KERAS_HOME`` named before (the image's, with its prefetched datasets) goes to
    ``HPO_IMAGE_KERAS_HOME``, where ``worker.downloads`` looks first. Call it before Keras is imported.
    Returns the new cache, or None (no usable volume: the image's cache stays).
    """
    volume = Path(os.environ.get(VOLUME_ENV) or DEFAULT_VOLUME)
    if not (volume.is_dir() and os.access(volume, os.W_OK | os.X_OK)):
        return None
    shared = volume / "hpo" / "keras"
    try:
        shared.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        log.warning(f"datasets stay in the image's cache: cannot create {shared} ({exc})")
        return None
    image_cache = os.environ.get("KERAS_HOME")
    if image_cache and Path(image_cache) != shared:
        os.environ[IMAGE_CACHE_ENV] = image_cache
    os.environ["KERAS_HOME"] = str(shared)
    log.info(f"datasets are cached on the network volume at {shared}")
    return shared
