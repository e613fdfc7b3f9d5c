"""The default model shipped with ACFD, used by ``acfd demo`` when no ``--weights`` is given.

``DEFAULT_WEIGHTS`` is a ``mid``-preset checkpoint trained on CPU in two stages: on the iCartoonFace
subset (``acfd_mid_icartoonface.pt``, ``scripts/train_icartoonface.sh``; kept as the starting point
of the second stage and of ``acfd train --init``), then on iCartoonFace plus three western TV-cartoon
sets (``acfd_mid_cartoons.pt``, ``scripts/train_default.sh``); the hold-out figures of both are in the
README and ``benchmarks/RESULTS.md``. It carries its own display threshold, the score from which
``acfd detect``, ``acfd demo`` and the clients show a detection (``preset.inference.display_threshold``,
chosen at the best mean F1 over the hold-outs). A checkout without trained weights lacks the file;
``acfd demo`` then says so and asks for ``--weights``.
"""

from pathlib import Path

DEFAULT_WEIGHTS = Path(__file__).with_name("acfd_mid_cartoons.pt")
