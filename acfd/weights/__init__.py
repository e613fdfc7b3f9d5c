"""The default model shipped with ACFD, used by ``acfd demo`` when no ``--weights`` is given.

``DEFAULT_WEIGHTS`` is a ``mid``-preset checkpoint trained on CPU on the iCartoonFace subset
(``scripts/train_default.sh`` reproduces it; its hold-out figures are in the README and
``benchmarks/RESULTS.md``). It carries its own display threshold, the score from which ``acfd
detect``, ``acfd demo`` and the clients show a detection (``preset.inference.display_threshold``,
chosen at its best F1 on the hold-out). A checkout without trained weights lacks the file; ``acfd
demo`` then says so and asks for ``--weights``.
"""

from pathlib import Path

DEFAULT_WEIGHTS = Path(__file__).with_name("acfd_mid_icartoonface.pt")
