"""curate: web-scale image curation for self-supervised vision.

CommonCrawl snapshots -> image references -> downloads -> decode/validate -> dedup -> OCR text filter ->
WebDataset tar + Parquet shards -> a compact DINO trainer. See README.md; the layers and which module owns
what: docs/ARCHITECTURE.md.
"""

import os

# img2dataset pulls albumentations, which checks PyPI for updates on import unless told not to; we never
# reach out at run time, so this is set before anything can import it (the Makefile sets it too).
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

__version__ = "0.1.0"
