"""Write spirals/points.csv: 2D points on three interleaved spiral arms, one class per arm.

The file ships with the package; this script says how it was made and makes it again, byte for byte.
"""

from pathlib import Path

import numpy as np

POINTS_PER_ARM = 120
ARMS = 3


def main() -> None:
    rng = np.random.default_rng(24)
    rows = []
    for arm in range(ARMS):
        radius = np.linspace(0.1, 1.0, POINTS_PER_ARM)
        angle = radius * 3.5 + arm * 2 * np.pi / ARMS + rng.normal(0.0, 0.15, POINTS_PER_ARM)
        rows += [(r * np.cos(a), r * np.sin(a), arm) for r, a in zip(radius, angle, strict=True)]
    lines = ["x1,x2,label", *(f"{x1:.3f},{x2:.3f},{label}" for x1, x2, label in rows)]
    (Path(__file__).parent / "spirals" / "points.csv").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
