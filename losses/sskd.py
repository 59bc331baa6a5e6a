"""SSKD (Knowledge Distillation Meets Self-Supervision, xuguodong03/SSKD).

Each image comes as 4 views (rotations by 0/90/180/270 degrees; row 4b + r); 'nor' rows are the
upright views, 'aug' rows the three rotated ones (ordered b0r1, b0r2, b0r3, b1r1, ...). Terms:
  ce  CE on the upright views                       weight -r (0.1)
  kd  T^2 KL on the upright views (T = 4)           weight -a (0.9)
  tf  T^2 KL on the kept rotated views (T = 4)      weight --tf-weight (2.7)
  ss  T^2 KL between the rows of the rotated-vs-upright cosine matrices of student and teacher
      projection heads, on the kept rows (T = 0.5)  weight --ss-weight (10)
Error rectification keeps all rows whose true class (tf) / true image (ss) the teacher ranks first,
plus the fraction ratio_tf / ratio_ss of the others with the best ranks. Ties are broken by row
index (a stable sort): the reference's unstable torch.argsort cannot be reproduced across devices.

Before the student is trained, the teacher's projection head is trained for 60 epochs (lr 0.05,
x0.1 at 30 and 45) with CE over the cosine matrix (no temperature), the teacher frozen."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from core.schedule import Schedule

from .base import HParam, InitPhase, LossWeights, Method


def projection_head(dim):
    return nn.Sequential(nn.Linear(dim, dim), nn.ReLU(inplace=True), nn.Linear(dim, dim))


def split_views(x):
    """Rows of a (4B, ...) tensor: upright (B) and rotated (3B) views, by reshaping (fixed shapes,
    so that the step compiles without data-dependent sizes)."""
    views = x.reshape(-1, 4, *x.shape[1:])
    return views[:, 0], views[:, 1:].reshape(-1, *x.shape[1:])


def rotation_similarity(rep):
    """(3B, B) cosine similarities between rotated-view and upright-view representations."""
    nor, aug = split_views(rep)
    return F.cosine_similarity(aug.unsqueeze(2), nor.t().unsqueeze(0), dim=1)


def true_rank(scores, target):
    """Rank of column `target[a]` in row a sorted descending, ties broken by column index
    (the position a stable descending sort would give it)."""
    true = scores.gather(1, target[:, None])
    cols = torch.arange(scores.shape[1], device=scores.device)[None, :]
    ahead = (scores > true) | ((scores == true) & (cols < target[:, None]))
    return ahead.sum(1)


def kept_rows(rank, ratio):
    """Boolean mask of the rows the teacher gets right (rank 0) plus the best-ranked
    floor(ratio * #wrong) of the others; ties in rank are broken by row index. A mask rather than
    an index list: the count stays on the device (no host sync, fixed shapes)."""
    wrong = (rank > 0).sum()
    keep = len(rank) - wrong + torch.floor(wrong.double() * ratio).long()
    order = torch.sort(rank, stable=True).indices
    place = torch.empty_like(order).scatter_(0, order, torch.arange(len(rank), device=rank.device))
    return place < keep


def kept_kl(log_p, q, kept):
    """KL(q || p) summed over the kept rows / their number: what `kl_div(log_p[kept], q[kept],
    reduction='batchmean')` gives, with the mask applied by multiplication."""
    rows = F.kl_div(log_p, q, reduction="none").sum(1)
    return (rows * kept).sum() / kept.sum()


def sskd_terms(logit_s, rep_s, logit_t, rep_t, target, hp):
    """The four unweighted SSKD terms and the kept-row masks, from student / teacher logits and
    projection-head outputs over the 4B views."""
    b = len(target)
    nor_s, aug_s = split_views(logit_s)
    nor_t, aug_t = split_views(logit_t)
    ce = F.cross_entropy(nor_s, target)
    kd = F.kl_div(F.log_softmax(nor_s / hp["kd_T"], 1), F.softmax(nor_t / hp["kd_T"], 1),
                  reduction="batchmean") * hp["kd_T"] ** 2
    aug_target = target.repeat_interleave(3)
    q_t = F.softmax(aug_t / hp["tf_T"], 1)
    idx_tf = kept_rows(true_rank(q_t, aug_target), hp["ratio_tf"])
    tf = kept_kl(F.log_softmax(aug_s / hp["tf_T"], 1), q_t, idx_tf) * hp["tf_T"] ** 2
    s_simi = rotation_similarity(rep_s)
    t_simi = rotation_similarity(rep_t).detach()
    image_of_row = torch.arange(b, device=target.device).repeat_interleave(3)
    idx_ss = kept_rows(true_rank(t_simi, image_of_row), hp["ratio_ss"])
    ss = kept_kl(F.log_softmax(s_simi / hp["ss_T"], 1), F.softmax(t_simi / hp["ss_T"], 1), idx_ss) * hp["ss_T"] ** 2
    return {"ce": ce, "kd": kd, "tf": tf, "ss": ss}, {"tf": idx_tf, "ss": idx_ss,
                                                      "s_simi": s_simi, "t_simi": t_simi}


def head_pretrain_loss(rep_t):
    """Teacher head pre-training: CE over the (3B, B) cosine matrix, target = image of the row."""
    simi = rotation_similarity(rep_t)
    target = torch.arange(simi.shape[1], device=simi.device).repeat_interleave(3)
    return F.cross_entropy(simi, target), simi, target


class SSKD(Method):
    name = "sskd"
    views = "rotations"
    standard_weights = LossWeights(ce=0.1, kd=0.9, distill=1.0)
    hparams = (HParam("tf_T", 4.0, "temperature of the rotated-view KD term (tf)", bounds="positive"),
               HParam("ss_T", 0.5, "temperature of the contrastive rotation term (ss)", bounds="positive"),
               HParam("ratio_tf", 1.0, "fraction of the teacher's wrong rotated views kept for tf", bounds="fraction"),
               HParam("ratio_ss", 0.75, "fraction of the teacher's wrong rows kept for ss", bounds="fraction"),
               HParam("tf_weight", 2.7, "weight of tf (times -b)"),
               HParam("ss_weight", 10.0, "weight of ss (times -b)"),
               HParam("t_epochs", 60, "teacher projection-head phase epochs", "int", bounds="positive"),
               HParam("t_lr", 0.05, "teacher projection-head phase lr", bounds="positive"),
               HParam("t_milestones", (30, 45), "teacher-head lr x0.1 after these epochs", "ints"))

    def __init__(self, ctx, weights=None, hp=None):
        super().__init__(ctx, weights, hp)
        self.tf_weight = self.hp["tf_weight"]
        self.ss_weight = self.hp["ss_weight"]
        self.head_s = projection_head(ctx.s_shapes[-1][1])
        self.head_t = projection_head(ctx.t_shapes[-1][1])
        self.head_t.requires_grad_(False)  # trained only in its own init phase

    def forward(self, s, t, batch, epoch):
        rep_s = self.head_s(s.feats[-1].flatten(1))
        with torch.no_grad():
            rep_t = self.head_t(t.feats[-1].flatten(1))
        terms, _ = sskd_terms(s.logits, rep_s, t.logits, rep_t, batch["label"], self.hp)
        weights = {"ce": self.w.ce, "kd": self.w.kd, "tf": self.w.distill * self.tf_weight,
                   "ss": self.w.distill * self.ss_weight}
        return {k: weights[k] * v for k, v in terms.items() if weights[k]}

    @property
    def uses_logits(self):
        return bool(self.w.ce or self.w.kd or self.w.distill * self.tf_weight)

    def accuracy_logits(self, s):
        return split_views(s.logits)[0]

    # ----------------------------------------------------------- teacher head pre-training
    def init_loss(self, s, t, batch):
        loss, _, _ = head_pretrain_loss(self.head_t(t.feats[-1].flatten(1).detach()))
        return {"teacher_ss": loss}

    @torch.no_grad()
    def head_accuracy(self, teacher, loader):
        correct = total = 0
        for batch in loader:
            feats, _ = teacher(batch["image"], is_feat=True)
            _, simi, target = head_pretrain_loss(self.head_t(feats[-1].flatten(1)))
            correct += (simi.argmax(1) == target).sum().item()
            total += len(target)
        return {"teacher_ss_top1": 100.0 * correct / max(total, 1)}

    def init_phase(self, student, ctx):
        schedule = Schedule("step", self.hp["t_lr"], self.hp["t_epochs"], tuple(self.hp["t_milestones"]), 0.1)
        return InitPhase("sskd_teacher_head", schedule, [self.head_t], self.init_loss, run_student=False,
                         views="rotations", evaluate=self.head_accuracy)
