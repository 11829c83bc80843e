"""What every figure shares: matplotlib without a display, the modalities' and methods' colours, and saving as
PDF and PNG with fixed metadata."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from amps.core.io import atomic_path  # noqa: E402
from amps.vocabulary import METHOD_LABELS  # noqa: E402

VISION_COLOR = "#3b7dd8"
TEXT_COLOR = "#e0813a"
OTHER_COLOR = "#9a9a9a"


def save_figure(figure: plt.Figure, pdf_path: str | Path) -> None:
    """Save ``figure`` as the given PDF and a PNG beside it, atomically, with fixed metadata."""
    pdf = Path(pdf_path)
    if pdf.suffix != ".pdf":
        raise ValueError(f"figure path must end in .pdf, got {pdf}")
    # Fixed metadata keeps the files byte-identical across runs.
    with atomic_path(pdf) as tmp:
        figure.savefig(tmp, format="pdf", metadata={"CreationDate": None, "ModDate": None, "Creator": "amps"})
    with atomic_path(pdf.with_suffix(".png")) as tmp:
        figure.savefig(tmp, format="png", dpi=150, metadata={"Software": "amps"})
    plt.close(figure)


#: Styles of the steering methods in the AMPS figures: (colour, marker, label).
METHOD_STYLES = {
    method: (color, marker, METHOD_LABELS[method])
    for method, color, marker in (
        ("mean", "#555555", "o"),
        ("p2s", "#8c6bb1", "D"),
        ("l2s", "#e0813a", "s"),
        ("amps", "#3b7dd8", "^"),
        ("amps_online", "#2ca25f", "v"),
        ("instruction", "#d62728", "*"),
    )
}
