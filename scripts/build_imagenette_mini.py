"""Build the embedded ``imagenette-mini`` dataset from ``../shared/datasets/imagenette64``.

Keeps the first 200 train and the first 50 val files per class (sorted file-name order), resizes
64 -> 32 px (bicubic, antialiased), writes JPEG quality 95 into
``bench/data/embedded/imagenette-mini/{train,val}/<wnid>/`` with a MANIFEST.tsv and README.md.
Deterministic: running it twice gives identical bytes.

    python scripts/build_imagenette_mini.py [--src ../shared/datasets/imagenette64]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import shutil
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "bench" / "data" / "embedded" / "imagenette-mini"
PER_CLASS = {"train": 200, "val": 50}
SIZE = 32

README = """# imagenette-mini (embedded default dataset)

10 Imagenette classes at {size}x{size} px: {train} train and {val} val images per class, in
ImageFolder layout (`train/<wnid>/*.jpg`, `val/<wnid>/*.jpg`). It ships inside the package so that
`bench demo` runs on a fresh machine with no download.

## Provenance
- Derived from `imagenette64` (Imagenette v2 by fast.ai, Apache-2.0; the images come from ImageNet
  ILSVRC 2012 and carry ImageNet's terms: research and non-commercial use).
- Built by `scripts/build_imagenette_mini.py`: the first {train} train and first {val} val files per
  class in sorted file-name order, bicubic antialiased resize 64 -> {size} px, JPEG quality 95.
- Train and val come from the disjoint official splits of imagenette64.
- `MANIFEST.tsv` lists split, class, file and sha256 of every image; the loader verifies it.

Classes (index = sorted wnid order): {classes}.
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", default=str(REPO.parent / "shared" / "datasets" / "imagenette64"))
    src = Path(ap.parse_args().src)
    if OUT.exists():
        shutil.rmtree(OUT)
    rows = ["split\tclass\tfile\tsha256"]
    classes = sorted(d.name for d in (src / "train").iterdir() if d.is_dir())
    for split, n in PER_CLASS.items():
        for cls in classes:
            (OUT / split / cls).mkdir(parents=True)
            for f in sorted((src / split / cls).glob("*.jpg"))[:n]:
                with Image.open(f) as im:
                    small = im.convert("RGB").resize((SIZE, SIZE), Image.BICUBIC, reducing_gap=None)
                buf = io.BytesIO()
                small.save(buf, format="JPEG", quality=95)
                data = buf.getvalue()
                (OUT / split / cls / f.name).write_bytes(data)
                rows.append(f"{split}\t{cls}\t{f.name}\t{hashlib.sha256(data).hexdigest()}")
    (OUT / "MANIFEST.tsv").write_text("\n".join(rows) + "\n")
    (OUT / "README.md").write_text(README.format(size=SIZE, train=PER_CLASS["train"], val=PER_CLASS["val"],
                                                 classes=", ".join(classes)))
    total = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file())
    print(f"wrote {len(rows) - 1} images to {OUT} ({total / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
