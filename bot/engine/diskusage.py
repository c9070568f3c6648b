"""Image disk usage from /system/df, in both shapes the engine has spoken.

API < 1.52 answers {LayersSize, Images[...]}; API ≥ 1.53 (Engine 29) answers
{ImageUsage: {TotalSize, Reclaimable, Items (verbose only)}, ...} (moby daemon/server/router/system).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import docker

from bot.engine.dfcall import system_df


@dataclass(frozen=True)
class ImageDisk:
    size: int  # all the image's layers
    shared: int  # bytes in layers other images use too (-1 when the engine does not say)

    @property
    def unique(self) -> int:
        """What deleting this image alone would free."""
        return self.size - max(self.shared, 0)


@dataclass(frozen=True)
class ImagesUsage:
    total: int  # bytes of all image layers on disk, each layer once
    images: dict[str, ImageDisk]  # by full image ID


def _items(df: dict[str, Any]) -> list[dict[str, Any]]:
    if df.get("Images") is not None:
        return df["Images"]
    return (df.get("ImageUsage") or {}).get("Items") or []


def images_usage(api: docker.APIClient, max_age: float = 0.0) -> ImagesUsage:
    """From a df call started after this one was made; views may accept `max_age` seconds older."""
    df = system_df(api, {"type": "image", "verbose": "1"}, max_age)
    if "ImageUsage" in df and df.get("LayersSize") is None:
        total = int(df["ImageUsage"].get("TotalSize") or 0)
    else:
        total = int(df.get("LayersSize") or 0)
    images = {
        item["Id"]: ImageDisk(size=int(item.get("Size") or 0), shared=int(item.get("SharedSize", -1)))
        for item in _items(df)
    }
    return ImagesUsage(total=total, images=images)
