"""The Triton model repository templates, installed as package data of ``acfd.model_repository``.

Not code to import: ``acfd.serving.repo`` finds this folder with ``importlib.resources`` and copies
the four model folders (``preprocess``, ``detector``, ``postprocess``, ``acfd``) into the repositories
that ``acfd repo`` builds. Triton ignores files at a repository's top level, this one included.
"""
