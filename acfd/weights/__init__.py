"""The default model shipped with ACFD, used by ``acfd demo`` when no ``--weights`` is given.

``DEFAULT_WEIGHTS`` is a ``tiny``-preset checkpoint trained on the iCartoonFace subset (the script
that reproduces it and its held-out mAP are in the README and ``benchmarks/RESULTS.md``). A
checkout without trained weights lacks the file; ``acfd demo`` then says so and asks for
``--weights``.
"""

from pathlib import Path

DEFAULT_WEIGHTS = Path(__file__).with_name("acfd_tiny_icartoonface.pt")

# Score from which `acfd detect` and `acfd demo` draw and count a detection (the server itself keeps
# everything above the paper's 0.08, which AP needs). 0.5 is about where the default model's F1 peaks
# on its iCartoonFace hold-out with its three test scales (best F1 0.47 at score 0.51: precision 0.70,
# recall 0.36; at 0.3 precision falls to 0.16). Lower it to find more faces at the price of more
# false boxes.
DEFAULT_MIN_SCORE = 0.5
