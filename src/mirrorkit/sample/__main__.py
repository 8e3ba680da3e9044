"""``python -m mirrorkit.sample``: serve the sample outlet until interrupted."""

from mirrorkit.sample.outlet import main

main()
