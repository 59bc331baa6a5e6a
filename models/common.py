"""Pieces shared by several model families."""
import torch.nn as nn


class Stage(nn.Sequential):
    """A stage of blocks where the last block exposes its pre-activation: blocks return
    (out, preact) or just out; the stage returns the last block's (out, preact)."""

    def forward(self, x):
        preact = None
        for block in self:
            out = block(x)
            x, preact = out if isinstance(out, tuple) else (out, None)
        return x, preact
