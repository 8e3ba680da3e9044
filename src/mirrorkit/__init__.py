"""mirrorkit: keep independent news readable where it is blocked.

Pipeline: fetch -> store -> build (render, feeds, manifest, sign) -> publish -> verify.
Each stage is one module; :mod:`mirrorkit.pipeline` passes typed values between them.
"""

__version__ = "0.1.0"
