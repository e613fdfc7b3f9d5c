"""``acfd predict`` as a resumable job: the inputs (``sources``), the ``--out`` folder's journal
(``journal``), the one writer of every output (``writer``) and the run in this process (``local``);
``acfd.cluster`` runs the same job on Ray.
"""
