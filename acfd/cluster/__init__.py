"""``acfd predict --ray``: detection spread over a Ray cluster (``pip install 'acfd[cluster]'``).

``connect``: reaching a cluster (or starting a local one) with one-line errors; ``worker``: the actor
that holds one ``Detector`` and detects whole images and video chunks; ``ray_predict``: the driver
that plans the chunks, schedules them and hands the results, in order, to the one writer.
"""
