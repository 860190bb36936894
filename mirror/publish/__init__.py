"""Publishing the reconstruction: render, plan, and enqueue a backfill into a community."""
