"""The study's figures: `catalog` says what each one is and needs (cheap, used for planning); `drawing` draws them,
from the rows `selection` picks, with the matplotlib parts in `plotting`."""

from amuro.figures.catalog import FIGURES, Figure

__all__ = ["FIGURES", "Figure"]
