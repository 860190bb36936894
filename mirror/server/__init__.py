"""HTTP in: the aiohttp application and its routes."""
