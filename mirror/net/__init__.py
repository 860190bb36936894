"""HTTP out: the guarded client session, signed GETs and POSTs."""
