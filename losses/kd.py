"""KD (Hinton et al.): CE and temperature-scaled KL only; the KD term comes through alpha."""
from .base import LossWeights, Method


class KD(Method):
    name = "kd"
    standard_weights = LossWeights(ce=0.1, kd=0.9, distill=0.0)
    distills_in_main_phase = False  # L_method = 0; KD enters through the kd weight


class PlainCE(Method):
    """No teacher signal: a student trained with cross-entropy only (the 'student' baseline)."""
    name = "ce"
    standard_weights = LossWeights(ce=1.0, kd=0.0, distill=0.0)
    distills_in_main_phase = False
