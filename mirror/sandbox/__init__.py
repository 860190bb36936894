"""A small Lemmy-compatible receiving instance, for trying a backfill locally and for tests.

It behaves like Lemmy's receiving side for what fedimirror sends: a Group
actor found by WebFinger, NodeInfo, an inbox that verifies signatures with
httpsig (not our signing code), applies Lemmy's checks, stores posts and
comments, refuses repeated activity ids, announces to its followers, and
shows what it received as plain HTML pages.
"""
