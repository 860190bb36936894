"""Package list for setuptools (the rest of the metadata is in pyproject.toml).

The alembic directory lives at the top of the repository, as the design fixes
the layout, but it must ship inside the wheel as ``mirror.migrations``:
``mirror db upgrade`` runs after a plain ``pip install``. Static pyproject
configuration cannot combine package discovery with that mapping.
"""

from setuptools import find_packages, setup

setup(
    packages=[
        *find_packages(include=["mirror", "mirror.*"]),
        "mirror.migrations",
        "mirror.migrations.versions",
    ],
    package_dir={"mirror.migrations": "migrations"},
)
