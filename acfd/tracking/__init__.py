"""Faces across video frames: trackers, track ids and summaries, scene cuts, and tracking metrics.

``trackers``: ByteTrack (supervision), Norfair and a plain IoU baseline behind one interface;
``tracks``: the ids users see (``TrackBook``) and ``tracks.json`` summaries; ``cuts``: scene-cut
detection; ``mot_metrics``: IDF1 / MOTA / id switches against known identities (motmetrics).
"""
