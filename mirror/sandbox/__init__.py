"""A small Lemmy-compatible receiving instance, for trying a backfill locally and for tests.

It behaves like the receiving side of a real server for what fedimirror
sends, as one of two profiles (profiles.py): `lemmy` or `piefed`. It serves
a Group actor found by WebFinger, NodeInfo, an inbox that verifies
signatures with httpsig (not our signing code), applies Lemmy's checks and
the profile's own (rules.py), stores posts and comments, refuses repeated
activity ids, announces to its followers, answers each server's lookup
(resolve_object) and shows what it received as plain HTML pages, rendered
as the profile's web UI renders Markdown.
"""
