"""Make the docs' pictures in docs/ with the bundled model: a repair block map, the evaluate
figure and one evaluate sample. Deterministic data (held-out Python stdlib files, seeded damage).

    python scripts/make_docs_pictures.py            # needs the plot extra: pip install -e '.[plot]'
"""
from __future__ import annotations

import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

DOCS = Path(__file__).resolve().parent.parent / "docs"


def fragfix(*args) -> None:
    subprocess.run([sys.executable, "-m", "fragfix", *map(str, args)], check=True)


def damaged_image(folder: Path) -> tuple[Path, Path]:
    """256 KiB of held-out stdlib text with bit rot (1 byte in 1,000) and three unreadable 512-byte
    sectors that a ddrescue mapfile marks bad, as a rescued disk image might hold."""
    from fragfix.training.sample import python_sample
    _, held = python_sample(("text",))
    data = bytearray()
    for p in held:
        data += p.read_bytes()
        if len(data) >= 256 << 10:
            break
    data = data[:256 << 10]
    rng = random.Random(16)
    for i in rng.sample(range(len(data)), len(data) // 1000):
        data[i] ^= 1 << rng.randrange(8)
    bad = [40 << 10, 41 << 10, 170 << 10]
    lines = ["0x0 +"]
    pos = 0
    for b in bad:
        data[b:b + 512] = bytes(512)
        lines += [f"{hex(pos)} {hex(b - pos)} +", f"{hex(b)} 0x200 -"]
        pos = b + 512
    lines.append(f"{hex(pos)} {hex(len(data) - pos)} +")
    img, mapfile = folder / "rescued.img", folder / "rescued.map"
    img.write_bytes(bytes(data))
    mapfile.write_text("\n".join(lines) + "\n")
    return img, mapfile


def main() -> None:
    DOCS.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        img, mapfile = damaged_image(tmp)
        fragfix("repair", img, "--mapfile", mapfile, "-o", tmp / "repaired.img", "--plot", DOCS / "repair-map.png",
                "--force")
        fragfix("evaluate", "--max-fragments", "600", "--plot", DOCS / "evaluate.png", "--samples-dir", tmp / "s",
                "--force")
        shutil.copyfile(sorted((tmp / "s").glob("zero_*.png"))[0], DOCS / "sample.png")
    for p in sorted(DOCS.glob("*.png")):
        print(f"{p} ({p.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
