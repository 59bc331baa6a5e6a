"""Logit standardisation (Sun et al., CVPR 2024; sunshangquan/logit-standardization-KD), an option
of the logit methods (KD, DKD): both networks' logits are z-scored per sample before the softmaxes,
the temperature becomes a base temperature and the KD weight is raised, as the authors' --logit-stand
/ --base-temp / --kd-weight do."""
from .base import HParam

HPARAMS = (
    HParam("logit_stand", False, "z-score the student's and the teacher's logits per sample before the KD softmaxes "
           "(KD, DKD); the temperature becomes --ls-T and the KD weight --ls-weight", "flag"),
    HParam("ls_T", 2.0, "base temperature with --logit-stand (replaces --kd-T)", bounds="positive"),
    HParam("ls_weight", 9.0, "KD weight with --logit-stand: replaces KD's -a, multiplies DKD's --dkd-alpha and "
           "--dkd-beta"),
)


def standardize(logits):
    """(z - mean) / (1e-7 + std) over the classes, std with Bessel's correction as the authors'."""
    mean = logits.mean(dim=-1, keepdim=True)
    return (logits - mean) / (1e-7 + logits.std(dim=-1, keepdim=True))
