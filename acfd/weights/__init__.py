"""The default model shipped with ACFD, used by ``acfd demo`` when no ``--weights`` is given.

``DEFAULT_WEIGHTS`` is a ``tiny``-preset checkpoint trained on the iCartoonFace subset (the script
that reproduces it and its held-out mAP are in the README and ``benchmarks/RESULTS.md``). A
checkout without trained weights lacks the file; ``acfd demo`` then says so and asks for
``--weights``.
"""

from pathlib import Path

DEFAULT_WEIGHTS = Path(__file__).with_name("acfd_tiny_icartoonface.pt")
